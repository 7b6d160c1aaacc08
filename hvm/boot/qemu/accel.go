package qemu

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage/pattern"
	"github.com/strata-vm/strata/storage/run"
)

// accelFile caches the accelerator probe in HOME/run: on a host with
// vmx/svm the probe starts a QEMU (tens of milliseconds), which every
// `guest start` would otherwise pay. The answer holds for one boot of the
// host and one QEMU binary (its path, size and change time) with the same
// /dev/kvm: any of them different, and the probe runs again.
const accelFile = "accel.json"

type accelCache struct {
	BootID string `json:"boot_id"`
	Binary string `json:"binary"`
	Stamp  string `json:"stamp"` // the binary's and /dev/kvm's identity
	Accel  string `json:"accel"`
}

// Accel returns the accelerator guests start with: kvm only when the CPU
// shows vmx or svm, /dev/kvm opens and a probe QEMU starts with it.
func (d *Driver) Accel(ctx context.Context) string {
	if d.cfg.Accel != "" {
		return d.cfg.Accel
	}
	d.accelOnce.Do(func() {
		// /dev/kvm may exist over a software backend that is far slower
		// than TCG (as on these build machines): the CPU flags decide
		// first, and cost nothing worth caching.
		if b, err := os.ReadFile("/proc/cpuinfo"); err != nil || !CPUHasVirt(b) {
			d.accel = "tcg"
			return
		}
		d.accel = d.cachedAccel(ctx, probeAccel)
	})
	return d.accel
}

// cachedAccel is the cached answer of probe for this boot, binary and
// /dev/kvm, probing (and caching) when there is none.
func (d *Driver) cachedAccel(ctx context.Context, probe func(context.Context, string) string) string {
	bin, err := run.Look(d.binary())
	if err != nil {
		return "tcg" // the start reports the missing binary
	}
	want := accelCache{BootID: boot.BootID(), Binary: bin, Stamp: accelStamp(bin)}
	path := ""
	if d.cfg.Home != "" {
		path = filepath.Join(d.cfg.Home, "run", accelFile)
	}
	if path != "" && want.BootID != "" && want.Stamp != "" {
		if got, ok := readAccelCache(path); ok && got.BootID == want.BootID && got.Binary == want.Binary && got.Stamp == want.Stamp && (got.Accel == "kvm" || got.Accel == "tcg") {
			return got.Accel
		}
	}
	want.Accel = probe(ctx, bin)
	if path != "" && want.BootID != "" && want.Stamp != "" && ctx.Err() == nil {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			if err := boot.WriteRuntimeJSON(path, want); err != nil {
				// Safe: the next start probes again.
				log.Debug().Err(err).Msg("cannot cache the accelerator probe")
			}
		}
	}
	return want.Accel
}

// readAccelCache reads the cache at path only if it is a small regular
// file: never through a symbolic link, never blocking on a FIFO (a start
// would hang on it), never reading a huge file whole.
func readAccelCache(path string) (accelCache, bool) {
	var c accelCache
	b, err := boot.ReadRuntimeFile(path, 64<<10)
	return c, err == nil && json.Unmarshal(b, &c) == nil
}

// accelStamp identifies the QEMU binary and /dev/kvm as they are now
// ("" when either cannot be read: then nothing is cached).
func accelStamp(bin string) string {
	var parts []string
	for _, p := range []string{bin, kvmDevice} {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return ""
		}
		parts = append(parts, strings.Join([]string{
			itoa(st.Dev), itoa(st.Ino), itoa(uint64(st.Size)), itoa(uint64(st.Ctim.Sec)), itoa(uint64(st.Ctim.Nsec)), itoa(st.Rdev)}, ":"))
	}
	return strings.Join(parts, "/")
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

var virtFlag = pattern.New(`(?m)^flags\s*:.*\b(vmx|svm)\b`)

// CPUHasVirt reports whether /proc/cpuinfo's text shows hardware
// virtualisation (vmx or svm).
func CPUHasVirt(cpuinfo []byte) bool { return virtFlag.MatchString(string(cpuinfo)) }

// kvmDevice is KVM's device node (a variable for the cache's test).
var kvmDevice = "/dev/kvm"

// probeAccel starts QEMU with KVM and no machine: kvm if it comes up.
func probeAccel(ctx context.Context, bin string) string {
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = run.Run(ctx, strings.NewReader(`{"execute":"qmp_capabilities"}{"execute":"quit"}`), nil,
		bin, "-machine", "none,accel=kvm", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none", "-qmp", "stdio")
	if err != nil {
		return "tcg"
	}
	return "kvm"
}
