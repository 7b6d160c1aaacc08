package qemu

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The accelerator cache is a file strata wrote in HOME/run: anything else
// found at its path (a FIFO nobody writes, a symbolic link to a cache kept
// elsewhere, a directory, a huge file) is not read as one: a guest start
// probes again instead of hanging, following the link or reading it all.
// (No usable KVM here: the probe is a function counting its calls.)
func TestAccelCacheThatIsNotAFileOfItsOwnIsProbedOver(t *testing.T) {
	bin, _ := fakeKVMHost(t)

	// A good cache, written by a probe, to link to and to pad.
	good := t.TempDir()
	probes := 0
	probe := func(context.Context, string) string { probes++; return "kvm" }
	New(Config{Home: good, Binary: bin}).cachedAccel(context.Background(), probe)
	cache, err := os.ReadFile(filepath.Join(good, "run", accelFile))
	if err != nil {
		t.Fatal(err)
	}

	for name, plant := range map[string]func(path string) error{
		"fifo":    func(path string) error { return syscall.Mkfifo(path, 0o600) },
		"symlink": func(path string) error { return os.Symlink(filepath.Join(good, "run", accelFile), path) },
		"dir":     func(path string) error { return os.Mkdir(path, 0o700) },
		"huge": func(path string) error {
			if err := os.WriteFile(path, cache, 0o600); err != nil {
				return err
			}
			return os.Truncate(path, 1<<30) // a sparse GiB after a valid cache
		},
	} {
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			path := filepath.Join(home, "run", accelFile)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := plant(path); err != nil {
				t.Fatal(err)
			}
			before := probes
			done := make(chan string, 1)
			go func() { done <- New(Config{Home: home, Binary: bin}).cachedAccel(context.Background(), probe) }()
			select {
			case a := <-done:
				if a != "kvm" || probes != before+1 {
					t.Errorf("accel %q after %d new probes, want kvm after a new probe", a, probes-before)
				}
			case <-time.After(3 * time.Second):
				// Unblock the reader so the test ends.
				if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				t.Fatalf("the start hangs on the %s at %s", name, path)
			}
		})
	}
}
