// Package qmp is strata's own client for QEMU's machine protocol (QMP):
// JSON messages over a unix socket.
//
// Why not github.com/digitalocean/go-qemu: its monitor matches a reply to
// the command it last sent, so an event QEMU sends before the reply (a STOP
// before `stop` returns, a SHUTDOWN racing `system_powerdown`) shifts every
// later reply onto the wrong command; a QEMU that dies mid-command leaves
// callers blocked for ever; and its generated commands predate what strata
// needs (set-action, screendump's format). This client is small enough to
// read in one sitting:
//
//   - Dial reads the greeting and negotiates capabilities (qmp_capabilities).
//     What comes before the greeting (events QEMU queued as the socket's
//     previous client left) is skipped.
//   - Execute sends a command with a fresh "id" and waits for the reply with
//     that id, or ctx's end (a timeout per command), or the connection's end;
//     replies are matched by id, never by order.
//   - Events arrive on a buffered channel. The reader never blocks on it:
//     when the buffer is full the oldest event is dropped (Dropped counts
//     them), so a caller that does not read events cannot stall replies.
//   - When QEMU goes away every waiting Execute returns at once with
//     ErrClosed, Done is closed and the event channel is closed.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// EventBuffer is how many events wait for a reader before the oldest is
// dropped.
const EventBuffer = 256

// ErrClosed is returned by Execute when the connection ended before the
// reply came (QEMU exited, or Close was called).
var ErrClosed = errors.New("qmp: connection closed")

// ErrNoGreeting is the error of a connection QEMU accepted but did not
// greet in time: QEMU serves one client per QMP socket, and queues the
// next until that one leaves (or QEMU hangs).
var ErrNoGreeting = errors.New("no QMP greeting")

// Error is an error QEMU answered a command with.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// Event is an asynchronous message from QEMU (SHUTDOWN, STOP, RESUME, ...).
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	Time time.Time       `json:"-"`
}

// Greeting is what QEMU says when a client connects.
type Greeting struct {
	Version struct {
		QEMU struct {
			Major int `json:"major"`
			Minor int `json:"minor"`
			Micro int `json:"micro"`
		} `json:"qemu"`
		Package string `json:"package"`
	} `json:"version"`
	Capabilities []string `json:"capabilities"`
}

// Client is one QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn     net.Conn
	Greeting Greeting

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	pending map[string]chan reply
	err     error // why the connection ended; set once

	next    atomic.Uint64
	dropped atomic.Uint64
	events  chan Event
	done    chan struct{}
}

type reply struct {
	ret json.RawMessage
	err *Error
}

// message is any message QEMU sends.
type message struct {
	QMP       *Greeting       `json:"QMP"`
	ID        json.RawMessage `json:"id"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Dial connects to the QMP socket at path, reads the greeting and leaves
// negotiation mode; ctx bounds the whole handshake.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: connect to %s: %w", path, err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", path, err)
	}
	return c, nil
}

// NewClient runs the QMP handshake over conn (which the client then owns).
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, pending: map[string]chan reply{}, events: make(chan Event, EventBuffer), done: make(chan struct{})}
	dec := json.NewDecoder(conn)
	// The greeting is read before the reader starts; ctx's deadline (or
	// its cancellation) bounds it.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	// QEMU may send what it queued for the socket's previous client
	// (events emitted as that client left) before the greeting: skip it.
	var g message
	var err error
	for g.QMP == nil && err == nil {
		g = message{}
		err = dec.Decode(&g)
	}
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %w", ErrNoGreeting, err)
	}
	c.Greeting = *g.QMP
	go c.read(dec)
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) read(dec *json.Decoder) {
	var err error
	for {
		var m message
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.Event != "":
			ev := Event{Name: m.Event, Data: m.Data, Time: time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)}
			for sent := false; !sent; {
				select {
				case c.events <- ev:
					sent = true
				default:
					// Full: drop the oldest, never block replies.
					select {
					case <-c.events:
						c.dropped.Add(1)
					default:
					}
				}
			}
		case m.ID != nil:
			c.mu.Lock()
			ch := c.pending[string(m.ID)]
			delete(c.pending, string(m.ID))
			c.mu.Unlock()
			if ch != nil { // nil: the caller gave up (timeout)
				ch <- reply{ret: m.Return, err: m.Error}
			}
		}
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = fmt.Errorf("%w (%v)", ErrClosed, err)
	}
	c.pending = nil
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

// Execute runs cmd with args (nil for none) and returns the reply's
// "return" value. A QMP error is an *Error; a connection that ends first
// gives ErrClosed; ctx's end gives ctx's error (the late reply, if any, is
// discarded).
func (c *Client) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	return c.execute(ctx, cmd, args, nil)
}

// ExecuteFile runs cmd like Execute, with f's descriptor passed along
// (SCM_RIGHTS) in the same message: what `getfd` (and `add-fd`) take,
// so that QEMU writes or reads a file strata opened (a migration's state
// file) without a shell or a path QEMU opens itself. The connection must
// be a unix socket. f stays open here: QEMU holds its own copy.
func (c *Client) ExecuteFile(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	if _, ok := c.conn.(*net.UnixConn); !ok {
		return nil, fmt.Errorf("qmp %s: a descriptor can only be passed over a unix socket", cmd)
	}
	return c.execute(ctx, cmd, args, f)
}

func (c *Client) execute(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	id := strconv.FormatUint(c.next.Add(1), 10)
	req := map[string]any{"execute": cmd, "id": json.Number(id)}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, id)
		}
		c.mu.Unlock()
	}

	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	}
	if f != nil {
		// The descriptor travels with the command's bytes, all in one
		// sendmsg: QEMU takes it as the command's (the last one it got).
		var n int
		n, _, err = c.conn.(*net.UnixConn).WriteMsgUnix(b, syscall.UnixRights(int(f.Fd())), nil)
		if err == nil && n < len(b) {
			_, err = c.conn.Write(b[n:])
		}
		runtime.KeepAlive(f)
	} else {
		_, err = c.conn.Write(b)
	}
	c.conn.SetWriteDeadline(time.Time{})
	c.wmu.Unlock()
	if err != nil {
		forget()
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
			// QEMU closed its end (it died) before the reader noticed:
			// the same as a connection that ended.
			return nil, fmt.Errorf("qmp %s: %w (%v)", cmd, ErrClosed, err)
		}
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			r.err.Command = cmd
			return nil, r.err
		}
		return r.ret, nil
	case <-c.done:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		// A reply that arrived just before the end still counts.
		select {
		case r := <-ch:
			if r.err != nil {
				r.err.Command = cmd
				return nil, r.err
			}
			return r.ret, nil
		default:
		}
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("qmp %s: no reply in time: %w", cmd, ctx.Err())
	}
}

// Events returns the channel events arrive on; it is closed when the
// connection ends.
func (c *Client) Events() <-chan Event { return c.events }

// Dropped is how many events were dropped because nobody read them.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the connection; waiting Executes return ErrClosed.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

// Status is query-status's answer.
type Status struct {
	Status  string `json:"status"` // running, paused, prelaunch, shutdown, guest-panicked, ...
	Running bool   `json:"running"`
}

// QueryStatus runs query-status.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	r, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(r, &s)
}
