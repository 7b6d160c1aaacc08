package boot_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
)

// A runtime record is read only from a regular file of strata's own
// size: a FIFO put in its place does not hang the command, a symbolic
// link is not followed, a huge file is not read whole; each is an error
// naming the file (exit 7), and a missing file is no record.
func TestRuntimeRecordThatIsNotASmallRegularFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "elsewhere.json")
	if err := os.WriteFile(target, []byte(`{"pid": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.json")
	if err := os.WriteFile(huge, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, link, huge} {
		done := make(chan error, 1)
		go func() {
			var v map[string]any
			_, err := boot.ReadJSON(p, &v)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, storage.ErrPrecondition) {
				t.Errorf("%s: %v, want a precondition error", filepath.Base(p), err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadJSON hangs", filepath.Base(p))
		}
	}
	var v map[string]any
	if ok, err := boot.ReadJSON(filepath.Join(dir, "missing.json"), &v); ok || err != nil {
		t.Errorf("a missing record: %v %v", ok, err)
	}
	if ok, err := boot.ReadJSON(target, &v); !ok || err != nil || v["pid"] != float64(1) {
		t.Errorf("a record: %v %v %v", ok, err, v)
	}
}
