package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"github.com/strata-vm/strata/storage"
)

// conn is one RPC connection to libvirtd, bounded by a context: go-libvirt
// calls take no context, so a watcher closes the socket when ctx ends and
// every call blocked on it returns.
type conn struct {
	*lv.Libvirt
	dialer *ctxDialer
	stop   func() bool
}

// ctxDialer dials the unix socket and keeps the connection so the watcher
// can close it.
type ctxDialer struct {
	ctx    context.Context
	socket string
	mu     sync.Mutex
	nc     net.Conn
}

func (d *ctxDialer) Dial() (net.Conn, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(d.ctx, "unix", d.socket)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.nc = nc
	d.mu.Unlock()
	return nc, nil
}

func (d *ctxDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nc != nil {
		d.nc.Close()
	}
}

// connect opens a connection to the driver's libvirtd. The connection
// is bounded by ctx and, for opening, by the driver's connect timeout.
func (d *Driver) connect(ctx context.Context) (*conn, error) {
	dl := &ctxDialer{ctx: ctx, socket: d.cfg.Socket}
	l := lv.NewWithDialer(dl)
	c := &conn{Libvirt: l, dialer: dl}
	c.stop = context.AfterFunc(ctx, dl.close)
	done := make(chan error, 1)
	go func() { done <- l.ConnectToURI(lv.ConnectURI(d.cfg.URI)) }()
	t := time.NewTimer(d.cfg.ConnectTimeout)
	defer t.Stop()
	var err error
	select {
	case err = <-done:
	case <-t.C:
		dl.close()
		err = fmt.Errorf("no answer within %s", d.cfg.ConnectTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.stop()
		dl.close()
		if errors.Is(ctx.Err(), context.Canceled) {
			// strata was interrupted (a signal): not libvirt's doing,
			// whatever the closed connection made the call return.
			return nil, fmt.Errorf("libvirt at %s: interrupted: %w", d.cfg.Socket, ctx.Err())
		}
		return nil, storage.Errorf(storage.ErrPrecondition, "libvirt at %s (%s) does not answer: %v; is libvirtd running?", d.cfg.Socket, d.cfg.URI, err)
	}
	return c, nil
}

// close ends the connection.
func (c *conn) close() {
	c.stop()
	done := make(chan struct{})
	go func() {
		c.Disconnect()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		c.dialer.close()
	}
}

// libvirtCode returns the libvirt error number in err, or -1.
func libvirtCode(err error) lv.ErrorNumber {
	var e lv.Error
	if errors.As(err, &e) {
		return lv.ErrorNumber(e.Code)
	}
	return -1
}
