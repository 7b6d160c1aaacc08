package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/image"
)

// The copy reads chunks of chunkSize; at most inFlight chunks exist, so a
// copy of any size holds inFlight × chunkSize bytes of buffers.
const (
	chunkSize = 1 << 20
	inFlight  = 8
)

// readPolicy says how a copy treats read errors. A chunk that fails is
// read again sector by sector; a sector is tried 1+retries times, then it
// fails the copy, or is zero-filled and reported when allowBad is set.
type readPolicy struct {
	what     string // the source, for messages
	size     int64  // bytes the copy expects, for messages
	retries  int
	allowBad bool
}

// copyResult is what a copy learned.
type copyResult struct {
	SHA256     string
	BadSectors []int64 // byte offsets of zero-filled sectors, ascending
}

// writeError is a failure of the destination, told apart from read errors
// so that the caller can explain ENOSPC.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

type chunk struct {
	buf  []byte
	n    int
	refs atomic.Int32
}

// copyHashed copies size bytes of src to dst (io.Discard to only hash) and
// computes their SHA-256. A reader goroutine feeds two consumers through
// bounded channels, the hasher and the writer (this goroutine), so hashing
// overlaps both reading and writing; a chunk is reused once both consumers
// have released it.
func copyHashed(ctx context.Context, src io.ReaderAt, size int64, dst io.Writer, p readPolicy, prog storage.Progress) (copyResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cp := newChunkPipe()
	go cp.read(ctx, src, size, p)
	h := sha256.New()
	var hashing sync.WaitGroup
	hashing.Go(func() {
		for c := range cp.toHash {
			h.Write(c.buf[:c.n])
			cp.release(c)
		}
	})

	prog.Start(size, p.what)
	var werr error
	var wb image.WriteBehind
	var written int64
	if f, ok := dst.(*os.File); ok {
		wb = image.NewWriteBehind(f)
	}
	for c := range cp.toWrite {
		if werr == nil {
			if _, err := dst.Write(c.buf[:c.n]); err != nil {
				werr = &writeError{err}
				cancel() // stops the reader; keep draining so it can finish
			} else {
				prog.Add(int64(c.n))
				written += int64(c.n)
				wb.Reached(written)
			}
		}
		cp.release(c)
	}
	hashing.Wait()
	prog.Done()
	switch {
	case werr != nil:
		return copyResult{}, werr
	case cp.readErr != nil:
		return copyResult{BadSectors: cp.bad}, cp.readErr
	}
	bad := cp.bad
	if bad == nil {
		bad = []int64{}
	}
	return copyResult{SHA256: hex.EncodeToString(h.Sum(nil)), BadSectors: bad}, nil
}

// chunkPipe carries copyHashed's chunks: free ones to the reader, read
// ones to both the hasher and the writer. readErr and bad are the
// reader's, to be read once toWrite is closed.
type chunkPipe struct {
	free, toHash, toWrite chan *chunk
	readErr               error
	bad                   []int64
}

func newChunkPipe() *chunkPipe {
	cp := &chunkPipe{
		free:    make(chan *chunk, inFlight),
		toHash:  make(chan *chunk, inFlight),
		toWrite: make(chan *chunk, inFlight),
	}
	for range inFlight {
		cp.free <- &chunk{buf: make([]byte, chunkSize)}
	}
	return cp
}

// release gives a consumer's chunk back; the second release frees it.
func (cp *chunkPipe) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		cp.free <- c // never blocks: free holds every chunk
	}
}

// read is the reader goroutine: size bytes of src in chunks, to both
// consumers, until the end, a read error or ctx's end; then it closes
// both channels.
func (cp *chunkPipe) read(ctx context.Context, src io.ReaderAt, size int64, p readPolicy) {
	defer close(cp.toWrite)
	defer close(cp.toHash)
	for off := int64(0); off < size; {
		var c *chunk
		select {
		case c = <-cp.free:
		case <-ctx.Done():
			cp.readErr = ctx.Err()
			return
		}
		n := min(int64(chunkSize), size-off)
		b, err := p.read(ctx, src, c.buf[:n], off)
		cp.bad = append(cp.bad, b...)
		if err != nil {
			cp.readErr = err
			return
		}
		c.n = int(n)
		c.refs.Store(2)
		cp.toHash <- c
		cp.toWrite <- c
		off += n
	}
}

// read fills b from src at off. On a read error it falls back to single
// sectors with retries, so that one bad sector costs one sector.
func (p readPolicy) read(ctx context.Context, src io.ReaderAt, b []byte, off int64) ([]int64, error) {
	n, err := src.ReadAt(b, off)
	if n == len(b) {
		return nil, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return nil, p.truncated(off + int64(n))
	}
	var bad []int64
	for s := 0; s < len(b); s += sectorSize {
		sec := b[s:min(s+sectorSize, len(b))]
		at := off + int64(s)
		var serr error
		for attempt := 0; attempt <= p.retries; attempt++ {
			if err := ctx.Err(); err != nil {
				return bad, err
			}
			m, err := src.ReadAt(sec, at)
			if m == len(sec) {
				serr = nil
				break
			}
			if err == nil || errors.Is(err, io.EOF) {
				return bad, p.truncated(at + int64(m))
			}
			serr = err
		}
		if serr == nil {
			continue
		}
		if !p.allowBad {
			return bad, storage.Errorf(storage.ErrPrecondition, "cannot read %q at byte %d (sector %d) after %d attempts: %w; clean the disc and retry, raise --retries, or add --allow-bad-sectors to zero-fill unreadable sectors and keep the rest", p.what, at, at/sectorSize, p.retries+1, serr)
		}
		log.Warn().Str("source", p.what).Int64("offset", at).Err(serr).Msg("unreadable sector zero-filled")
		clear(sec)
		bad = append(bad, at)
	}
	return bad, nil
}

func (p readPolicy) truncated(at int64) error {
	return storage.Errorf(storage.ErrPrecondition, "%q ended at byte %d, before the end of the image at byte %d: the image or disc is truncated; use --raw to capture what is there", p.what, at, p.size)
}

// formatOffsets lists the first few offsets for a message.
func formatOffsets(offs []int64) string {
	const show = 8
	s := ""
	for i, o := range offs {
		if i == show {
			return s + fmt.Sprintf(" and %d more", len(offs)-show)
		}
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(o)
	}
	return s
}
