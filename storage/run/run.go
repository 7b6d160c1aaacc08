// Package run is strata's one way to run external tools: argv only (never a
// shell), the C locale, a context for cancellation, and errors that keep the
// command line, exit code and stderr.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-vm/strata/storage"
)

// packages maps tools to the Debian package that provides them, so that a
// missing tool gives an error that says what to install.
var packages = map[string]string{
	"qemu-img":           "qemu-utils",
	"qemu-io":            "qemu-utils",
	"qemu-nbd":           "qemu-utils",
	"qemu-system-x86_64": "qemu-system-x86",
	"xorriso":            "xorriso",
	"mkfs.xfs":           "xfsprogs",
	"mkfs.btrfs":         "btrfs-progs",
	"btrfs":              "btrfs-progs",
	"virsh":              "libvirt-clients",
	"virt-xml-validate":  "libvirt-clients libxml2-utils",
	"lvcreate":           "lvm2",
	"lvm":                "lvm2",
	"dmsetup":            "dmsetup",
	"sfdisk":             "fdisk",
	"mdir":               "mtools",
	"rbd":                "ceph-common",
	"ceph":               "ceph-common",
}

// Error is a command that ran and failed, or could not start.
type Error struct {
	Argv     []string
	ExitCode int // -1 when the command did not start or was killed
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s failed", strings.Join(e.Argv, " "))
	if e.ExitCode >= 0 {
		msg += fmt.Sprintf(" (exit code %d)", e.ExitCode)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Look checks that a tool is installed; the error names the Debian package.
func Look(tool string) (string, error) {
	p, err := exec.LookPath(tool)
	if err != nil {
		if pkg, ok := packages[tool]; ok {
			return "", storage.Errorf(storage.ErrPrecondition, "%s is not installed: install the Debian package %s (apt-get install %s)", tool, pkg, pkg)
		}
		return "", storage.Errorf(storage.ErrPrecondition, "%s is not installed or not on PATH", tool)
	}
	return p, nil
}

// warmed makes Warm's work happen once per process.
var warmed sync.Once

// Warm does in the background, now, what Go does before the first process
// it starts (it checks that pidfds work by starting a throwaway child:
// about 0.1 ms), so that a tool an operation is about to run while it
// waits on something else (the catalog's commit, the in-use check) starts
// without that delay. Harmless if no tool runs.
func Warm() {
	warmed.Do(func() {
		go func() {
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				p.Release()
			}
		}()
	})
}

// Output runs argv and returns its stdout. stderr is kept for the error.
func Output(ctx context.Context, argv ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := Run(ctx, nil, &stdout, argv...)
	return stdout.Bytes(), err
}

// Run runs argv with stdin and stdout as given (nil: none / discarded).
func Run(ctx context.Context, stdin io.Reader, stdout io.Writer, argv ...string) error {
	return start(ctx, stdin, stdout, false, argv, false, nil)
}

// Critical runs a tool that changes an image in place (qemu-img snapshot
// -c/-a/-d, resize, check -r): killed midway it leaves the image half
// changed, so nothing strata receives stops it. A cancelled context does
// not kill it, and it runs in a process group of its own, so the SIGINT a
// terminal's Ctrl-C sends to strata's group does not reach it. The caller
// looks at ctx afterwards and finishes or undoes its operation.
func Critical(ctx context.Context, argv ...string) error {
	return start(ctx, nil, nil, true, argv, true, nil)
}

// OutputIsolated is Output for a tool whose answer a step that must
// complete needs (a delete asking which snapshots an image holds): like a
// critical tool it runs in a process group of its own, out of reach of a
// terminal's Ctrl-C; it still dies with strata.
func OutputIsolated(ctx context.Context, argv ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := start(ctx, nil, &stdout, false, argv, true, nil)
	return stdout.Bytes(), err
}

// OutputFiles is Output for a tool that is handed open files: files[i]
// is its descriptor 3+i (e.g. virsh qemu-monitor-command --pass-fds 3,
// which passes it on to QEMU). No other descriptor of strata's reaches
// it.
func OutputFiles(ctx context.Context, files []*os.File, argv ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := start(ctx, nil, &stdout, false, argv, false, files)
	return stdout.Bytes(), err
}

func start(ctx context.Context, stdin io.Reader, stdout io.Writer, critical bool, argv []string, ownGroup bool, files []*os.File) error {
	if len(argv) == 0 {
		return errors.New("run: empty command")
	}
	path, err := Look(argv[0])
	if err != nil {
		return err
	}
	runCtx := ctx
	if critical {
		runCtx = context.WithoutCancel(ctx)
	}
	cmd := exec.CommandContext(runCtx, path, argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	// A tool that only reads, or writes a file strata removes when it
	// undoes (a copy, a convert), dies with a killed strata instead of
	// running on as an orphan; a critical one runs to its end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: ownGroup}
	if !critical {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	cmd.ExtraFiles = files
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if killedFromOutside(ee) {
				awaitOwnSignal(ctx)
			}
		}
		return &Error{Argv: argv, ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	return nil
}

// killedFromOutside reports a tool that died of a stop signal strata does
// not send (a cancelled context kills with SIGKILL).
func killedFromOutside(ee *exec.ExitError) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return false
	}
	switch ws.Signal() {
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT:
		return true
	}
	return false
}

// signalGrace is how long a tool's death by a stop signal waits for the
// same signal to reach strata (a variable for the tests).
var signalGrace = 250 * time.Millisecond

// awaitOwnSignal gives strata's signal handler a moment to cancel ctx when
// a tool died of a stop signal: a service stop or a terminal signals every
// process at once, and the tool's end can be seen before strata's own
// signal is. The caller, looking at ctx, then says "interrupted" and exits
// as interrupted instead of reporting the tool's failure.
func awaitOwnSignal(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	t := time.NewTimer(signalGrace)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
