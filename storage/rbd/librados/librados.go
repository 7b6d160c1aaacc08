// Package librados is an in-process client of a Ceph cluster for the rbd
// driver's helper (cmd/strata-rbd): it loads librados.so.2 and
// librbd.so.1 at run time (github.com/ebitengine/purego: no cgo, built
// with CGO_ENABLED=0) and calls the few C functions the hot paths (and
// doctor's listing of a pool) need,
// on one connection to the cluster, where the driver otherwise starts
// one rbd/rados process per call (each connects anew: 60-100 ms).
//
// Vocabulary (librados' and librbd's own):
//
//   - Conn: a connected cluster handle (rados_t); it owns librados'
//     threads (messenger, timers, finisher) until Close.
//   - IOCtx: an I/O context on one pool and RBD namespace (rados_ioctx_t);
//     images and RADOS objects are named inside it.
//   - Image: an open RBD image (rbd_image_t). Open read-write, it holds a
//     watch on its header (other clients see it as a watcher) and takes
//     the exclusive lock when it writes (a snapshot rollback does).
//
// Invariants: every handle is released by its Close (Conn last: an IOCtx
// or Image used after its Conn is closed is undefined behaviour in C, so
// Close methods refuse a second call and Conn.Close waits for nothing).
// Errors are the functions' negative errno as *Error, which unwraps to
// the syscall.Errno (errors.Is(err, syscall.ENOENT)). When the libraries
// cannot be loaded, Connect returns an error wrapping ErrUnavailable: the
// caller falls back to the command-line tools.
//
// What importing it does to a program: it becomes dynamically linked
// against the C library (purego's internal fakecgo makes the Go runtime
// start threads with pthread_create, as with cgo), even where no Ceph
// library is ever loaded. So only cmd/strata-rbd, strata's helper,
// imports it; the strata binary stays static (storage/rbd's package doc
// tells how strata talks to the helper).
package librados

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ErrUnavailable: librados or librbd cannot be loaded on this host.
var ErrUnavailable = errors.New("the ceph client libraries (librados.so.2, librbd.so.1) cannot be loaded")

// Error is a failed C call: its name and the errno it returned.
type Error struct {
	Op    string // the C function, e.g. rbd_snap_rollback
	What  string // what it was called on (image, object)
	Errno syscall.Errno
}

func (e *Error) Error() string {
	if e.What != "" {
		return fmt.Sprintf("%s %s: %v", e.Op, e.What, e.Errno)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Errno)
}

func (e *Error) Unwrap() error { return e.Errno }

// check turns a C return value into an error (negative: -errno).
func check(ret int32, op, what string) error {
	if ret >= 0 {
		return nil
	}
	return &Error{Op: op, What: what, Errno: syscall.Errno(-ret)}
}

// The C functions, registered once by load. Handles are pointers kept as
// uintptr (C memory: the Go collector never looks at it); strings are
// passed as *byte to a NUL-terminated copy (cstr), so that NULL can be
// passed where the C API gives it a meaning.
var fn struct {
	radosCreate       func(cluster *uintptr, id *byte) int32
	radosConfReadFile func(cluster uintptr, path *byte) int32
	radosConfSet      func(cluster uintptr, option, value *byte) int32
	radosConnect      func(cluster uintptr) int32
	radosShutdown     func(cluster uintptr)
	ioctxCreate       func(cluster uintptr, pool *byte, ioctx *uintptr) int32
	ioctxDestroy      func(ioctx uintptr)
	ioctxSetNamespace func(ioctx uintptr, ns *byte)
	createWriteOp     func() uintptr
	releaseWriteOp    func(op uintptr)
	writeOpOmapSet    func(op uintptr, keys, vals *uintptr, lens *uintptr, num uintptr)
	writeOpOmapRmKeys func(op uintptr, keys *uintptr, num uintptr)
	writeOpOperate    func(op, ioctx uintptr, oid *byte, mtime unsafe.Pointer, flags int32) int32

	rbdOpen         func(ioctx uintptr, name *byte, image *uintptr, snap *byte) int32
	rbdOpenReadOnly func(ioctx uintptr, name *byte, image *uintptr, snap *byte) int32
	rbdClose        func(image uintptr) int32
	rbdSnapCreate   func(image uintptr, snap *byte) int32
	rbdSnapRollback func(image uintptr, snap *byte) int32
	rbdSnapRemove   func(image uintptr, snap *byte) int32
	rbdRename       func(ioctx uintptr, src, dst *byte) int32
	rbdList         func(ioctx uintptr, names *byte, size *uintptr) int32
	rbdWatchersList func(image uintptr, watchers unsafe.Pointer, max *uintptr) int32
	rbdWatchersFree func(watchers unsafe.Pointer, n uintptr)
	rbdStat         func(image uintptr, info unsafe.Pointer, size uintptr) int32
	rbdGetID        func(image uintptr, id *byte, size uintptr) int32
	rbdGetModified  func(image uintptr, ts unsafe.Pointer) int32
	rbdDiffIterate2 func(image uintptr, fromsnap *byte, ofs, length uint64, parent, whole uint8, cb uintptr, arg uintptr) int32

	radosInstanceID  func(cluster uintptr) uint64
	createReadOp     func() uintptr
	releaseReadOp    func(op uintptr)
	readOpOmapByKeys func(op uintptr, keys *uintptr, num uintptr, iter *uintptr, prval *int32)
	readOpOperate    func(op, ioctx uintptr, oid *byte, flags int32) int32
	omapGetNext      func(iter uintptr, key, val **byte, length *uintptr) int32
	omapGetEnd       func(iter uintptr)
	rbdSnapList      func(image uintptr, snaps unsafe.Pointer, max *int32) int32
	rbdSnapListEnd   func(snaps unsafe.Pointer)
	rbdSnapProtected func(image uintptr, snap *byte, protected *int32) int32

	// The C library's ctime_r: rbd info prints timestamps with ctime(3).
	ctimeR func(t *int64, buf *byte) uintptr
	tzset  func()
}

var (
	loadOnce sync.Once
	loadErr  error
)

// Libraries are the sonames loaded (the ABI major versions Debian's
// librados2 and librbd1 ship).
var Libraries = [2]string{"librados.so.2", "librbd.so.1"}

// load opens the libraries and registers the functions, once per
// process. A missing symbol panics in purego.RegisterLibFunc: it is
// looked up first with Dlsym so that it is an error instead.
func load() error {
	loadOnce.Do(func() {
		rados, err := purego.Dlopen(Libraries[0], purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			loadErr = fmt.Errorf("%w: %v", ErrUnavailable, err)
			return
		}
		rbd, err := purego.Dlopen(Libraries[1], purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			loadErr = fmt.Errorf("%w: %v", ErrUnavailable, err)
			return
		}
		reg := func(lib uintptr, ptr any, name string) {
			if loadErr != nil {
				return
			}
			if _, err := purego.Dlsym(lib, name); err != nil {
				loadErr = fmt.Errorf("%w: %s: %v", ErrUnavailable, name, err)
				return
			}
			purego.RegisterLibFunc(ptr, lib, name)
		}
		reg(rados, &fn.radosCreate, "rados_create")
		reg(rados, &fn.radosConfReadFile, "rados_conf_read_file")
		reg(rados, &fn.radosConfSet, "rados_conf_set")
		reg(rados, &fn.radosConnect, "rados_connect")
		reg(rados, &fn.radosShutdown, "rados_shutdown")
		reg(rados, &fn.ioctxCreate, "rados_ioctx_create")
		reg(rados, &fn.ioctxDestroy, "rados_ioctx_destroy")
		reg(rados, &fn.ioctxSetNamespace, "rados_ioctx_set_namespace")
		reg(rados, &fn.createWriteOp, "rados_create_write_op")
		reg(rados, &fn.releaseWriteOp, "rados_release_write_op")
		reg(rados, &fn.writeOpOmapSet, "rados_write_op_omap_set")
		reg(rados, &fn.writeOpOmapRmKeys, "rados_write_op_omap_rm_keys")
		reg(rados, &fn.writeOpOperate, "rados_write_op_operate")
		reg(rbd, &fn.rbdOpen, "rbd_open")
		reg(rbd, &fn.rbdOpenReadOnly, "rbd_open_read_only")
		reg(rbd, &fn.rbdClose, "rbd_close")
		reg(rbd, &fn.rbdSnapCreate, "rbd_snap_create")
		reg(rbd, &fn.rbdSnapRollback, "rbd_snap_rollback")
		reg(rbd, &fn.rbdSnapRemove, "rbd_snap_remove")
		reg(rbd, &fn.rbdRename, "rbd_rename")
		reg(rbd, &fn.rbdList, "rbd_list")
		reg(rbd, &fn.rbdWatchersList, "rbd_watchers_list")
		reg(rbd, &fn.rbdWatchersFree, "rbd_watchers_list_cleanup")
		reg(rbd, &fn.rbdStat, "rbd_stat")
		reg(rbd, &fn.rbdGetID, "rbd_get_id")
		reg(rbd, &fn.rbdGetModified, "rbd_get_modify_timestamp")
		reg(rbd, &fn.rbdDiffIterate2, "rbd_diff_iterate2")
		reg(rados, &fn.radosInstanceID, "rados_get_instance_id")
		reg(rados, &fn.createReadOp, "rados_create_read_op")
		reg(rados, &fn.releaseReadOp, "rados_release_read_op")
		reg(rados, &fn.readOpOmapByKeys, "rados_read_op_omap_get_vals_by_keys")
		reg(rados, &fn.readOpOperate, "rados_read_op_operate")
		reg(rados, &fn.omapGetNext, "rados_omap_get_next")
		reg(rados, &fn.omapGetEnd, "rados_omap_get_end")
		reg(rbd, &fn.rbdSnapList, "rbd_snap_list")
		reg(rbd, &fn.rbdSnapListEnd, "rbd_snap_list_end")
		reg(rbd, &fn.rbdSnapProtected, "rbd_snap_is_protected")
		if loadErr == nil {
			libc, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err != nil {
				loadErr = fmt.Errorf("%w: %v", ErrUnavailable, err)
				return
			}
			reg(libc, &fn.ctimeR, "ctime_r")
			reg(libc, &fn.tzset, "tzset")
		}
		if loadErr == nil {
			fn.tzset()
			// One C function pointer for every diff (purego cannot
			// free callbacks: at most 2000 per process).
			diffCB = purego.NewCallback(diffCallback)
		}
	})
	return loadErr
}

// Available says whether the libraries load here (nil: they do).
func Available() error { return load() }

// cstr is s as a NUL-terminated C string.
// The bytes are Go memory: the C functions used here copy what they keep.
func cstr(s string) *byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return &b[0]
}

// Options are the client's timeouts (the rbd driver's MountTimeout and
// OpTimeout): 0 keeps librados' default.
type Options struct {
	MountTimeout time.Duration // client_mount_timeout: waiting for the monitors
	OpTimeout    time.Duration // rados_osd_op_timeout: one object operation
}

// Conn is a connection to a cluster.
type Conn struct {
	mu     sync.Mutex
	h      uintptr
	closed bool
}

// Connect reads conf (a ceph.conf path; "" searches librados' default
// places and CEPH_CONF), as client id ("" is librados' default,
// client.admin), and connects. The keyring, when cephx is on, is the one
// conf names for the client ([client.ID] keyring = FILE): no secret is
// passed here.
func Connect(conf, id string, o Options) (*Conn, error) {
	if err := load(); err != nil {
		return nil, err
	}
	var idp *byte
	if id != "" {
		idp = cstr(id)
	}
	var h uintptr
	if err := check(fn.radosCreate(&h, idp), "rados_create", id); err != nil {
		return nil, err
	}
	c := &Conn{h: h}
	fail := func(err error) (*Conn, error) {
		fn.radosShutdown(h)
		c.closed = true
		return nil, err
	}
	var confp *byte
	if conf != "" {
		confp = cstr(conf)
	}
	if err := check(fn.radosConfReadFile(h, confp), "rados_conf_read_file", conf); err != nil {
		return fail(err)
	}
	set := func(k, v string) error {
		return check(fn.radosConfSet(h, cstr(k), cstr(v)), "rados_conf_set", k)
	}
	if o.MountTimeout > 0 {
		if err := set("client_mount_timeout", fmt.Sprint(int(o.MountTimeout.Seconds()))); err != nil {
			return fail(err)
		}
	}
	if o.OpTimeout > 0 {
		if err := set("rados_osd_op_timeout", fmt.Sprint(int(o.OpTimeout.Seconds()))); err != nil {
			return fail(err)
		}
	}
	if err := check(fn.radosConnect(h), "rados_connect", conf); err != nil {
		return fail(err)
	}
	return c, nil
}

// Close shuts the connection down (librados joins its threads). Every
// IOCtx and Image of it must be closed first.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	fn.radosShutdown(c.h)
}

// IOCtx is an I/O context on a pool and namespace.
type IOCtx struct {
	h      uintptr
	closed bool
}

// IOCtx opens an I/O context on pool, in RBD namespace ns ("": the
// pool's default namespace).
func (c *Conn) IOCtx(pool, ns string) (*IOCtx, error) {
	var h uintptr
	if err := check(fn.ioctxCreate(c.h, cstr(pool), &h), "rados_ioctx_create", pool); err != nil {
		return nil, err
	}
	if ns != "" {
		fn.ioctxSetNamespace(h, cstr(ns))
	}
	return &IOCtx{h: h}, nil
}

// Close releases the I/O context.
func (io *IOCtx) Close() {
	if !io.closed {
		io.closed = true
		fn.ioctxDestroy(io.h)
	}
}

// OmapSet sets keys of object oid's omap (the object is created if it
// does not exist), in one write operation.
func (io *IOCtx) OmapSet(oid string, kv map[string][]byte) error {
	op := fn.createWriteOp()
	defer fn.releaseWriteOp(op)
	var pin runtime.Pinner // the arrays hold pointers to Go memory
	defer pin.Unpin()
	keys := make([]uintptr, 0, len(kv))
	vals := make([]uintptr, 0, len(kv))
	lens := make([]uintptr, 0, len(kv))
	for k, v := range kv {
		kp := cstr(k)
		pin.Pin(kp)
		keys = append(keys, uintptr(unsafe.Pointer(kp)))
		vb := append(append([]byte(nil), v...), 0) // never empty: &vb[0] exists
		pin.Pin(&vb[0])
		vals = append(vals, uintptr(unsafe.Pointer(&vb[0])))
		lens = append(lens, uintptr(len(v)))
	}
	if len(keys) == 0 {
		return nil
	}
	fn.writeOpOmapSet(op, &keys[0], &vals[0], &lens[0], uintptr(len(keys)))
	return check(fn.writeOpOperate(op, io.h, cstr(oid), nil, 0), "rados_write_op_operate", oid)
}

// OmapRemove removes keys from object oid's omap (absent keys: success;
// an absent object: ENOENT).
func (io *IOCtx) OmapRemove(oid string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	op := fn.createWriteOp()
	defer fn.releaseWriteOp(op)
	var pin runtime.Pinner
	defer pin.Unpin()
	ks := make([]uintptr, len(keys))
	for i, k := range keys {
		kp := cstr(k)
		pin.Pin(kp)
		ks[i] = uintptr(unsafe.Pointer(kp))
	}
	fn.writeOpOmapRmKeys(op, &ks[0], uintptr(len(ks)))
	return check(fn.writeOpOperate(op, io.h, cstr(oid), nil, 0), "rados_write_op_operate", oid)
}

// Rename renames image from to to (rbd_rename; the image should not be
// open in this process).
func (io *IOCtx) Rename(from, to string) error {
	return check(fn.rbdRename(io.h, cstr(from), cstr(to)), "rbd_rename", from)
}

// listSize is List's first buffer (names of about 25 bytes: 160 images).
var listSize uintptr = 4096

// List names the images of the I/O context's pool and namespace
// (rbd_list: the names, NUL-separated, in a buffer it says the size of
// when the one given is too small).
func (io *IOCtx) List() ([]string, error) {
	size := listSize
	for range 8 {
		buf := make([]byte, size)
		n := size
		ret := fn.rbdList(io.h, &buf[0], &n) // never NULL: rbd_list refuses it even with no image
		runtime.KeepAlive(buf)
		if ret == -int32(syscall.ERANGE) && n > size {
			size = n
			continue
		}
		if err := check(ret, "rbd_list", ""); err != nil {
			return nil, err
		}
		var names []string
		for _, name := range strings.Split(string(buf[:ret]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
	return nil, &Error{Op: "rbd_list", Errno: syscall.ERANGE}
}

// Image is an open RBD image.
type Image struct {
	h      uintptr
	name   string
	closed bool
}

// Open opens image name read-write (it becomes a watcher of the image
// while open).
func (io *IOCtx) Open(name string) (*Image, error) {
	var h uintptr
	if err := check(fn.rbdOpen(io.h, cstr(name), &h, nil), "rbd_open", name); err != nil {
		return nil, err
	}
	return &Image{h: h, name: name}, nil
}

// OpenReadOnly opens image name read-only: no watch, so other clients
// (and Watchers) do not see this process.
func (io *IOCtx) OpenReadOnly(name string) (*Image, error) {
	var h uintptr
	if err := check(fn.rbdOpenReadOnly(io.h, cstr(name), &h, nil), "rbd_open_read_only", name); err != nil {
		return nil, err
	}
	return &Image{h: h, name: name}, nil
}

// Close closes the image (releasing its exclusive lock and watch).
func (im *Image) Close() error {
	if im.closed {
		return nil
	}
	im.closed = true
	return check(fn.rbdClose(im.h), "rbd_close", im.name)
}

// SnapCreate makes snapshot snap of the image.
func (im *Image) SnapCreate(snap string) error {
	return check(fn.rbdSnapCreate(im.h, cstr(snap)), "rbd_snap_create", im.name+"@"+snap)
}

// SnapRemove removes snapshot snap.
func (im *Image) SnapRemove(snap string) error {
	return check(fn.rbdSnapRemove(im.h, cstr(snap)), "rbd_snap_remove", im.name+"@"+snap)
}

// SnapRollback rolls the image back to snapshot snap (every snapshot
// stays; O(objects), done by the OSDs).
func (im *Image) SnapRollback(snap string) error {
	return check(fn.rbdSnapRollback(im.h, cstr(snap)), "rbd_snap_rollback", im.name+"@"+snap)
}

// rbdImageWatcher is librbd's rbd_image_watcher_t.
type rbdImageWatcher struct {
	addr   *byte // char *, C memory
	id     int64
	cookie uint64
}

// Watchers is how many clients watch the image (an image this process
// opened read-write counts itself).
func (im *Image) Watchers() (int, error) {
	ws, err := im.WatcherList()
	return len(ws), err
}

// OpenAt opens image name read-only at its snapshot snap (no watch).
func (io *IOCtx) OpenAt(name, snap string) (*Image, error) {
	var h uintptr
	if err := check(fn.rbdOpenReadOnly(io.h, cstr(name), &h, cstr(snap)), "rbd_open_read_only", name+"@"+snap); err != nil {
		return nil, err
	}
	return &Image{h: h, name: name + "@" + snap}, nil
}

// Size is the image's size in bytes (at its snapshot, if opened at one).
func (im *Image) Size() (uint64, error) {
	var info [256]byte // rbd_image_info_t is 160 bytes; librbd checks only that it fits
	if err := check(fn.rbdStat(im.h, unsafe.Pointer(&info[0]), uintptr(len(info))), "rbd_stat", im.name); err != nil {
		return 0, err
	}
	return *(*uint64)(unsafe.Pointer(&info[0])), nil
}

// ID is the image's ID (it stays through renames and rollbacks).
func (im *Image) ID() (string, error) {
	buf := make([]byte, 64)
	if err := check(fn.rbdGetID(im.h, &buf[0], uintptr(len(buf))), "rbd_get_id", im.name); err != nil {
		return "", err
	}
	for i, b := range buf {
		if b == 0 {
			return string(buf[:i]), nil
		}
	}
	return string(buf), nil
}

// Modified is the image's modify timestamp (librbd updates it on client
// writes, at most every rbd_mtime_update_interval).
func (im *Image) Modified() (time.Time, error) {
	var ts syscall.Timespec
	if err := check(fn.rbdGetModified(im.h, unsafe.Pointer(&ts)), "rbd_get_modify_timestamp", im.name); err != nil {
		return time.Time{}, err
	}
	return time.Unix(ts.Sec, ts.Nsec), nil
}

// Extent is an allocated range of an image (rbd diff --whole-object).
type Extent struct {
	Offset, Length uint64
	Exists         bool
}

var (
	diffCB    uintptr
	diffMu    sync.Mutex
	diffNext  uintptr
	diffSinks = map[uintptr]*[]Extent{}
)

// diffCallback is librbd's diff_iterate callback: arg names the slice
// the extents go to (no Go pointer passes through C).
func diffCallback(off uint64, length uintptr, exists int32, arg uintptr) int32 {
	diffMu.Lock()
	sink := diffSinks[arg]
	diffMu.Unlock()
	if sink == nil {
		return -int32(syscall.EINVAL)
	}
	*sink = append(*sink, Extent{Offset: off, Length: uint64(length), Exists: exists != 0})
	return 0
}

// Diff lists the image's allocated objects (whole-object extents; from
// the image's creation, at its snapshot if opened at one).
func (im *Image) Diff() ([]Extent, error) {
	size, err := im.Size()
	if err != nil {
		return nil, err
	}
	var out []Extent
	diffMu.Lock()
	diffNext++
	key := diffNext
	diffSinks[key] = &out
	diffMu.Unlock()
	defer func() { diffMu.Lock(); delete(diffSinks, key); diffMu.Unlock() }()
	if err := check(fn.rbdDiffIterate2(im.h, nil, 0, size, 1, 1, diffCB, key), "rbd_diff_iterate2", im.name); err != nil {
		return nil, err
	}
	return out, nil
}

// InstanceID is this connection's client instance ID (client.N's N):
// the ID a watch this connection holds is listed under.
func (c *Conn) InstanceID() uint64 { return fn.radosInstanceID(c.h) }

// Watcher is a client that has an image open.
type Watcher struct {
	Addr string // its address, as rbd status reports it
	ID   int64  // its client instance ID
}

// WatcherList lists the clients that watch the image (an image this
// process opened read-write lists this connection too).
func (im *Image) WatcherList() ([]Watcher, error) {
	for max := uintptr(8); ; max *= 4 {
		ws := make([]rbdImageWatcher, max)
		n := max
		ret := fn.rbdWatchersList(im.h, unsafe.Pointer(&ws[0]), &n)
		if ret == -int32(syscall.ERANGE) && max < 1024 {
			continue
		}
		if err := check(ret, "rbd_watchers_list", im.name); err != nil {
			return nil, err
		}
		out := make([]Watcher, 0, n)
		for _, w := range ws[:n] {
			out = append(out, Watcher{Addr: goString(w.addr), ID: w.id})
		}
		fn.rbdWatchersFree(unsafe.Pointer(&ws[0]), n)
		return out, nil
	}
}

// OtherWatchers lists the addresses of the clients other than this
// connection that have image name open. The image is opened read-only
// to ask (no watch of its own), and a watch this connection holds (an
// open of the image for a change running meanwhile) is left out: this
// process never counts itself.
func (io *IOCtx) OtherWatchers(c *Conn, name string) ([]string, error) {
	im, err := io.OpenReadOnly(name)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	ws, err := im.WatcherList()
	if err != nil {
		return nil, err
	}
	self := int64(c.InstanceID())
	var out []string
	for _, w := range ws {
		if w.ID != self {
			out = append(out, w.Addr)
		}
	}
	return out, nil
}

// goString copies the NUL-terminated C string at p.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for i := 0; ; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c == 0 {
			return string(b)
		}
		b = append(b, c)
	}
}

// rbdSnapInfo is librbd's rbd_snap_info_t.
type rbdSnapInfo struct {
	id   uint64
	size uint64
	name *byte // const char *, C memory
}

// Snap is one snapshot of an image.
type Snap struct {
	ID        uint64
	Size      uint64
	Name      string
	Protected bool
}

// Snaps lists the image's snapshots, oldest first (as rbd snap ls).
func (im *Image) Snaps() ([]Snap, error) {
	for max := int32(16); ; max *= 4 {
		buf := make([]rbdSnapInfo, max)
		n := max
		ret := fn.rbdSnapList(im.h, unsafe.Pointer(&buf[0]), &n)
		if ret == -int32(syscall.ERANGE) && max < 1<<16 {
			if n > max {
				max = n / 4
				max++
			}
			continue
		}
		if err := check(ret, "rbd_snap_list", im.name); err != nil {
			return nil, err
		}
		out := make([]Snap, 0, ret)
		for _, s := range buf[:ret] {
			out = append(out, Snap{ID: s.id, Size: s.size, Name: goString(s.name)})
		}
		fn.rbdSnapListEnd(unsafe.Pointer(&buf[0]))
		for i := range out {
			var p int32
			if err := check(fn.rbdSnapProtected(im.h, cstr(out[i].Name), &p), "rbd_snap_is_protected", im.name+"@"+out[i].Name); err != nil {
				return nil, err
			}
			out[i].Protected = p != 0
		}
		return out, nil
	}
}

// OmapGet reads key of object oid's omap; ok is false when the object
// or the key does not exist.
func (io *IOCtx) OmapGet(oid, key string) (val []byte, ok bool, err error) {
	op := fn.createReadOp()
	defer fn.releaseReadOp(op)
	var pin runtime.Pinner
	defer pin.Unpin()
	kp := cstr(key)
	pin.Pin(kp)
	keys := []uintptr{uintptr(unsafe.Pointer(kp))}
	var iter uintptr
	var prval int32
	fn.readOpOmapByKeys(op, &keys[0], 1, &iter, &prval)
	ret := fn.readOpOperate(op, io.h, cstr(oid), 0)
	if ret == -int32(syscall.ENOENT) {
		return nil, false, nil
	}
	if err := check(ret, "rados_read_op_operate", oid); err != nil {
		return nil, false, err
	}
	defer fn.omapGetEnd(iter)
	if err := check(prval, "rados_read_op_omap_get_vals_by_keys", oid); err != nil {
		return nil, false, err
	}
	for {
		var k, v *byte
		var n uintptr
		if err := check(fn.omapGetNext(iter, &k, &v, &n), "rados_omap_get_next", oid); err != nil {
			return nil, false, err
		}
		if k == nil {
			return nil, false, nil
		}
		if goString(k) == key {
			out := make([]byte, n)
			if n > 0 {
				copy(out, unsafe.Slice(v, n))
			}
			return out, true, nil
		}
	}
}

// CTime is t as ctime(3) prints it in the local time zone, without the
// newline: the form rbd info gives timestamps (the C library's own
// function, so that the text is the tool's to the byte).
func CTime(t time.Time) string {
	if err := load(); err != nil {
		return t.Format("Mon Jan _2 15:04:05 2006")
	}
	sec := t.Unix()
	buf := make([]byte, 64) // ctime_r needs 26
	if fn.ctimeR(&sec, &buf[0]) == 0 {
		return t.Format("Mon Jan _2 15:04:05 2006")
	}
	for i, b := range buf {
		if b == 0 || b == '\n' {
			return string(buf[:i])
		}
	}
	return string(buf)
}
