package rbd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

// The helper protocol (see the package doc): one JSON object per line,
// requests on the helper's stdin, responses on its stdout, matched by
// ID (requests may overlap; the helper answers each when it is done).

// HelperVersion is the protocol's version, in the helper's greeting.
const HelperVersion = 1

// The operations of a HelperRequest.
const (
	OpSnapCreate   = "snap_create"   // Image, Snap
	OpSnapRollback = "snap_rollback" // Image, Snap
	OpRename       = "rename"        // Image, To
	OpSnaps        = "snaps"         // Image → Snaps
	OpExists       = "exists"        // Image → Exists
	OpWatchers     = "watchers"      // Image → Watchers (the helper's own left out)
	OpOmapGet      = "omap_get"      // Object, Key → Value, Found
	OpOmapSet      = "omap_set"      // Object, Key, Value
	OpState        = "state"         // Image, Snap ("": the image) → State
	OpList         = "list"          // (the pool and namespace) → Images
)

// HelperRequest is one call. Conf and Client say which cluster and
// client (the pool's --ceph-conf and --id: the helper connects once per
// pair, reading the keyring the conf names, as the tools do); Pool and
// Namespace which I/O context.
type HelperRequest struct {
	ID        uint64 `json:"id"`
	Op        string `json:"op"`
	Conf      string `json:"conf,omitempty"`
	Client    string `json:"client,omitempty"`
	Pool      string `json:"pool"`
	Namespace string `json:"namespace,omitempty"`
	Image     string `json:"image,omitempty"`
	Snap      string `json:"snap,omitempty"`
	To        string `json:"to,omitempty"`
	Object    string `json:"object,omitempty"`
	Key       string `json:"key,omitempty"`
	Value     string `json:"value,omitempty"`
}

// HelperResponse answers the request of the same ID; ID 0 is the
// greeting the helper sends once its libraries are loaded (Ready, or
// Error when they cannot be: it exits then).
type HelperResponse struct {
	ID uint64 `json:"id"`
	// Errno is the failed call's errno (0: success), Error its message.
	Errno int    `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`
	// Connect: the failure was connecting to the cluster (nothing was
	// done).
	Connect bool `json:"connect,omitempty"`

	Ready   bool `json:"ready,omitempty"`
	Version int  `json:"version,omitempty"`

	Exists   bool         `json:"exists,omitempty"`
	Snaps    []HelperSnap `json:"snaps,omitempty"`
	Watchers []string     `json:"watchers,omitempty"`
	Value    string       `json:"value,omitempty"`
	Found    bool         `json:"found,omitempty"`
	State    *State       `json:"state,omitempty"`
	Images   []string     `json:"images,omitempty"`
}

// HelperSnap is a snapshot in a HelperResponse.
type HelperSnap struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Protected bool   `json:"protected,omitempty"`
}

// HelperBesideExecutable is the helper's path: HelperName in the
// directory of the running executable, never looked up on $PATH. It
// must be a regular file (not a link), owned by root or by this
// process's effective user, and writable by neither group nor others:
// strata runs as root, and a helper anyone else could replace would run
// with its rights.
func HelperBesideExecutable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot tell where the strata executable is: %w", err)
	}
	path := filepath.Join(filepath.Dir(exe), HelperName)
	return path, CheckHelper(path)
}

// CheckHelper refuses a helper program that is not a regular file owned
// by root or the effective user, or that group or others may write.
func CheckHelper(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("no helper: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("helper %q is not a regular file (%s): refused", path, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("helper %q is writable by group or others (%v): refused", path, fi.Mode().Perm())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("helper %q is not executable", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("helper %q is owned by uid %d, neither root nor this user: refused", path, st.Uid)
	}
	return nil
}

// Helper runs the hot-path calls (Ops) in one strata-rbd process,
// started on the first call and killed with strata (Pdeathsig; it also
// exits when its stdin closes). When the helper cannot run (missing,
// refused, its libraries missing) or cannot connect to a cluster, the
// calls go to CLI instead, and why is logged once at debug level;
// with Strict they fail instead.
type Helper struct {
	Path   string
	CLI    *Client
	Strict bool

	once     sync.Once
	startErr error
	proc     *helperProc

	mu       sync.Mutex
	noHelper map[Conn]error // clusters the helper could not connect to
	logged   bool
}

// NewHelper is a Helper running the program at path, falling back to
// cli (nil: the tools through storage/run).
func NewHelper(path string, cli *Client) *Helper {
	if cli == nil {
		cli = &Client{}
	}
	return &Helper{Path: path, CLI: cli}
}

// fail marks the helper as unusable before it is started.
func (h *Helper) fail(err error) {
	h.once.Do(func() { h.startErr = err })
}

// Err starts the helper if it is not yet started and says why it cannot
// be used (nil: it runs).
func (h *Helper) Err() error {
	h.once.Do(func() {
		h.proc, h.startErr = startHelper(h.Path)
		if h.startErr == nil {
			log.Debug().Str("helper", h.Path).Int("pid", h.proc.cmd.Process.Pid).Msg("rbd: the strata-rbd helper runs the hot paths' calls")
		}
	})
	if h.startErr != nil {
		return h.startErr
	}
	return h.proc.dead()
}

// Usable is, for a Strict helper, why it cannot run (nil: it runs, or
// the tools may take over). A restore point asks it when it is planned,
// before anything is recorded: else its creating record would be left
// for recovery, whose undo needs the same helper.
func (h *Helper) Usable() error {
	if !h.Strict {
		return nil
	}
	if err := h.Err(); err != nil {
		return storage.Errorf(storage.ErrPrecondition, "%s=helper, and the %s helper cannot be used: %v", ClientEnv, HelperName, err)
	}
	return nil
}

// route is the helper process for calls on cluster c, or nil when they
// go to the tools (errNo: Strict, and the helper cannot be used).
func (h *Helper) route(c Conn) (*helperProc, error) {
	err := h.Err()
	if err == nil {
		h.mu.Lock()
		err = h.noHelper[c]
		h.mu.Unlock()
		if err == nil {
			return h.proc, nil
		}
	}
	if h.Strict {
		return nil, storage.Errorf(storage.ErrPrecondition, "%s=helper, and the %s helper cannot be used: %v", ClientEnv, HelperName, err)
	}
	h.mu.Lock()
	if !h.logged {
		h.logged = true
		log.Debug().Err(err).Msg("rbd: running the rbd and rados tools instead of the strata-rbd helper")
	}
	h.mu.Unlock()
	return nil, nil
}

// errCLI: the helper could not connect to the cluster; the call goes to
// the tools.
var errCLI = errors.New("use the tools")

// call sends req for cluster s and waits for the answer; change says
// whether it changes the cluster (it is then waited for even when ctx
// ends, as run.Critical does, and retried on EBUSY as the tools are).
func (h *Helper) call(ctx context.Context, p *helperProc, s Spec, req HelperRequest, change bool, what string) (HelperResponse, error) {
	req.Conf, req.Client, req.Pool, req.Namespace = s.Conf, s.ID, s.Pool, s.Namespace
	wait := BusyWait
	for try := 0; ; try++ {
		resp, err := p.call(ctx, req, change)
		if err != nil {
			return resp, fmt.Errorf("%s: %w", what, err)
		}
		if resp.Errno == 0 {
			return resp, nil
		}
		if resp.Connect && !h.Strict && !transient(resp.Errno) {
			h.mu.Lock()
			if h.noHelper == nil {
				h.noHelper = map[Conn]error{}
			}
			h.noHelper[s.Conn] = fmt.Errorf("connect: %s", resp.Error)
			h.mu.Unlock()
			log.Debug().Str("error", resp.Error).Str("conf", s.Conf).Msg("rbd: the strata-rbd helper cannot connect: running the rbd and rados tools for this cluster")
			return resp, errCLI
		}
		if !change || resp.Errno != errBUSY || try >= BusyRetries {
			return resp, Classify(&run.Error{Argv: []string{HelperName, req.Op, s.String()}, ExitCode: resp.Errno, Stderr: resp.Error, Err: syscall.Errno(resp.Errno)}, what)
		}
		select {
		case <-ctx.Done():
			return resp, Classify(&run.Error{Argv: []string{HelperName, req.Op, s.String()}, ExitCode: resp.Errno, Stderr: resp.Error, Err: syscall.Errno(resp.Errno)}, what)
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// transient errnos of a connection: the cluster does not answer. The
// tools would wait as long again: the failure is reported.
func transient(errno int) bool {
	return errno == errTIMEDOUT || errno == errCONNREF || errno == errSHUTDOWN
}

// SnapCreate implements Ops.
func (h *Helper) SnapCreate(ctx context.Context, s Spec, snap string) error {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		return orCLI(err, func() error { return h.CLI.SnapCreate(ctx, s, snap) })
	}
	_, err = h.call(ctx, p, s, HelperRequest{Op: OpSnapCreate, Image: s.Image, Snap: snap}, true, fmt.Sprintf("create snapshot %q", s.Snap(snap)))
	if errors.Is(err, errCLI) {
		return h.CLI.SnapCreate(ctx, s, snap)
	}
	return err
}

// orCLI is err (Strict: the helper cannot be used) or the tools' answer.
func orCLI(err error, cli func() error) error {
	if err != nil {
		return err
	}
	return cli()
}

// SnapRollback implements Ops.
func (h *Helper) SnapRollback(ctx context.Context, s Spec, snap string) error {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		return orCLI(err, func() error { return h.CLI.SnapRollback(ctx, s, snap) })
	}
	_, err = h.call(ctx, p, s, HelperRequest{Op: OpSnapRollback, Image: s.Image, Snap: snap}, true, fmt.Sprintf("roll back to snapshot %q", s.Snap(snap)))
	if errors.Is(err, errCLI) {
		return h.CLI.SnapRollback(ctx, s, snap)
	}
	return err
}

// Rename implements Ops.
func (h *Helper) Rename(ctx context.Context, s Spec, to string) error {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		return orCLI(err, func() error { return h.CLI.Rename(ctx, s, to) })
	}
	_, err = h.call(ctx, p, s, HelperRequest{Op: OpRename, Image: s.Image, To: to}, true, fmt.Sprintf("rename rbd image %q to %q", s.String(), to))
	if errors.Is(err, errCLI) {
		return h.CLI.Rename(ctx, s, to)
	}
	return err
}

// Snapshots implements Ops.
func (h *Helper) Snapshots(ctx context.Context, s Spec) ([]Snapshot, error) {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		if err != nil {
			return nil, err
		}
		return h.CLI.Snapshots(ctx, s)
	}
	resp, err := h.call(ctx, p, s, HelperRequest{Op: OpSnaps, Image: s.Image}, false, fmt.Sprintf("snapshots of rbd image %q", s.String()))
	if errors.Is(err, errCLI) {
		return h.CLI.Snapshots(ctx, s)
	}
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, 0, len(resp.Snaps))
	for _, sn := range resp.Snaps {
		out = append(out, Snapshot{ID: sn.ID, Name: sn.Name, Size: sn.Size, Protected: sn.Protected, Raw: fmt.Sprint(sn.Protected)})
	}
	return out, nil
}

// Exists implements Ops.
func (h *Helper) Exists(ctx context.Context, s Spec) (bool, error) {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		if err != nil {
			return false, err
		}
		return h.CLI.Exists(ctx, s)
	}
	resp, err := h.call(ctx, p, s, HelperRequest{Op: OpExists, Image: s.Image}, false, fmt.Sprintf("rbd image %q", s.String()))
	if errors.Is(err, errCLI) {
		return h.CLI.Exists(ctx, s)
	}
	return resp.Exists, err
}

// List implements Ops.
func (h *Helper) List(ctx context.Context, s Spec) ([]string, error) {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		if err != nil {
			return nil, err
		}
		return h.CLI.List(ctx, s)
	}
	resp, err := h.call(ctx, p, s, HelperRequest{Op: OpList}, false, fmt.Sprintf("images of %q", s.PoolSpec()))
	if errors.Is(err, errCLI) {
		return h.CLI.List(ctx, s)
	}
	return resp.Images, err
}

// Watchers implements Ops: the helper's own watches (an image it has
// open for a change meanwhile) are never listed.
func (h *Helper) Watchers(ctx context.Context, s Spec) ([]string, error) {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		if err != nil {
			return nil, err
		}
		return h.CLI.Watchers(ctx, s)
	}
	resp, err := h.call(ctx, p, s, HelperRequest{Op: OpWatchers, Image: s.Image}, false, fmt.Sprintf("status of rbd image %q", s.String()))
	if errors.Is(err, errCLI) {
		return h.CLI.Watchers(ctx, s)
	}
	return resp.Watchers, err
}

// Generation implements Ops.
func (h *Helper) Generation(ctx context.Context, s Spec) (string, error) {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		if err != nil {
			return "", err
		}
		return h.CLI.Generation(ctx, s)
	}
	resp, err := h.call(ctx, p, s, HelperRequest{Op: OpOmapGet, Object: GenerationObject, Key: liveName(s.Image)}, false, fmt.Sprintf("restore generation of rbd image %q", s.String()))
	if errors.Is(err, errCLI) {
		return h.CLI.Generation(ctx, s)
	}
	if err != nil || !resp.Found {
		return "", err
	}
	// As read from rados getomapval's output.
	return strings.TrimSpace(resp.Value), nil
}

// SetGeneration implements Ops.
func (h *Helper) SetGeneration(ctx context.Context, s Spec, gen string) error {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		return orCLI(err, func() error { return h.CLI.SetGeneration(ctx, s, gen) })
	}
	_, err = h.call(ctx, p, s, HelperRequest{Op: OpOmapSet, Object: GenerationObject, Key: liveName(s.Image), Value: gen}, true, fmt.Sprintf("set the restore generation of rbd image %q", s.String()))
	if errors.Is(err, errCLI) {
		return h.CLI.SetGeneration(ctx, s, gen)
	}
	return err
}

// State implements Ops.
func (h *Helper) State(ctx context.Context, s Spec, snap string) (State, error) {
	p, err := h.route(s.Conn)
	if p == nil || err != nil {
		if err != nil {
			return State{}, err
		}
		return h.CLI.State(ctx, s, snap)
	}
	what := fmt.Sprintf("rbd image %q", s.String())
	if snap != "" {
		what = fmt.Sprintf("snapshot %q", s.Snap(snap))
	}
	resp, err := h.call(ctx, p, s, HelperRequest{Op: OpState, Image: s.Image, Snap: snap}, false, what)
	if errors.Is(err, errCLI) {
		return h.CLI.State(ctx, s, snap)
	}
	if err != nil {
		return State{}, err
	}
	if resp.State == nil {
		return State{}, fmt.Errorf("%s: the %s helper answered no state", what, HelperName)
	}
	return *resp.State, nil
}

// helperProc is a running helper.
type helperProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	// wait is cmd.Wait, once: it also waits until all the helper wrote
	// on stderr is in stderr (a helper that exits says why there).
	wait func() error

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan HelperResponse
	exitErr error // set once the helper's stdout ended
}

// HelperStartTimeout bounds the wait for the helper's greeting (loading
// the libraries takes about 15 ms).
var HelperStartTimeout = 10 * time.Second

func startHelper(path string) (*helperProc, error) {
	if path == "" {
		return nil, errors.New("no helper")
	}
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	// It dies with strata (a rollback it runs is finished or undone by
	// the journal, as one a killed rbd left), and a terminal's Ctrl-C
	// to strata's group does not stop it: strata finishes a change it
	// has under way, as with a critical tool.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &helperProc{cmd: cmd, stdin: stdin, stderr: &tailBuffer{max: 4096}, pending: map[uint64]chan HelperResponse{}, wait: sync.OnceValue(cmd.Wait)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	r := bufio.NewReaderSize(stdout, 64<<10)
	hello := make(chan error, 1)
	go func() {
		line, err := r.ReadBytes('\n')
		if err != nil {
			werr := p.wait()
			hello <- fmt.Errorf("%s exited before it was ready: %v (%v) %s", path, err, werr, strings.TrimSpace(p.stderr.String()))
			return
		}
		var g HelperResponse
		if err := json.Unmarshal(line, &g); err != nil {
			hello <- fmt.Errorf("%s: unreadable greeting %q: %v", path, line, err)
			return
		}
		if !g.Ready || g.Version != HelperVersion {
			hello <- fmt.Errorf("%s is not ready (protocol version %d, want %d): %s", path, g.Version, HelperVersion, g.Error)
			return
		}
		hello <- nil
		p.read(r)
	}()
	select {
	case err = <-hello:
	case <-time.After(HelperStartTimeout):
		err = fmt.Errorf("%s did not greet within %v", path, HelperStartTimeout)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = p.wait()
		return nil, err
	}
	return p, nil
}

// read dispatches the helper's answers until its stdout ends.
func (p *helperProc) read(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var resp HelperResponse
		if err = json.Unmarshal(line, &resp); err != nil {
			break
		}
		p.mu.Lock()
		ch := p.pending[resp.ID]
		delete(p.pending, resp.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	werr := p.wait()
	p.mu.Lock()
	p.exitErr = fmt.Errorf("the %s helper ended (%v, %v) %s", HelperName, err, werr, strings.TrimSpace(p.stderr.String()))
	for id, ch := range p.pending {
		close(ch)
		delete(p.pending, id)
	}
	p.mu.Unlock()
}

func (p *helperProc) dead() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// call sends one request and waits for its answer (a change: even when
// ctx ends).
func (p *helperProc) call(ctx context.Context, req HelperRequest, change bool) (HelperResponse, error) {
	ch := make(chan HelperResponse, 1)
	p.mu.Lock()
	if p.exitErr != nil {
		p.mu.Unlock()
		return HelperResponse{}, p.exitErr
	}
	p.next++
	req.ID = p.next
	p.pending[req.ID] = ch
	line, _ := json.Marshal(req)
	_, err := p.stdin.Write(append(line, '\n'))
	if err != nil {
		delete(p.pending, req.ID)
	}
	p.mu.Unlock()
	if err != nil {
		return HelperResponse{}, fmt.Errorf("write to the %s helper: %w", HelperName, err)
	}
	done := ctx.Done()
	if change {
		done = nil
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return HelperResponse{}, p.dead()
		}
		return resp, nil
	case <-done:
		p.mu.Lock()
		delete(p.pending, req.ID)
		p.mu.Unlock()
		return HelperResponse{}, ctx.Err()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
