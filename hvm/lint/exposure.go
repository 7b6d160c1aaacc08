package lint

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage/pattern"
)

// Exposure findings: a control surface of the guest or of its device
// model (console, monitor, debugger, migration port) that the network can
// reach, or a device model binary that is not a known one (xl runs it as
// root in dom0). Each is an error; render refuses a guest with any of
// them unless told --allow-exposed.
//
// A key strata models may also sit in extra, where xl.cfg renders it
// verbatim (a YAML definition may put it there; the importer does for a
// SPICE key without spice): these rules read such a key as xl would when
// the modelled field is not set.
const (
	IDChardevExposed         = "chardev-exposed"
	IDDeviceModelArgsExposed = "device-model-args-exposed"
	IDVFBExposed             = "vfb-exposed"
	IDDeviceModelUnusual     = "device-model-unusual"
)

var exposureIDs = []string{IDVNCExposed, IDSpiceExposed, IDChardevExposed, IDDeviceModelArgsExposed, IDVFBExposed, IDDeviceModelUnusual}

// IsExposure tells whether a finding is one of the exposure findings.
func IsExposure(f Finding) bool { return slices.Contains(exposureIDs, f.ID) }

// Exposures returns the exposure findings of a guest.
func Exposures(g *hvm.Guest) []Finding {
	var out []Finding
	for _, f := range Check(g) {
		if IsExposure(f) {
			out = append(out, f)
		}
	}
	return out
}

// knownDeviceModel matches where Xen and the distributions install the
// device model (qemu-xen, the old qemu-dm) and QEMU itself.
var knownDeviceModel = pattern.New(`^(/usr/lib/xen/bin|/usr/lib64/xen/bin|/usr/libexec/xen/bin|/usr/local/lib/xen/bin|/usr/lib/xen-[0-9]+\.[0-9]+/bin|/usr/bin|/usr/libexec)/(qemu-system-i386|qemu-system-x86_64|qemu-dm|qemu-kvm)$`)

// KnownDeviceModel tells whether path is a well-known device model.
func KnownDeviceModel(path string) bool {
	return filepath.Clean(path) == path && knownDeviceModel.MatchString(path)
}

const anyInterface = "0.0.0.0 (every interface)"

// reach returns "" when host stays on this host, else how the network
// reaches it.
func reach(host string) string {
	switch {
	case host == "":
		return anyInterface
	case hvm.IsLoopback(host):
		return ""
	}
	return host
}

// hostOf is the host of HOST:PORT ("" when there is no host).
func hostOf(hostport string) string {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return ""
	}
	return hostport[:i]
}

// ChardevReach tells where an xl or QEMU character device spec
// ("tcp:HOST:PORT[,server]", "udp:...", "telnet:...", "mon:...") can be
// reached from: "" when it stays on this host. An empty host listens on
// every interface; a UDP device without "@127.0.0.1:PORT" binds every
// interface too.
func ChardevReach(spec string) string {
	for strings.HasPrefix(spec, "mon:") {
		spec = strings.TrimPrefix(spec, "mon:")
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return ""
	}
	addr, _, _ := strings.Cut(rest, ",")
	switch kind {
	case "tcp", "telnet", "websocket":
		return reach(hostOf(addr))
	case "udp":
		remote, local, bound := strings.Cut(addr, "@")
		if h := hostOf(remote); h != "" && !hvm.IsLoopback(h) {
			return h
		}
		if !bound {
			return anyInterface
		}
		return reach(hostOf(local))
	}
	return ""
}

// qemuOpts splits a QEMU option string: the first item and key=value
// pairs (",," is a comma; a bare key is "on").
func qemuOpts(s string) (string, map[string]string) {
	var items []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				b.WriteByte(',')
				i++
				continue
			}
			items = append(items, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(s[i])
	}
	items = append(items, b.String())
	opts := map[string]string{}
	for _, it := range items[1:] {
		k, v, ok := strings.Cut(it, "=")
		if !ok {
			v = "on"
		}
		opts[k] = v
	}
	return items[0], opts
}

func vncReach(spec string) string {
	first, opts := qemuOpts(spec)
	first = strings.TrimPrefix(first, "vnc=")
	if first != "none" && !strings.HasPrefix(first, "unix:") {
		if r := reach(hostOf(first)); r != "" {
			return r
		}
	}
	if ws, ok := opts["websocket"]; ok && strings.Contains(ws, ":") {
		return reach(hostOf(ws))
	}
	return ""
}

func chardevOptsReach(spec string) string {
	backend, opts := qemuOpts(spec)
	if strings.Contains(backend, "=") {
		k, v, _ := strings.Cut(backend, "=")
		opts[k] = v
		backend = opts["backend"]
	}
	switch backend {
	case "socket":
		if _, unix := opts["path"]; unix {
			return ""
		}
		if _, fd := opts["fd"]; fd {
			return ""
		}
		return reach(opts["host"])
	case "udp":
		if h := opts["host"]; h != "" && !hvm.IsLoopback(h) {
			return h
		}
		return reach(opts["localaddr"])
	}
	return ""
}

// qemuSurfaces are the QEMU options that open a control surface, with
// what they open.
var qemuSurfaces = map[string]string{
	"monitor": "a QEMU monitor", "qmp": "a QMP monitor", "qmp-pretty": "a QMP monitor",
	"serial": "a serial console", "parallel": "a parallel port", "debugcon": "a debug console",
	"gdb": "a GDB stub", "qtest": "the qtest control protocol", "chardev": "a character device",
	"vnc": "a VNC console", "display": "a VNC console", "spice": "a SPICE console",
	"incoming": "a migration port", "readconfig": "devices from a file",
}

// argReach says where the argument of a QEMU option can be reached from.
func argReach(opt, arg string) string {
	switch opt {
	case "vnc":
		return vncReach(arg)
	case "display":
		if v, ok := strings.CutPrefix(arg, "vnc="); ok {
			return vncReach(v)
		}
		return ""
	case "spice":
		_, opts := qemuOpts("x," + arg)
		if _, unix := opts["unix"]; unix {
			return ""
		}
		_, port := opts["port"]
		_, tls := opts["tls-port"]
		if !port && !tls {
			return ""
		}
		return reach(opts["addr"])
	case "chardev":
		return chardevOptsReach(arg)
	case "gdb":
		if arg != "" && strings.Trim(arg, "0123456789") == "" {
			return anyInterface // a bare port: tcp::PORT
		}
		return ChardevReach(arg)
	case "incoming":
		switch {
		case strings.HasPrefix(arg, "tcp:"), strings.HasPrefix(arg, "rdma:"):
			_, rest, _ := strings.Cut(arg, ":")
			addr, _, _ := strings.Cut(rest, ",")
			return reach(hostOf(addr))
		case strings.HasPrefix(arg, "exec:"):
			return "exec: (it runs a shell command as root)"
		case arg == "defer", strings.HasPrefix(arg, "unix:"), strings.HasPrefix(arg, "fd:"), strings.HasPrefix(arg, "file:"):
			return ""
		}
		return "an address strata cannot check"
	case "readconfig":
		return "a file strata cannot check"
	}
	return ChardevReach(arg)
}

// argsExposures checks device model arguments (one argv element each,
// as xl passes them).
func argsExposures(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		opt := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if opt == "s" {
			out = append(out, "-s opens a GDB stub on "+anyInterface)
			continue
		}
		what, ok := qemuSurfaces[opt]
		if !ok || i+1 >= len(args) {
			continue
		}
		i++
		if r := argReach(opt, args[i]); r != "" {
			out = append(out, fmt.Sprintf("-%s opens %s on %s", opt, what, r))
		}
	}
	return out
}

// extraText reads an extra key holding one xl value: its text.
func extraText(g *hvm.Guest, key string) (string, bool) {
	raw, ok := g.Extra[key]
	if !ok {
		return "", false
	}
	v, err := xlcfg.ParseValue(raw)
	if err != nil || v.Kind == xlcfg.List {
		return raw, true
	}
	return v.Text, true
}

// extraStrings reads an extra key holding a string or a list of strings.
func extraStrings(g *hvm.Guest, key string) ([]string, bool, error) {
	raw, ok := g.Extra[key]
	if !ok {
		return nil, false, nil
	}
	v, err := xlcfg.ParseValue(raw)
	if err != nil {
		return nil, true, err
	}
	if v.Kind != xlcfg.List {
		return []string{v.Text}, true, nil
	}
	out := make([]string, 0, len(v.Items))
	for _, it := range v.Items {
		if it.Kind == xlcfg.List {
			return nil, true, fmt.Errorf("a nested list")
		}
		out = append(out, it.Text)
	}
	return out, true, nil
}

func xlTrue(t string) bool {
	n, err := xlcfg.ParseInt(t)
	return err != nil || n != 0
}

// vncListenHost is the address of an xl vnclisten, ADDRESS[:DISPLAYNUM].
func vncListenHost(s string) string {
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			return s[:i+1]
		}
	}
	if strings.Count(s, ":") == 1 {
		return hostOf(s)
	}
	return s
}

type adder func(id string, sev Severity, field, fix, format string, args ...any)

const tunnelFix = "bind it to 127.0.0.1 (or a unix: socket) and tunnel over SSH, or remove it"

// checkExposure adds a finding for each way g opens a console, a monitor
// or a root process to the network, one check per kind.
func checkExposure(g *hvm.Guest, add adder) {
	for _, check := range []func(*hvm.Guest, adder){
		checkVNCExposure,
		checkSpiceExposure,
		checkChardevExposure,
		checkDeviceModelArgs,
		checkVFBExposure,
		checkDeviceModelBinary,
	} {
		check(g, add)
	}
}

// checkVNCExposure: a VNC console off loopback without a password. The
// model's fields win; extra keys count where the field is unset.
func checkVNCExposure(g *hvm.Guest, add adder) {
	d := g.Display
	vnc, listen, field := d.VNCEnabled(), d.EffectiveVNCListen(), "display.vnclisten"
	if d.VNC == nil {
		if t, ok := extraText(g, "vnc"); ok {
			vnc = xlTrue(t)
		}
	}
	if d.VNCListen == "" {
		if t, ok := extraText(g, "vnclisten"); ok {
			listen, field = vncListenHost(t), "extra.vnclisten"
		}
	}
	pw := !d.VNCPasswd.IsZero()
	if t, ok := extraText(g, "vncpasswd"); ok && t != "" {
		pw = true
	}
	if vnc && !hvm.IsLoopback(listen) && !pw {
		add(IDVNCExposed, Error, field, "set vncpasswd, or vnclisten = 127.0.0.1 and tunnel over SSH",
			"the VNC console listens on %s without a password: anyone who can reach it controls the guest", listen)
	}
}

// checkSpiceExposure: a SPICE console off loopback without a ticket,
// from the model or, when it has none, from extra spice* keys.
func checkSpiceExposure(g *hvm.Guest, add adder) {
	sp, field := g.Display.Spice, "display.spice.host"
	if sp == nil {
		if t, ok := extraText(g, "spice"); ok && xlTrue(t) {
			sp, field = &hvm.Spice{Enabled: true}, "extra.spicehost"
			sp.Host, _ = extraText(g, "spicehost")
			p, _ := extraText(g, "spicepasswd")
			sp.Passwd = hvm.Secret(p)
			if t, ok := extraText(g, "spicedisable_ticketing"); ok {
				sp.DisableTicketing = hvm.Bool(xlTrue(t))
			}
		}
	}
	if sp == nil || !sp.Enabled {
		return
	}
	host := hvm.SpiceListen(sp.Host)
	open := sp.Passwd.IsZero() || hvm.Val(sp.DisableTicketing, false)
	if !hvm.IsLoopback(host) && open {
		add(IDSpiceExposed, Error, field, "set display.spice.passwd (and leave ticketing on), or host = 127.0.0.1 and tunnel over SSH",
			"the SPICE console listens on %s without a password: anyone who can reach it controls the guest", host)
	}
}

// checkChardevExposure: serial and parallel ports reachable from off the
// host, from the model or else from extra serial/parallel keys.
func checkChardevExposure(g *hvm.Guest, add adder) {
	for _, cd := range []struct {
		key   string
		specs []string
	}{{"serial", g.Serial}, {"parallel", g.Parallel}} {
		specs, field := cd.specs, cd.key
		if len(specs) == 0 {
			if s, ok, err := extraStrings(g, cd.key); ok {
				specs, field = s, "extra."+cd.key
				if err != nil {
					add(IDChardevExposed, Error, field, "write it as a string or a list of strings", "extra %s cannot be checked: %v", cd.key, err)
				}
			}
		}
		for i, s := range specs {
			if r := ChardevReach(s); r != "" {
				add(IDChardevExposed, Error, fmt.Sprintf("%s[%d]", field, i), "use pty, or tcp:127.0.0.1:PORT,server (udp: @127.0.0.1:PORT) and tunnel over SSH",
					"%s[%d] is reachable from %s: whoever connects gets the guest's console (and with mon: the QEMU monitor)", cd.key, i, r)
			}
		}
	}
}

// checkDeviceModelArgs: monitors and consoles opened by device model
// arguments, passed to QEMU as they are.
func checkDeviceModelArgs(g *hvm.Guest, add adder) {
	for _, key := range slices.Sorted(maps.Keys(g.Extra)) {
		if key != "device_model_args" && !strings.HasPrefix(key, "device_model_args_") {
			continue
		}
		args, _, err := extraStrings(g, key)
		if err != nil {
			add(IDDeviceModelArgsExposed, Error, "extra."+key, "write it as a list of strings, one argument each", "%s cannot be checked: %v", key, err)
			continue
		}
		for _, e := range argsExposures(args) {
			add(IDDeviceModelArgsExposed, Error, "extra."+key, tunnelFix,
				"%s: %s: anyone who can reach it controls the guest or the device model", key, e)
		}
	}
}

// checkVFBExposure: paravirtual framebuffers (extra vfb) opening VNC off
// loopback without a password.
func checkVFBExposure(g *hvm.Guest, add adder) {
	specs, ok, err := extraStrings(g, "vfb")
	if !ok {
		return
	}
	if err != nil {
		add(IDVFBExposed, Error, "extra.vfb", "write it as a list of strings", "vfb cannot be checked: %v", err)
	}
	for i, spec := range specs {
		kv := map[string]string{}
		for item := range strings.SplitSeq(spec, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(item), "=")
			kv[k] = v
		}
		if v, ok := kv["vnc"]; ok && !xlTrue(v) {
			continue
		}
		if kv["vncpasswd"] != "" {
			continue
		}
		if r := reach(vncListenHost(kv["vnclisten"])); kv["vnclisten"] != "" && r != "" {
			add(IDVFBExposed, Error, fmt.Sprintf("extra.vfb[%d]", i), "add vncpasswd=... to the vfb spec (from a file: strata guest set --secret-file), or vnclisten=127.0.0.1 and tunnel over SSH",
				"vfb[%d] opens a VNC console on %s without a password: anyone who can reach it controls the guest", i, r)
		}
	}
}

// checkDeviceModelBinary: a device model other than a well-known one,
// which xl would run as root in dom0.
func checkDeviceModelBinary(g *hvm.Guest, add adder) {
	dm, field := g.DeviceModel.Override, "device_model.override"
	if dm == "" {
		dm, _ = extraText(g, "device_model_override")
		field = "extra.device_model_override"
	}
	if dm != "" && !KnownDeviceModel(dm) {
		add(IDDeviceModelUnusual, Error, field, "leave it out (xl runs its own qemu-xen), or name the installed one, e.g. /usr/lib/xen/bin/qemu-system-i386",
			"the device model %q is not a well-known one: xl runs it as root in dom0, with the guest's disks and consoles", dm)
	}
}
