package inuse

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// namedHow is what a process found by Naming holds.
const namedHow = "names the image on its command line (a tool about to open it?)"

// Naming finds the live processes whose command line names the image at
// path (other than this process and its ancestors): a tool strata
// started that has not opened the image yet holds no lock the other
// sources could see, yet it is about to change the image (a critical
// qemu-img outlives a killed strata; killed between the tool's exec and
// its open, the strata before left nothing else to see). Recovery waits
// for these too (Checker.Wait); the checks before a change do not (an
// admin's `ls IMAGE` is no holder). An argument names the image when it
// is the path as given or resolved, or, for qemu-img, a file that is the
// same file (through a link, or relative to its working directory). The
// command line is read, never reported: a holder is named by pid and
// program only.
func (p Processes) Naming(path string) []Holder {
	proc := p.proc()
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	names := map[string]bool{path: true, filepath.Clean(path): true}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		names[real] = true
	}
	st, _ := os.Stat(path)
	skip := selfAndAncestors(proc)
	var out []Holder
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip[pid] {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 || zombie(proc, e.Name()) {
			continue // gone, a kernel thread, or a zombie: at work on nothing
		}
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		prog := program(proc, e.Name())
		if namesImage(proc, e.Name(), prog == "qemu-img", args, names, st) {
			out = append(out, Holder{PID: pid, Program: prog, How: namedHow})
		}
	}
	return out
}

// namesImage tells whether a command line names the image (names: its
// spellings; st: what it is, nil if nothing is there).
func namesImage(proc, pid string, qemuImg bool, args []string, names map[string]bool, st os.FileInfo) bool {
	for _, a := range args {
		if names[a] {
			return true
		}
		if !qemuImg || st == nil || a == "" || a[0] == '-' {
			continue
		}
		// qemu-img's image argument spelled another way (a link, a
		// path relative to its working directory): a stat of each of a
		// qemu-img's few arguments.
		if !filepath.IsAbs(a) {
			a = filepath.Join(proc, pid, "cwd", a)
		}
		if ast, err := os.Stat(a); err == nil && os.SameFile(ast, st) {
			return true
		}
	}
	return false
}

// zombie tells whether the process has exited and waits to be reaped.
func zombie(proc, pid string) bool {
	raw, err := os.ReadFile(filepath.Join(proc, pid, "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(raw, ')') // comm may hold spaces and ')'
	return i < 0 || i+2 >= len(raw) || raw[i+2] == 'Z'
}

// selfAndAncestors is this process and its ancestors: their command lines
// may name the image (strata volume import IMAGE, a script running
// strata) and they wait for nothing.
func selfAndAncestors(proc string) map[int]bool {
	out := map[int]bool{}
	for pid := os.Getpid(); pid > 0 && !out[pid]; {
		out[pid] = true
		raw, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "status"))
		if err != nil {
			break
		}
		next := 0
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				next, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		pid = next
	}
	return out
}
