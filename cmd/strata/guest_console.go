package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/storage"
)

// The commands at a running guest's console and drives: console, insert
// and eject.

func newGuestConsoleCommand() *cli.Command {
	return &cli.Command{Name: "console", Usage: "attach to a running guest's serial console (detach: Ctrl-] )", ArgsUsage: "NAME", Action: guestConsoleAction}
}

func guestConsoleAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	return attachConsole(c.Context, lm, c.Args().First())
}

func newGuestInsertCommand() *cli.Command {
	return &cli.Command{Name: "insert", Usage: "put a disc (an iso name or an ISO file) into a guest's CD-ROM drive; live when it runs", ArgsUsage: "NAME ISO [VDEV]", Action: guestInsertAction}
}

func guestInsertAction(c *cli.Context) error {
	if c.NArg() < 2 || c.NArg() > 3 {
		return storage.Errorf(storage.ErrInvalid, "guest insert takes NAME ISO [VDEV] (got %d arguments; see --help)", c.NArg())
	}
	return changeMedia(c, c.Args().Get(0), c.Args().Get(2), c.Args().Get(1))
}

func newGuestEjectCommand() *cli.Command {
	return &cli.Command{Name: "eject", Usage: "take the disc out of a guest's CD-ROM drive; live when it runs", ArgsUsage: "NAME [VDEV]", Action: guestEjectAction}
}

func guestEjectAction(c *cli.Context) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return storage.Errorf(storage.ErrInvalid, "guest eject takes NAME [VDEV] (got %d arguments; see --help)", c.NArg())
	}
	return changeMedia(c, c.Args().Get(0), c.Args().Get(1), "")
}

// consoleDetach is the byte that ends `guest console`: Ctrl-], as telnet
// and virsh console use.
const consoleDetach = 0x1d

func attachConsole(ctx context.Context, lm *lifecycle.Manager, name string) error {
	conn, err := lm.Console(ctx, name)
	if err != nil {
		return err
	}
	defer conn.Close()
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return err
		}
		defer term.Restore(fd, old)
		fmt.Fprintf(os.Stderr, "connected to %s's serial console; detach with Ctrl-]\r\n", name)
	}
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(os.Stdout, conn)
		done <- err
	}()
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if i := strings.IndexByte(string(chunk), consoleDetach); i >= 0 {
					// Detaching either way: a failed last write loses
					// only what was typed before Ctrl-].
					_, _ = conn.Write(chunk[:i])
					done <- nil
					return
				}
				if _, werr := conn.Write(chunk); werr != nil {
					done <- werr
					return
				}
			}
			if err != nil {
				done <- nil // stdin closed: detach
				return
			}
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	defer signal.Stop(sig)
	select {
	case err := <-done:
		return err
	case <-sig:
		return nil
	case <-ctx.Done():
		return nil
	}
}

// changeMedia runs guest insert and eject, printing the drive and what it
// holds now.
func changeMedia(c *cli.Context, name, vdev, iso string) error {
	lm, err := openLifecycle(c)
	if err != nil {
		return err
	}
	vdev, err = lm.ChangeMedia(c.Context, name, vdev, iso)
	if err != nil {
		return err
	}
	out := map[string]string{"guest": name, "vdev": vdev, "media": iso}
	return emit(c, out, func(w *tabwriter.Writer) {
		row(w, "guest:", name)
		row(w, "drive:", vdev)
		row(w, "media:", orEmpty(iso))
	})
}

func orEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}
