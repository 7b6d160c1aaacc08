package media

import (
	iofs "io/fs"
	"os"

	"github.com/diskfs/go-diskfs/backend"
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
