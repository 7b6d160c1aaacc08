package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/hvm/boot"
)

// Files in a guest's runtime directory.
const (
	pidFile     = "qemu.pid"
	qmpSock     = "qmp.sock"    // strata's commands
	eventsSock  = "events.sock" // the watcher's: QEMU serves one client per socket
	serialSock  = "serial.sock"
	SerialLog   = "serial.log" // kept after the guest stops
	startedFile = "started.json"
	watcherFile = "watcher.json"
	intentFile  = "intent.json"
	lockFile    = "lock"
	consoleLock = "console.lock" // held while a console is attached
	watchLog    = "watch.log"
	qemuLog     = "qemu.log" // what QEMU printed (this run)
)

// transient are the files that exist only while the guest runs.
// socketPoll is how often the start and the watcher look for QEMU's
// sockets while QEMU starts (tens of milliseconds): a failed connect or
// lstat costs microseconds, and the guest runs only once both hold theirs.
const socketPoll = 200 * time.Microsecond

var transient = []string{pidFile, qmpSock, eventsSock, serialSock, agentSock, startedFile, watcherFile, intentFile, boot.HoldFile}

// started is what the driver keeps about the definition it started: no
// secrets, only what status, the watcher and the in-use check need.
type started struct {
	// Run is a random id of this start: a watcher watches the run it was
	// started for, never the next one.
	Run   string   `json:"run"`
	Name  string   `json:"name"`
	Disks []string `json:"disks,omitempty"`
	// Own serial: the first serial port is strata's log and socket.
	OwnSerial bool `json:"own_serial"`
	// SerialLogMax is the serial log's bound, which the watcher keeps.
	SerialLogMax int64 `json:"serial_log_max,omitempty"`
	// Network is the NIC mode the guest started with (bridge, user or
	// none): a NIC attached later gets the same.
	Network string `json:"network,omitempty"`
	// Actions are the set-action arguments given to QEMU.
	Actions actions `json:"actions"`
	// Lifecycle is what the definition asked for; where QEMU has no
	// action for it (restart after power-off), the watcher carries it out.
	OnPoweroff string `json:"on_poweroff,omitempty"`
	OnReboot   string `json:"on_reboot,omitempty"`
	OnCrash    string `json:"on_crash,omitempty"`
}

// intent is what strata asked the guest to do; the reason it gives wins
// over what the watcher saw.
type intent struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// The strata process acting, and its start time: while it lives the
	// guest is "stopping".
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// acting reports whether the process that wrote the intent still acts.
func (in *intent) acting() bool { return in != nil && boot.SameProcess(in.PID, in.Start) }

var intentDetail = map[string]string{
	boot.ReasonShutdown: "the guest shut down when asked (strata stop)",
	boot.ReasonQuit:     "the guest did not shut down when asked; QEMU was ended (strata stop)",
	boot.ReasonKilled:   "QEMU was ended at once (strata kill, or stop --force)",
}

type watcher struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func readStarted(rd *boot.RunDir) (*started, error) {
	var s started
	ok, err := boot.ReadJSON(rd.Path(startedFile), &s)
	if !ok || err != nil {
		return nil, err
	}
	return &s, nil
}

func readIntent(rd *boot.RunDir) *intent {
	var in intent
	// An unreadable intent reads as none: the stop is then recorded as
	// QEMU's own (its event) or "died", never as one strata did not ask.
	if ok, _ := boot.ReadJSON(rd.Path(intentFile), &in); !ok {
		return nil
	}
	return &in
}

func writeIntent(rd *boot.RunDir, reason string) error {
	// Without its start time (no /proc entry: cannot happen for this
	// process) the intent still names the pid.
	start, _ := boot.ProcStart(os.Getpid())
	return boot.WriteRuntimeJSON(rd.Path(intentFile), intent{Reason: reason, At: time.Now().UTC(), PID: os.Getpid(), Start: start})
}

// lockRun takes the runtime directory's lock: start, stop, kill and the
// recording of a stop (by the watcher or status) take it, so one of them
// at a time changes the records.
func lockRun(rd *boot.RunDir) (func(), error) {
	f, err := os.OpenFile(rd.Path(lockFile), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// finish records how the guest that st describes stopped and removes its
// runtime files, once: whoever (the watcher, stop, kill, status) comes
// first for this pid records, the others find nothing to do. A reason
// strata gave (intent.json) wins over rec's.
func finish(rd *boot.RunDir, st *boot.RunState, rec boot.StopRecord) error {
	unlock, err := lockRun(rd)
	if err != nil {
		return err
	}
	defer unlock()
	return finishLocked(rd, st, rec)
}

func finishLocked(rd *boot.RunDir, st *boot.RunState, rec boot.StopRecord) error {
	cur, err := rd.ReadState()
	if err != nil {
		return err
	}
	if cur == nil || cur.PID != st.PID || cur.PIDStart != st.PIDStart {
		return nil
	}
	if in := readIntent(rd); in != nil {
		rec.Reason, rec.Detail = in.Reason, intentDetail[in.Reason]
	}
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	if s, _ := readStarted(rd); s == nil || s.OwnSerial {
		rec.SerialTail = tailLines(rd.Path(SerialLog), 20)
	}
	// A record that cannot be written (a full disk) is lost, but the
	// guest is stopped all the same: its state must not say it runs.
	recErr := rd.WriteStopped(rec)
	removeTransient(rd)
	if err := rd.ClearState(); err != nil {
		return err
	}
	if recErr != nil {
		log.Warn().Err(recErr).Str("reason", rec.Reason).Msg("the guest stopped, but its stop record was not written")
	}
	return nil
}

func removeTransient(rd *boot.RunDir) {
	for _, f := range transient {
		os.Remove(rd.Path(f))
	}
}

// tailLines returns the last n non-empty lines of a file (at most its
// last 64 KiB), without carriage returns.
func tailLines(path string, n int) []string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	} else if st.Size() > 64<<10 {
		f.Seek(st.Size()-64<<10, 0)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(l) == "" {
			continue
		}
		// The record is shown to people: text, not the guest's bytes.
		l = boot.Printable(l, 512)
		lines = append(lines, l)
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// signal sends sig to the guest's QEMU only if it is still the process
// state.json names: the pid is opened as a pidfd first and its start time
// checked after, so a pid reused in between is never signalled. It
// returns false when the process is gone (or was never ours).
func signal(st *boot.RunState, sig syscall.Signal) (bool, error) {
	fd, err := unix.PidfdOpen(st.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, err
	}
	defer unix.Close(fd)
	if !st.Live() {
		return false, nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// tryLockRun takes the runtime directory's lock if nobody holds it (ok
// false: a start, stop or stop record is under way).
func tryLockRun(rd *boot.RunDir) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(rd.Path(lockFile), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return func() { f.Close() }, true, nil
}

// orphanOf returns a pidfd for the QEMU that rd's pidfile names when it
// is one strata started for rd (its command line gives rd's pidfile) and
// still runs; fd -1 when there is none. The pidfd is opened before the
// command line is read, so a pid reused in between is never signalled.
func orphanOf(rd *boot.RunDir) (fd int, st *boot.RunState) {
	b, err := readNoFollow(rd.Path(pidFile), 32)
	if err != nil {
		return -1, nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return -1, nil
	}
	fd, err = unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, nil
	}
	start, err := boot.ProcStart(pid)
	cmd, cerr := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	// Anyone can run a process with any command line; only one of this
	// user's (strata runs QEMU as itself) can be strata's orphan.
	owner, oerr := os.Stat(fmt.Sprintf("/proc/%d", pid))
	mine := oerr == nil && owner.Sys().(*syscall.Stat_t).Uid == uint32(os.Getuid())
	if err != nil || cerr != nil || !mine || !bytes.Contains(cmd, []byte("\x00-pidfile\x00"+rd.Path(pidFile)+"\x00")) {
		unix.Close(fd)
		return -1, nil
	}
	return fd, &boot.RunState{PID: pid, PIDStart: start}
}

// readNoFollow reads at most max bytes of a regular file, never through
// a symlink.
func readNoFollow(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// capLog keeps the serial log at path under max bytes while the returned
// function is not called: every interval a longer log is cut to its last
// max/2 bytes (from a line start), after a line saying so. QEMU appends
// to the log (O_APPEND), so its next write goes after what is kept;
// what it writes in the moment between the read and the cut is lost.
func capLog(path string, max int64, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				cutLog(path, max)
			}
		}
	}()
	return func() { close(done) }
}

func cutLog(path string, max int64) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() <= max {
		return
	}
	keep := make([]byte, max/2)
	n, _ := f.ReadAt(keep, st.Size()-int64(len(keep)))
	keep = keep[:n]
	if i := bytes.IndexByte(keep, '\n'); i >= 0 {
		keep = keep[i+1:]
	}
	if err := f.Truncate(0); err != nil {
		return
	}
	f.Write(append([]byte(fmt.Sprintf("[strata: the serial log passed %d bytes and was cut to its last lines]\n", max)), keep...))
}
