package libvirt_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm/boot/libvirt"
	"github.com/strata-vm/strata/storage/inuse"
)

// The in-process libvirt in-use source, interrupted while it waits for a
// libvirtd that takes the connection and never answers, returns the
// interruption (context.Canceled) and warns of nothing: a cancelled
// context is strata being stopped, not libvirtd being down. A libvirtd
// that does not answer within the connect timeout is still passed over
// with a warning.
func TestInUseInterruptedWhileConnectingBlamesNoOne(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "libvirt-sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	old := log.Logger
	log.Logger = zerolog.New(&logged)
	defer func() { log.Logger = old }()

	check := func(ctx context.Context, timeout time.Duration) ([][]inuse.Holder, error) {
		c := inuse.Checker{Sources: []inuse.Source{libvirt.New(libvirt.Config{Socket: sock, ConnectTimeout: timeout}).InUse()}}
		return c.HoldersAll(ctx, []inuse.Image{{What: "volume \"v\"", Path: img}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err = check(ctx, 10*time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("interrupted while connecting: %v, want context.Canceled", err)
	}
	if err != nil && strings.Contains(err.Error(), "libvirtd running") || logged.Len() > 0 {
		t.Errorf("an interruption blamed libvirt: error %v, logged %q", err, logged.String())
	}

	logged.Reset()
	hs, err := check(context.Background(), 200*time.Millisecond)
	if err != nil || len(hs) != 1 || len(hs[0]) != 0 || !strings.Contains(logged.String(), "not asked") {
		t.Errorf("a libvirtd that does not answer: %v %v, logged %q", hs, err, logged.String())
	}
}
