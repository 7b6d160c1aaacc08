package qemu

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The accelerator probe (a QEMU start on hosts with vmx/svm) runs once per
// boot, binary and /dev/kvm: later starts, in other processes, read the
// answer; a changed binary or device probes again. (This host has no
// usable KVM: the probe is a function counting its calls, and /dev/kvm
// a file of the test's.)
func TestAccelProbeIsCachedPerBootBinaryAndDevice(t *testing.T) {
	home := t.TempDir()
	bin, kvm := fakeKVMHost(t)
	probes := 0
	probe := func(context.Context, string) string { probes++; return "kvm" }
	accel := func() string { return New(Config{Home: home, Binary: bin}).cachedAccel(context.Background(), probe) }

	if a := accel(); a != "kvm" || probes != 1 {
		t.Fatalf("first start: accel %q after %d probes, want kvm after 1", a, probes)
	}
	if a := accel(); a != "kvm" || probes != 1 {
		t.Fatalf("second start: accel %q after %d probes, want the cached kvm", a, probes)
	}
	if fi, err := os.Stat(filepath.Join(home, "run", accelFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the cache: %v, %v (want a root-only file)", fi, err)
	}
	// A new QEMU (the package upgraded): its change time moves.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(bin, []byte("#!/bin/true\n# new\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if accel(); probes != 2 {
		t.Fatalf("after the binary changed: %d probes, want 2", probes)
	}
	// The KVM module reloaded: a new device node.
	time.Sleep(10 * time.Millisecond)
	if err := os.Chmod(kvm, 0o600); err != nil {
		t.Fatal(err)
	}
	if accel(); probes != 3 {
		t.Fatalf("after /dev/kvm changed: %d probes, want 3", probes)
	}
	// A cache someone damaged is probed over, not trusted.
	if err := os.WriteFile(filepath.Join(home, "run", accelFile), []byte(`{"accel":"bogus"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if a := accel(); a != "kvm" || probes != 4 {
		t.Fatalf("damaged cache: accel %q after %d probes, want a new probe", a, probes)
	}
}

// fakeKVMHost stands in for a KVM host's QEMU binary and /dev/kvm (files
// of the test's, kvmDevice pointed at the latter) for the probe cache.
func fakeKVMHost(t *testing.T) (bin, kvm string) {
	t.Helper()
	bin = filepath.Join(t.TempDir(), "qemu-system-x86_64")
	kvm = filepath.Join(t.TempDir(), "kvm")
	for _, p := range []string{bin, kvm} {
		if err := os.WriteFile(p, []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := kvmDevice
	kvmDevice = kvm
	t.Cleanup(func() { kvmDevice = old })
	return bin, kvm
}
