package hvm

import (
	"net"
	"strings"
)

// IsLoopback tells whether a listen or connect address stays on this
// host: "localhost" or a loopback IP (127.0.0.0/8, ::1, with or without
// brackets). Anything else, including the empty address (every
// interface, for a listener) and host names strata cannot check, is
// reachable from the network.
func IsLoopback(addr string) bool {
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if strings.EqualFold(addr, "localhost") {
		return true
	}
	ip := net.ParseIP(addr)
	return ip != nil && ip.IsLoopback()
}

// SpiceListen is the address a SPICE console listens on: its host, or
// every interface when none is given (what xl and QEMU do).
func SpiceListen(host string) string {
	if host == "" {
		return "0.0.0.0"
	}
	return host
}
