package image_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/image"
)

// A symbolic link anywhere on the way to an image is not followed: at the
// image's name, or a directory above it swapped for a link.
func TestOpenImageRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("host"), 0o600)
	link := filepath.Join(dir, "disk.img")
	os.Symlink(secret, link)
	sub := filepath.Join(dir, "real")
	os.Mkdir(sub, 0o700)
	os.WriteFile(filepath.Join(sub, "disk.img"), []byte("disk"), 0o600)
	os.Symlink(sub, filepath.Join(dir, "vm"))
	for _, p := range []string{link, filepath.Join(dir, "vm", "disk.img")} {
		if f, err := image.OpenImage(p, os.O_RDONLY); err == nil {
			f.Close()
			t.Errorf("%s opened through a link", p)
		}
		if _, err := image.Inspect(p); !errors.Is(err, storage.ErrPrecondition) {
			t.Errorf("Inspect %s: %v, want a precondition error", p, err)
		}
		v := storage.Volume{Name: "v", Path: p}
		if err := image.VerifyImage(v); !errors.Is(err, storage.ErrPrecondition) {
			t.Errorf("VerifyImage %s: %v", p, err)
		}
	}
	if f, err := image.OpenImage(filepath.Join(sub, "disk.img"), os.O_RDONLY); err != nil {
		t.Errorf("a plain path: %v", err)
	} else {
		f.Close()
	}
}

// The recorded identity: the same file passes; another file passes only
// as strata's own replacement leaves it (same owner), never one of
// another owner.
func TestVerifyImageIdentity(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.img")
	os.WriteFile(p, []byte("disk"), 0o600)
	id, err := image.Identify(p)
	if err != nil {
		t.Fatal(err)
	}
	v := storage.Volume{Name: "v", Path: p, File: &id}
	if err := image.VerifyImage(v); err != nil {
		t.Fatalf("the recorded file: %v", err)
	}
	tmp := filepath.Join(dir, "tmp")
	os.WriteFile(tmp, []byte("rolled back"), 0o600)
	os.Rename(tmp, p)
	if err := image.VerifyImage(v); err != nil {
		t.Errorf("a replacement with the recorded owner: %v", err)
	}
	os.WriteFile(tmp, []byte("theirs"), 0o600)
	os.Chown(tmp, 65534, 65534)
	os.Rename(tmp, p)
	if err := image.VerifyImage(v); !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("a file of another owner: %v", err)
	}
	os.Remove(p)
	os.Mkdir(p, 0o700)
	if err := image.VerifyImage(v); !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("a directory: %v", err)
	}
}

func TestQemuImgReadSharesTheLock(t *testing.T) {
	argv := image.QemuImgRead("info", "x")
	if argv[0] != "qemu-img" || argv[1] != "info" || !slices.Contains(argv, "-U") {
		t.Errorf("argv %v", argv)
	}
}
