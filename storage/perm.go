package storage

import (
	"errors"
	"os"

	"github.com/strata-vm/strata/storage/atomicfile"
)

// Modes of strata's directories. Guests run by libvirt run QEMU as
// libvirt's own user (libvirt-qemu on Debian), which must reach the images
// of the guests it runs and nothing else:
//   - the state home, HOME/pools and every pool directory are DirPassable:
//     anyone may pass through to a file whose name they know, no one but
//     root may list them, and each image file stays 0600 root, so QEMU
//     opens only what libvirt's dynamic ownership hands it (libvirt
//     chowns a guest's images, backing chains included, to its QEMU user
//     for the run and gives them back at stop);
//   - the catalog, its backups, locks, runtime directories and restore
//     points stay DirPrivate: nothing there is for a guest.
const (
	DirPassable = 0o711
	DirPrivate  = 0o700
)

// MkdirPassable creates dir (and missing parents) with mode DirPassable,
// whatever the umask (strata runs with 077), and opens up a directory
// strata made DirPrivate before it knew about libvirt's QEMU user. Any
// other mode is the admin's choice and is kept.
func MkdirPassable(dir string) error {
	// Durable (parents synced): a volume, iso or golden recorded in the
	// catalog next must not outlive its pool's directory. OpenPassable on
	// each made: the umask took the mode's x bits for others.
	if err := atomicfile.MkdirAllEach(dir, DirPassable, OpenPassable); err != nil {
		return err
	}
	return OpenPassable(dir)
}

// OpenPassable makes an existing directory of mode DirPrivate (as older
// strata made homes and pools) DirPassable; a missing directory, or one of
// another mode, is left alone.
func OpenPassable(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() && st.Mode().Perm() == DirPrivate {
		return os.Chmod(dir, DirPassable)
	}
	return nil
}
