package storagetest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A FileEvent is one thing a traced command did to a file's name or data.
type FileEvent struct {
	Op   string // create (open with O_CREAT), mkdir, rename, link, sync (fsync, fdatasync)
	Path string // the file (rename, link: the old name)
	To   string // rename, link: the new name
	Line string // strace's line, for messages
}

// A FileTrace is what a command and every process it started did to
// files, in order, as strace saw it: what a power cut would keep depends
// on it (a name is durable once its directory is synced, data once its
// file is). A power cut cannot be made here (no device-mapper for
// dm-flakey or dm-log-writes), so the tests check the order of the
// syncs, which is what decides what one keeps.
type FileTrace struct{ Events []FileEvent }

// StraceBinary traces commands (Debian strace).
const StraceBinary = "strace"

// TraceFiles runs cmd under strace (following its children) and returns
// its file events with cmd's exit code (-1 if it did not start). The
// test fails if strace is missing: make test-deps installs it.
func TraceFiles(t testing.TB, cmd *exec.Cmd) (FileTrace, int) {
	t.Helper()
	strace, err := exec.LookPath(StraceBinary)
	if err != nil {
		t.Fatalf("strace is needed to see what reaches the disk and in which order: %v (make test-deps installs it)", err)
	}
	out := filepath.Join(t.TempDir(), "strace.out")
	cmd.Args = append([]string{strace, "-f", "-qq", "-y", "-o", out,
		"-e", "trace=open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,fsync,fdatasync",
		"--", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = strace
	code := 0
	if err := cmd.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %v under strace: %v", cmd.Args, err)
		}
		code = ee.ExitCode()
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("read strace's output: %v", err)
	}
	defer f.Close()
	tr, err := parseStrace(f)
	if err != nil {
		t.Fatalf("parse strace's output: %v", err)
	}
	return tr, code
}

var (
	straceLine  = regexp.MustCompile(`^(\d+)\s+(.*)$`)
	straceCall  = regexp.MustCompile(`^(\w+)\((.*)\)\s+=\s+(-?\d+)(<[^>]*>)?`)
	straceFD    = regexp.MustCompile(`^\d+<([^>]*)>`)
	straceAtArg = regexp.MustCompile(`(AT_FDCWD|\d+)<([^>]*)>, "((?:[^"\\]|\\.)*)"`)
	straceStr   = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

func parseStrace(f *os.File) (FileTrace, error) {
	var tr FileTrace
	pending := map[string]string{} // pid: the start of an unfinished call
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := straceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, rest := m[1], m[2]
		if head, ok := strings.CutSuffix(rest, " <unfinished ...>"); ok {
			pending[pid] = head
			continue
		}
		if strings.HasPrefix(rest, "<... ") {
			i := strings.Index(rest, " resumed>")
			if i < 0 {
				continue
			}
			rest = pending[pid] + rest[i+len(" resumed>"):]
			delete(pending, pid)
		}
		c := straceCall.FindStringSubmatch(rest)
		if c == nil || strings.HasPrefix(c[3], "-") {
			continue
		}
		name, args, ret := c[1], c[2], c[4]
		ev := FileEvent{Line: rest}
		switch name {
		case "fsync", "fdatasync":
			fd := straceFD.FindStringSubmatch(args)
			if fd == nil {
				continue
			}
			ev.Op, ev.Path = "sync", fd[1]
		case "open", "openat", "creat":
			if name != "creat" && !strings.Contains(args, "O_CREAT") {
				continue
			}
			if len(ret) < 2 {
				continue
			}
			ev.Op, ev.Path = "create", ret[1:len(ret)-1]
		case "mkdir", "mkdirat":
			ps := paths(args)
			if len(ps) < 1 {
				continue
			}
			ev.Op, ev.Path = "mkdir", ps[0]
		case "rename", "renameat", "renameat2", "link", "linkat":
			ps := paths(args)
			if len(ps) < 2 {
				continue
			}
			ev.Op, ev.Path, ev.To = strings.TrimSuffix(strings.TrimSuffix(name, "at2"), "at"), ps[0], ps[1]
		default:
			continue
		}
		tr.Events = append(tr.Events, ev)
	}
	return tr, sc.Err()
}

// paths are the path arguments of a call, made absolute with the
// directory each is relative to (strace -y shows it).
func paths(args string) []string {
	var out []string
	if ms := straceAtArg.FindAllStringSubmatch(args, -1); ms != nil {
		for _, m := range ms {
			p := m[3]
			if !filepath.IsAbs(p) {
				p = filepath.Join(m[2], p)
			}
			out = append(out, filepath.Clean(p))
		}
		return out
	}
	for _, m := range straceStr.FindAllStringSubmatch(args, -1) {
		out = append(out, filepath.Clean(m[1]))
	}
	return out
}

// CheckDurable fails the test unless path (a file or directory the
// command made, which a catalog record names) was durable before the
// commit that follows its creation: the first sync of commit (the
// catalog's file) after path got its name. Durable means: a file's data
// synced (under any name it had: a temporary renamed into place counts),
// its name synced in its directory, and so the name of every directory
// the command created on the way to it.
func (tr FileTrace) CheckDurable(t testing.TB, path, commit string) {
	t.Helper()
	path = filepath.Clean(path)
	named := -1 // the event that gave path its name
	for i, e := range tr.Events {
		if (e.Op == "create" || e.Op == "mkdir") && e.Path == path || (e.Op == "rename" || e.Op == "link") && e.To == path {
			named = i
		}
	}
	if named < 0 {
		t.Fatalf("the command did not make %q (trace: %s)", path, tr)
	}
	k := -1
	for i := named + 1; i < len(tr.Events); i++ {
		if e := tr.Events[i]; e.Op == "sync" && e.Path == commit {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatalf("no commit of %q follows the making of %q (trace: %s)", commit, path, tr)
	}
	synced := func(p string, from int) bool {
		for i := from; i < k; i++ {
			if e := tr.Events[i]; e.Op == "sync" && e.Path == p {
				return true
			}
		}
		return false
	}
	// Names the file had (a temporary renamed into place), and from
	// when on a sync of them counts. A file the command did not create
	// (renamed from a name it had before) has its data from earlier
	// commands: only its new name is this command's to make durable.
	names, from, made := []string{path}, named, true
	for e := tr.Events[named]; e.Op == "rename" || e.Op == "link"; {
		names = append(names, e.Path)
		prev := -1
		for i := from - 1; i >= 0; i-- {
			if x := tr.Events[i]; x.Path == e.Path && x.Op != "sync" || x.To == e.Path {
				prev = i
				break
			}
		}
		if prev < 0 {
			made = false
			break
		}
		from, e = prev, tr.Events[prev]
	}
	if made && tr.Events[named].Op != "mkdir" {
		ok := false
		for _, n := range names {
			ok = ok || synced(n, from)
		}
		if !ok {
			t.Errorf("the data of %q was not synced before the catalog's commit that records it (names %v): a power cut can leave the record naming an empty image\ntrace:\n%s", path, names, tr.before(k))
		}
	}
	if !synced(filepath.Dir(path), named) {
		t.Errorf("the directory %q was not synced after %q got its name and before the catalog's commit that records it: a power cut can leave the record naming a missing file\ntrace:\n%s", filepath.Dir(path), path, tr.before(k))
	}
	for i := 0; i < named; i++ {
		e := tr.Events[i]
		if e.Op == "mkdir" && strings.HasPrefix(path, e.Path+"/") && !synced(filepath.Dir(e.Path), i) {
			t.Errorf("the new directory %q (on the way to %q) was not made durable (its parent synced) before the catalog's commit\ntrace:\n%s", e.Path, path, tr.before(k))
		}
	}
}

func (tr FileTrace) before(k int) string {
	var b strings.Builder
	for i, e := range tr.Events {
		if i > k {
			break
		}
		b.WriteString("  " + e.Line + "\n")
	}
	return b.String()
}

func (tr FileTrace) String() string { return tr.before(len(tr.Events)) }
