package media

import (
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"sort"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// fileBackend is a go-diskfs backend on an open file. It records the first
// write error, because go-diskfs's Finalize ignores the result of many of
// its writes (directories, path tables, volume descriptors): a full disk
// must not yield an image that only looks finished.
type fileBackend struct {
	f        *os.File
	writable bool
	werr     error
}

var (
	_ backend.Storage      = (*fileBackend)(nil)
	_ backend.WritableFile = (*fileBackend)(nil)
)

func (b *fileBackend) Stat() (iofs.FileInfo, error)            { return b.f.Stat() }
func (b *fileBackend) Read(p []byte) (int, error)              { return b.f.Read(p) }
func (b *fileBackend) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }
func (b *fileBackend) Seek(off int64, whence int) (int64, error) {
	return b.f.Seek(off, whence)
}
func (b *fileBackend) Close() error           { return nil } // the owner closes f
func (b *fileBackend) Sys() (*os.File, error) { return b.f, nil }
func (b *fileBackend) Path() string           { return b.f.Name() }
func (b *fileBackend) Writable() (backend.WritableFile, error) {
	if !b.writable {
		return nil, backend.ErrIncorrectOpenMode
	}
	return b, nil
}

func (b *fileBackend) WriteAt(p []byte, off int64) (int, error) {
	n, err := b.f.WriteAt(p, off)
	if err != nil && b.werr == nil {
		b.werr = err
	}
	return n, err
}

// readTree opens an image's filesystem with go-diskfs. It recovers from a
// panic of go-diskfs on a corrupt image.
func readTree(f *os.File, h Header, what string, fn func(fsys *iso9660.FileSystem) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot read the file tree of %q: corrupt image (%v)", what, r)
		}
	}()
	fsys, err := iso9660.Read(&fileBackend{f: f}, h.Size(), 0, h.BlockSize)
	if err != nil {
		return fmt.Errorf("cannot read the file tree of %q: %w", what, err)
	}
	return fn(fsys)
}

// listFiles lists an image's file tree, depth first in name order. Names
// are the Rock Ridge names where present, else Joliet, else ISO9660 (as
// go-diskfs reads them).
func listFiles(f *os.File, h Header, what string) ([]File, error) {
	out := []File{}
	err := readTree(f, h, what, func(fsys *iso9660.FileSystem) error {
		var walk func(dir string, depth int) error
		walk = func(dir string, depth int) error {
			if depth > 64 {
				return fmt.Errorf("cannot read the file tree of %q: directories nested deeper than 64 (a loop?)", what)
			}
			entries, err := fsys.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("cannot read directory %q of %q: %w", dir, what, err)
			}
			sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
			for _, e := range entries {
				fi, err := e.Info()
				if err != nil {
					return err
				}
				p := path.Join(dir, e.Name())
				file := File{Path: "/" + p, Type: "file", Size: fi.Size(), Mode: fi.Mode().Perm().String()}
				if st, ok := fi.Sys().(*iso9660.StatT); ok && st.LinkTarget != "" {
					file.Type, file.Target, file.Size = "symlink", st.LinkTarget, 0
				}
				if e.IsDir() {
					file.Type, file.Size = "dir", 0
				}
				out = append(out, file)
				if e.IsDir() {
					if err := walk(p, depth+1); err != nil {
						return err
					}
				}
			}
			return nil
		}
		return walk(".", 0)
	})
	return out, err
}

// fileOffsets maps the byte offset of each regular file's data to its path,
// to name boot images.
func fileOffsets(f *os.File, h Header, what string) (map[int64]string, error) {
	out := map[int64]string{}
	err := readTree(f, h, what, func(fsys *iso9660.FileSystem) error {
		var walk func(dir string, depth int) error
		walk = func(dir string, depth int) error {
			if depth > 64 {
				return nil
			}
			entries, err := fsys.ReadDir(dir)
			if err != nil {
				return err
			}
			for _, e := range entries {
				p := path.Join(dir, e.Name())
				if e.IsDir() {
					if err := walk(p, depth+1); err != nil {
						return err
					}
					continue
				}
				fi, err := e.Info()
				if err != nil {
					return err
				}
				if st, ok := fi.Sys().(*iso9660.StatT); ok && st.LinkTarget == "" && st.Location != 0 && fi.Size() > 0 {
					out[int64(st.Location)*h.BlockSize] = "/" + p
				}
			}
			return nil
		}
		return walk(".", 0)
	})
	return out, err
}
