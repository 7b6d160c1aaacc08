package boot

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ProcStart returns the start time of process pid in clock ticks since
// boot (/proc/PID/stat field 22). A pid names the same process only as
// long as this does not change: pids are reused.
func ProcStart(pid int) (uint64, error) {
	_, start, _, err := procStat(pid)
	return start, err
}

// procStat returns the state (field 3: R, S, Z, ...), start time (field
// 22) and number of threads (field 20) of process pid.
func procStat(pid int) (string, uint64, int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses itself: fields count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 20 is f[17], field 22 is f[19].
	if len(f) < 20 {
		return "", 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	threads, _ := strconv.Atoi(string(f[17]))
	return string(f[0]), start, threads, err
}

// SameProcess reports whether pid is still the process that started at
// start (ProcStart) and has not exited: false once it has (a zombie
// included), even if its pid was reused.
func SameProcess(pid int, start uint64) bool {
	if pid <= 0 || start == 0 {
		return false
	}
	// A zombie (Z, or X while it is reaped) has ended, even if no parent
	// reaps it (a daemonized QEMU's parent is init, which in a container
	// may never reap) - but only once its other threads have: the main
	// thread of a killed QEMU turns Z while its other threads still hold
	// the disks' files and locks.
	state, s, threads, err := procStat(pid)
	return err == nil && s == start && (state != "Z" && state != "X" || threads > 1)
}

// BootID returns this boot's id (/proc/sys/kernel/random/boot_id), ""
// where the kernel has none.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// Printable returns a line a guest wrote as text safe for a terminal:
// control characters (escape sequences could set a window title, write
// the clipboard or redraw the screen) and bytes that are not UTF-8 are
// escaped (\x1b), and the line is cut at max bytes.
func Printable(line string, max int) string {
	var b strings.Builder
	for i, r := range line {
		if b.Len() >= max {
			b.WriteString("...")
			break
		}
		switch {
		case r == utf8.RuneError && strings.HasPrefix(line[i:], "\uFFFD"):
			b.WriteRune(r)
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, line[i])
		case r == '\t' || unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// PollInterval is how often strata looks again at a process or a runtime
// file it waits for (a QEMU to end, a watcher to be ready, a log line).
// A look costs microseconds (a /proc stat, a small file), and half of the
// interval on average is added to every start and stop that waits.
const PollInterval = time.Millisecond

// WaitGone waits until the process st names has ended (true), or until
// ctx ends or timeout (0: none) passes (false).
func WaitGone(ctx context.Context, st *RunState, timeout time.Duration) bool {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for st.Live() {
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return !st.Live()
		case <-time.After(PollInterval):
		}
	}
	return true
}
