// Package qga is strata's client for the QEMU guest agent (qemu-ga): a
// program in the guest that answers JSON commands over a virtio-serial
// port (org.qemu.guest_agent.0), which the host reaches through a unix
// socket of the guest's QEMU (the qemu driver) or through libvirt's agent
// passthrough (the libvirt driver, hvm/boot/libvirt). strata uses it for
// one thing: freezing the guest's filesystems around a live restore point
// (guest-fsfreeze-freeze, -status, -thaw).
//
// Why the protocol needs care: the socket is QEMU's, not the agent's. It
// accepts a connection whether or not an agent runs in the guest, keeps
// what an earlier client wrote and the agent did not read, and passes on
// replies to commands whose client has gone. So before its first command
// (and again after one that timed out) the client synchronises: it sends
// a 0xFF byte (which resets the agent's JSON parser, whatever half a
// command an earlier client left), then guest-sync-delimited with a random
// id; the agent answers with a 0xFF byte and the id, and everything read
// before that is a stale reply and is discarded. A sync that gets no
// answer in time means no agent is listening (ErrNoAnswer). Every command
// has a deadline (its context): an agent that stops answering never blocks
// strata for ever.
package qga

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// ChannelName is the virtio-serial port name qemu-ga opens in the guest
// (/dev/virtio-ports/org.qemu.guest_agent.0).
const ChannelName = "org.qemu.guest_agent.0"

// ErrNoAnswer is the error of a command (or the synchronisation before
// it) the agent did not answer in time: no agent runs in the guest, it has
// not opened its port yet, or it hangs.
var ErrNoAnswer = errors.New("the QEMU guest agent did not answer")

// ErrNotAgent is the error of a channel that carries what no agent
// sends: a line longer than MaxMessage, or more than MaxStale bytes
// before the answer to a synchronisation (a broken or hostile program on
// the guest's end of the channel, or something else than qemu-ga).
var ErrNotAgent = errors.New("the guest's agent channel carries something that is not the QEMU guest agent's protocol")

// Bounds on what strata reads from the guest: whatever the guest writes
// into its channel, strata keeps at most MaxMessage bytes of it at a
// time, and gives up after MaxStale bytes that are not an answer.
const (
	MaxMessage = 64 << 10
	MaxStale   = 1 << 20
)

// Error is an error the agent answered a command with.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("guest agent: %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// Agent is a QEMU guest agent strata can send commands to: this
// package's Client, or a driver's passthrough.
type Agent interface {
	// Execute runs one command and returns its "return" value; an error
	// answer is an *Error, no answer before ctx's end ErrNoAnswer.
	Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error)
	Close() error
}

// Client is a connection to an agent over a unix socket. Its methods are
// safe for concurrent use (commands run one at a time).
type Client struct {
	mu     sync.Mutex
	conn   net.Conn
	r      *bufio.Reader
	synced bool
}

var _ Agent = (*Client)(nil)

// Dial connects to the agent's socket at path and synchronises with the
// agent (ctx bounds both): an agent that does not answer is ErrNoAnswer.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, r: bufio.NewReader(conn)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.sync(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// deadline makes the connection's reads and writes end at ctx's deadline
// or cancellation; the returned function undoes it.
func (c *Client) deadline(ctx context.Context) func() {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Time{}
	}
	c.conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		c.conn.SetDeadline(time.Time{})
	}
}

// timeout turns a connection error after ctx's end into ErrNoAnswer.
func timeout(ctx context.Context, what string, err error) error {
	var ne net.Error
	if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%s)", ErrNoAnswer, what)
	}
	return fmt.Errorf("guest agent: %s: %w", what, err)
}

// sync runs guest-sync-delimited and discards what came before its
// answer. Call with mu held.
func (c *Client) sync(ctx context.Context) error {
	defer c.deadline(ctx)()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	// Positive and well inside a JSON number an agent parses as int.
	id := int64(binary.BigEndian.Uint32(b[:]) >> 1)
	req, _ := json.Marshal(map[string]any{"execute": "guest-sync-delimited", "arguments": map[string]any{"id": id}})
	if _, err := c.conn.Write(append(append([]byte{0xff}, req...), '\n')); err != nil {
		return timeout(ctx, "guest-sync-delimited", err)
	}
	stale := 0
	for {
		// Stale bytes up to the agent's 0xFF delimiter are dropped.
		n, err := c.skipTo(0xff, MaxStale-stale)
		stale += n
		if err != nil {
			return timeout(ctx, "guest-sync-delimited", err)
		}
		line, err := c.readLine()
		stale += len(line)
		if err != nil {
			return timeout(ctx, "guest-sync-delimited", err)
		}
		if stale > MaxStale {
			return fmt.Errorf("%w (more than %d bytes before the answer to guest-sync-delimited)", ErrNotAgent, MaxStale)
		}
		line = bytes.TrimLeft(line, "\xff \t\r\n")
		var reply struct {
			Return *int64 `json:"return"`
		}
		if json.Unmarshal(line, &reply) == nil && reply.Return != nil && *reply.Return == id {
			c.synced = true
			return nil
		}
		// An earlier client's sync: wait for ours.
	}
}

// skipTo discards what the channel sends up to and including delim,
// keeping none of it; it returns how many bytes it discarded, and
// ErrNotAgent once that is more than max.
func (c *Client) skipTo(delim byte, max int) (int, error) {
	n := 0
	for {
		b, err := c.r.ReadSlice(delim)
		n += len(b)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return n, err
		}
		if n > max {
			return n, fmt.Errorf("%w (more than %d bytes that are not an answer)", ErrNotAgent, MaxStale)
		}
	}
}

// readLine reads one line (up to '\n') of at most MaxMessage bytes: a
// longer one is ErrNotAgent.
func (c *Client) readLine() ([]byte, error) {
	var line []byte
	for {
		b, err := c.r.ReadSlice('\n')
		if len(line)+len(b) > MaxMessage {
			return line, fmt.Errorf("%w (a line longer than %d bytes)", ErrNotAgent, MaxMessage)
		}
		line = append(line, b...)
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// Execute implements Agent.
func (c *Client) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced {
		if err := c.sync(ctx); err != nil {
			return nil, err
		}
	}
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	defer c.deadline(ctx)()
	// Until a reply comes, the next command must sync again: a late
	// reply to this one would be read as its.
	c.synced = false
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, timeout(ctx, cmd, err)
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, timeout(ctx, cmd, err)
		}
		line = bytes.TrimLeft(line, "\xff \t\r\n")
		if len(line) == 0 {
			continue
		}
		var reply struct {
			Return json.RawMessage `json:"return"`
			Error  *Error          `json:"error"`
		}
		if err := json.Unmarshal(line, &reply); err != nil {
			return nil, fmt.Errorf("guest agent: %s: unreadable reply %.80q: %w", cmd, line, err)
		}
		if reply.Error == nil && reply.Return == nil {
			continue // not a reply (the agent sends no events, but be safe)
		}
		c.synced = true
		if reply.Error != nil {
			reply.Error.Command = cmd
			return nil, reply.Error
		}
		return reply.Return, nil
	}
}

// Filesystem freeze states (guest-fsfreeze-status).
const (
	Frozen = "frozen"
	Thawed = "thawed"
)

// Deadlines of the freeze commands: a freeze syncs every filesystem of
// the guest first, which on a busy guest takes seconds.
var (
	FreezeTimeout = 30 * time.Second
	StatusTimeout = 10 * time.Second
	ThawTimeout   = 30 * time.Second
)

func within(ctx context.Context, d time.Duration, a Agent, cmd string) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return a.Execute(ctx, cmd, nil)
}

// FreezeStatus returns the agent's freeze state: Frozen or Thawed.
func FreezeStatus(ctx context.Context, a Agent) (string, error) {
	raw, err := within(ctx, StatusTimeout, a, "guest-fsfreeze-status")
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("guest agent: guest-fsfreeze-status: %w", err)
	}
	return s, nil
}

// Freeze freezes the guest's filesystems (guest-fsfreeze-freeze, within
// FreezeTimeout) and checks that the agent then reports them frozen; it
// returns how many it froze. Whatever it returns, the caller thaws (Thaw):
// a freeze that timed out may still happen in the guest.
func Freeze(ctx context.Context, a Agent) (int, error) {
	raw, err := within(ctx, FreezeTimeout, a, "guest-fsfreeze-freeze")
	if err != nil {
		return 0, err
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("guest agent: guest-fsfreeze-freeze: %w", err)
	}
	s, err := FreezeStatus(ctx, a)
	if err != nil {
		return n, err
	}
	if s != Frozen {
		return n, fmt.Errorf("guest agent: froze %d filesystem(s) but reports them %q, not frozen", n, s)
	}
	return n, nil
}

// Thaw thaws the guest's filesystems (guest-fsfreeze-thaw, within
// ThawTimeout, once more if the first try fails) and checks that the
// agent reports them thawed; thawing filesystems that are not frozen is
// no error. ctx's cancellation does not stop it: a guest must not stay
// frozen because strata was interrupted.
func Thaw(ctx context.Context, a Agent) (int, error) {
	ctx = context.WithoutCancel(ctx)
	var err error
	for try := 0; try < 2; try++ {
		var raw json.RawMessage
		if raw, err = within(ctx, ThawTimeout, a, "guest-fsfreeze-thaw"); err != nil {
			continue
		}
		var n int
		if err = json.Unmarshal(raw, &n); err != nil {
			err = fmt.Errorf("guest agent: guest-fsfreeze-thaw: %w", err)
			continue
		}
		var s string
		if s, err = FreezeStatus(ctx, a); err != nil {
			continue
		}
		if s != Thawed {
			err = fmt.Errorf("guest agent: thawed %d filesystem(s) but reports them %q, not thawed", n, s)
			continue
		}
		return n, nil
	}
	return 0, err
}
