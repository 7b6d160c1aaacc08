package atomicfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/storage/atomicfile"
)

func TestReplaceLeavesOldFileOnFailureAndNoTemporary(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := atomicfile.WriteFile(p, []byte("old"), atomicfile.Options{Durable: true}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := atomicfile.Replace(p, atomicfile.Options{Durable: true}, func(f *os.File) error {
		f.WriteString("half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Replace: %v, want the fill's error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("file after a failed replace: %q", b)
	}
	if err := atomicfile.WriteFile(p, []byte("new"), atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("file after a replace: %q", b)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	es, _ := os.ReadDir(dir)
	if len(es) != 1 {
		t.Errorf("directory holds %d entries, want only the file: %v", len(es), es)
	}
}

func TestNoReplaceRefusesAnExistingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "copy.db")
	o := atomicfile.Options{Durable: true, NoReplace: true}
	if err := atomicfile.WriteFile(p, []byte("first"), o); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(p, []byte("second"), o); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second write: %v, want os.ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Errorf("file: %q", b)
	}
}

// A file prepared at a name a temporary could take (a hard link to a file
// someone wants overwritten) is never written through.
func TestReplaceNeverWritesThroughAPreparedName(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	p := filepath.Join(dir, "shot.ppm")
	for _, n := range []string{atomicfile.Path(p, ""), atomicfile.Path(p, "") + "~1"} {
		if err := os.Link(victim, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := atomicfile.WriteFile(p, []byte("new"), atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the prepared file was written: %q", b)
	}
}

// Every temporary name strata makes is recognised, and names the file it
// stands for: doctor relies on this one scheme.
func TestTargetRecognisesEveryTemporaryName(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "0123456789abcdef.qcow2")
	f, err := atomicfile.Create(final)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, name := range []string{
		filepath.Base(atomicfile.Path(final, "")),
		filepath.Base(atomicfile.Path(final, atomicfile.PurposeFlatten)),
		filepath.Base(f.Name()),
	} {
		got, ok := atomicfile.Target(name)
		if !ok || got != "0123456789abcdef.qcow2" {
			t.Errorf("Target(%q) = %q, %v", name, got, ok)
		}
	}
	for _, name := range []string{"0123456789abcdef.qcow2", ".strata-tmp-", ".strata-points", "x.strata-tmp"} {
		if _, ok := atomicfile.Target(name); ok {
			t.Errorf("Target(%q) claims a name strata does not give temporaries", name)
		}
	}
	if got, _ := atomicfile.Target(".strata-tmp-disk~old.img"); got != "disk~old.img" {
		t.Errorf("a ~ in the final name is kept: %q", got)
	}
}
