// Package atomicfile replaces files so that a crash leaves the old file or
// the new one, never a torn one, and names every temporary file strata
// makes by one scheme that doctor recognises (Target).
//
// A replacement is: a temporary file in the same directory (same
// filesystem, so the rename is atomic), written, fsynced, closed, renamed
// over the final name, then the directory fsynced so the rename itself is
// on disk (restic's backend/local does the same). Files that describe only
// processes of the running boot (a QEMU pid, a watcher) may skip both
// fsyncs (Options.Durable false): a power loss makes them stale anyway,
// and every other process, and a kill -9 at any point, still sees the old
// file or the new one, whole; the fsyncs would cost every guest start
// tens of milliseconds on a busy disk for nothing.
//
// Temporary names: PREFIX[PURPOSE-]BASE[~RANDOM], where PREFIX is
// ".strata-tmp-", BASE the final file's name, PURPOSE one of the Purpose
// constants (absent for a plain replacement) and ~RANDOM the suffix of a
// name nobody could have prepared (CreateTemp: O_EXCL, random), used where
// the directory is not strata's alone.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Prefix begins the name of every temporary file and staging directory
// strata makes in a pool, an imported volume's folder or the state home.
const Prefix = ".strata-tmp-"

// Purposes of a temporary that is not a plain copy of its final file.
const (
	// PurposeFlatten: a flattened copy of a qcow2 overlay (storage/dir).
	PurposeFlatten = "flatten"
)

// Path is the fixed temporary name of final (in final's directory), for
// purpose ("" for a plain replacement). It is for callers that own the
// directory and hold the final file's lock: a leftover of a crash at the
// same name is theirs to remove first.
func Path(final, purpose string) string {
	base := filepath.Base(final)
	if purpose != "" {
		base = purpose + "-" + base
	}
	return filepath.Join(filepath.Dir(final), Prefix+base)
}

// Target tells whether base (a file name, no directory) is a strata
// temporary, and the name of the final file it stands for.
func Target(base string) (target string, ok bool) {
	rest, ok := strings.CutPrefix(base, Prefix)
	if !ok || rest == "" {
		return "", false
	}
	rest = strings.TrimPrefix(rest, PurposeFlatten+"-")
	if i := strings.LastIndexByte(rest, '~'); i > 0 && digits(rest[i+1:]) {
		rest = rest[:i]
	}
	return rest, true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Options say how a file is replaced.
type Options struct {
	// Perm is the new file's mode (0600 if zero).
	Perm os.FileMode
	// Durable: fsync the file before the rename and the directory after
	// it (see the package doc for when not to).
	Durable bool
	// NoReplace: fail with an error wrapping os.ErrExist if the final
	// name exists, instead of replacing it (a hard link, not a rename).
	NoReplace bool
}

// Create opens a new temporary file for final, in final's directory, under
// a name nobody could have prepared (O_EXCL, random): a file already at a
// fixed name, or a hard link to another file, is never written through.
func Create(final string) (*os.File, error) {
	return os.CreateTemp(filepath.Dir(final), Prefix+filepath.Base(final)+"~*")
}

// WriteFile replaces path with data.
func WriteFile(path string, data []byte, o Options) error {
	return Replace(path, o, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Replace replaces path with what fill writes to a temporary file (see the
// package doc). On any failure the temporary is removed and path is left
// as it was.
func Replace(path string, o Options, fill func(*os.File) error) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after a rename; a link leaves path
	perm := o.Perm
	if perm == 0 {
		perm = 0o600
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if o.Durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return Commit(tmp, path, o)
}

// Commit puts a finished temporary file (already synced if o.Durable) in
// place at path: a rename (a hard link if o.NoReplace), then a sync of the
// directory if o.Durable. It does not remove tmp on failure.
func Commit(tmp, path string, o Options) error {
	var err error
	if o.NoReplace {
		err = os.Link(tmp, path)
	} else {
		err = os.Rename(tmp, path)
	}
	if err != nil || !o.Durable {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, so that the renames and links in it are on
// disk. It syncs a file as well: one written by another process
// (qemu-img).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Settle makes a new file (or directory) at path durable before a catalog
// record names it: path itself is synced (its data and size, whoever
// wrote them), then its directory (its name). Without both, a power cut
// after the record's commit can leave a record naming a missing or empty
// image (ext4, XFS and btrfs all may).
func Settle(path string) error {
	if err := SyncDir(path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// MkdirAll creates dir and its missing parents with perm, as os.MkdirAll
// does, and makes the name of each directory it creates durable (its
// parent synced): a record naming a file inside must not outlive the
// directory after a power cut. A directory already there costs one stat.
func MkdirAll(dir string, perm os.FileMode) error { return MkdirAllEach(dir, perm, nil) }

// MkdirAllEach is MkdirAll that also runs made (if set) on each directory
// it creates, outermost first, right after creating it.
func MkdirAllEach(dir string, perm os.FileMode, made func(dir string) error) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := Mkdir(missing[i], perm); err != nil {
			return err
		}
		if made != nil {
			if err := made(missing[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Mkdir creates dir with perm (one already there is success) and, if it
// made it, syncs its parent so that its name is durable.
func Mkdir(dir string, perm os.FileMode) error {
	if err := os.Mkdir(dir, perm); err != nil {
		if errors.Is(err, os.ErrExist) {
			if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
				return nil
			}
		}
		return err
	}
	return SyncDir(filepath.Dir(dir))
}
