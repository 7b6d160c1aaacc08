// Command strata-rbd is strata's Ceph helper: it runs the rbd driver's
// hot-path calls (storage/rbd.Ops) in process, through librados and
// librbd loaded at run time (storage/rbd/librados), on one connection
// per cluster, for the strata process that started it. strata stays
// statically linked; this program is the only one that loads the C
// libraries.
//
// It is started by strata only (from the directory of the strata
// executable), speaks the protocol of storage/rbd (HelperRequest and
// HelperResponse, one JSON object per line) on its stdin and stdout,
// and exits when its stdin closes; strata also has the kernel kill it
// when strata dies (Pdeathsig). Requests are served concurrently and
// answered by ID. No secret passes through it: librados reads the
// keyring the cluster's ceph.conf names, as the rbd tool does.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/rbd/librados"
)

func main() {
	out := &writer{w: bufio.NewWriter(os.Stdout)}
	if err := librados.Available(); err != nil {
		out.send(rbd.HelperResponse{Errno: int(syscall.ENOSYS), Error: err.Error()})
		os.Exit(1)
	}
	out.send(rbd.HelperResponse{Ready: true, Version: rbd.HelperVersion})
	s := &server{conns: map[rbd.Conn]*cluster{}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	for in.Scan() {
		if len(in.Bytes()) == 0 {
			continue
		}
		var req rbd.HelperRequest
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "strata-rbd: unreadable request: %v\n", err)
			os.Exit(2)
		}
		go func() { out.send(s.serve(req)) }()
	}
	// stdin closed: strata is done (or gone). Nothing is held for it.
	os.Exit(0)
}

// writer sends one response per line, whole.
type writer struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (w *writer) send(r rbd.HelperResponse) {
	line, _ := json.Marshal(r)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.w.Write(append(line, '\n'))
	if err := w.w.Flush(); err != nil {
		os.Exit(0) // strata is gone
	}
}

// cluster is one connection and its I/O contexts.
type cluster struct {
	once sync.Once
	conn *librados.Conn
	err  error
	mu   sync.Mutex
	ios  map[[2]string]*librados.IOCtx
}

type server struct {
	mu    sync.Mutex
	conns map[rbd.Conn]*cluster
}

// connect is the connection to a request's cluster, made once.
func (s *server) connect(req rbd.HelperRequest) (*cluster, error) {
	key := rbd.Conn{Conf: req.Conf, ID: req.Client}
	s.mu.Lock()
	c := s.conns[key]
	if c == nil {
		c = &cluster{ios: map[[2]string]*librados.IOCtx{}}
		s.conns[key] = c
	}
	s.mu.Unlock()
	c.once.Do(func() {
		c.conn, c.err = librados.Connect(req.Conf, req.Client, librados.Options{
			MountTimeout: rbd.MountTimeout * time.Second, OpTimeout: rbd.OpTimeout * time.Second})
	})
	if c.err != nil {
		// The next request tries again (a cluster that did not answer
		// may answer later).
		s.mu.Lock()
		if s.conns[key] == c {
			delete(s.conns, key)
		}
		s.mu.Unlock()
	}
	return c, c.err
}

func (c *cluster) io(pool, ns string) (*librados.IOCtx, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]string{pool, ns}
	if io := c.ios[k]; io != nil {
		return io, nil
	}
	io, err := c.conn.IOCtx(pool, ns)
	if err != nil {
		return nil, err
	}
	c.ios[k] = io
	return io, nil
}

// fail is a response for err: its errno and message.
func fail(id uint64, err error) rbd.HelperResponse {
	r := rbd.HelperResponse{ID: id, Errno: int(syscall.EIO), Error: "strata-rbd: " + err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		r.Errno = int(errno)
	}
	return r
}

func (s *server) serve(req rbd.HelperRequest) rbd.HelperResponse {
	c, err := s.connect(req)
	if err != nil {
		r := fail(req.ID, err)
		r.Connect = true
		return r
	}
	io, err := c.io(req.Pool, req.Namespace)
	if err != nil {
		return fail(req.ID, err)
	}
	resp, err := do(c.conn, io, req)
	if err != nil {
		return fail(req.ID, err)
	}
	resp.ID = req.ID
	return resp
}

// withImage runs f on the image opened read-write (changes) or
// read-only (reads: no watch of this process's on it).
func withImage(io *librados.IOCtx, name string, write bool, f func(*librados.Image) error) error {
	open := io.OpenReadOnly
	if write {
		open = io.Open
	}
	im, err := open(name)
	if err != nil {
		return err
	}
	err = f(im)
	if cerr := im.Close(); err == nil {
		err = cerr
	}
	return err
}

func do(conn *librados.Conn, io *librados.IOCtx, req rbd.HelperRequest) (rbd.HelperResponse, error) {
	var r rbd.HelperResponse
	switch req.Op {
	case rbd.OpSnapCreate:
		return r, withImage(io, req.Image, true, func(im *librados.Image) error { return im.SnapCreate(req.Snap) })
	case rbd.OpSnapRollback:
		return r, withImage(io, req.Image, true, func(im *librados.Image) error { return im.SnapRollback(req.Snap) })
	case rbd.OpRename:
		return r, io.Rename(req.Image, req.To)
	case rbd.OpSnaps:
		err := withImage(io, req.Image, false, func(im *librados.Image) error {
			snaps, err := im.Snaps()
			for _, sn := range snaps {
				r.Snaps = append(r.Snaps, rbd.HelperSnap{ID: int64(sn.ID), Name: sn.Name, Size: int64(sn.Size), Protected: sn.Protected})
			}
			return err
		})
		return r, err
	case rbd.OpExists:
		err := withImage(io, req.Image, false, func(*librados.Image) error { return nil })
		if errors.Is(err, syscall.ENOENT) {
			return r, nil
		}
		r.Exists = err == nil
		return r, err
	case rbd.OpWatchers:
		w, err := io.OtherWatchers(conn, req.Image)
		r.Watchers = w
		return r, err
	case rbd.OpList:
		names, err := io.List()
		r.Images = names
		return r, err
	case rbd.OpOmapGet:
		v, ok, err := io.OmapGet(req.Object, req.Key)
		r.Value, r.Found = string(v), ok
		return r, err
	case rbd.OpOmapSet:
		return r, io.OmapSet(req.Object, map[string][]byte{req.Key: []byte(req.Value)})
	case rbd.OpState:
		open := func() (*librados.Image, error) { return io.OpenReadOnly(req.Image) }
		if req.Snap != "" {
			open = func() (*librados.Image, error) { return io.OpenAt(req.Image, req.Snap) }
		}
		im, err := open()
		if err != nil {
			return r, err
		}
		defer im.Close()
		st, err := state(im)
		r.State = &st
		return r, err
	}
	return r, fmt.Errorf("unknown operation %q: %w", req.Op, syscall.EINVAL)
}

// state reads what rbd info (ID, size, modify_timestamp) and rbd diff
// --whole-object --format json print, in the tools' text.
func state(im *librados.Image) (rbd.State, error) {
	var st rbd.State
	id, err := im.ID()
	if err != nil {
		return st, err
	}
	size, err := im.Size()
	if err != nil {
		return st, err
	}
	mod, err := im.Modified()
	if err != nil {
		return st, err
	}
	ext, err := im.Diff()
	if err != nil {
		return st, err
	}
	st.ID, st.Size, st.Modified, st.Diff = id, int64(size), librados.CTime(mod), diffJSON(ext)
	return st, nil
}

// diffJSON is rbd diff's --format json output for the extents:
// [{"offset":N,"length":N,"exists":"true"},...] and a newline.
func diffJSON(ext []librados.Extent) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range ext {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"offset":%d,"length":%d,"exists":"%t"}`, e.Offset, e.Length, e.Exists)
	}
	b.WriteString("]\n")
	return []byte(b.String())
}
