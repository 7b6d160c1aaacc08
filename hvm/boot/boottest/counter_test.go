package boottest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/qmp"
)

// counterGuest is a counter guest running under QEMU TCG, its COM1 going to
// a file.
type counterGuest struct {
	cmd    *exec.Cmd
	serial string
	done   chan struct{} // closed when QEMU has ended, err then set
	err    error
}

// startCounter boots QEMU (pc, TCG, 16 MiB) with the given -drive values
// as IDE disks 0 and 1 (BIOS drives 0x80 and 0x81) and the extra
// arguments; the guest is killed when the test ends.
func startCounter(t *testing.T, extra []string, drives ...string) *counterGuest {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	g := &counterGuest{serial: filepath.Join(t.TempDir(), "serial"), done: make(chan struct{})}
	argv := []string{"-machine", "pc,accel=tcg", "-m", "16", "-display", "none", "-monitor", "none", "-nodefaults",
		"-serial", "file:" + g.serial}
	for i, d := range drives {
		argv = append(argv, "-drive", d+",if=ide,index="+string(rune('0'+i)))
	}
	argv = append(argv, extra...)
	g.cmd = exec.Command("qemu-system-x86_64", argv...)
	var stderr bytes.Buffer
	g.cmd.Stderr = &stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.err = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() { g.kill(t) })
	return g
}

// lines returns the counter lines printed so far; a COUNTER ERROR line
// fails the test.
func (g *counterGuest) lines(t *testing.T) []boottest.CounterLine {
	t.Helper()
	b, _ := os.ReadFile(g.serial)
	l, err := boottest.ParseCounterLog(b)
	if err != nil {
		t.Fatalf("%v; serial:\n%s", err, b)
	}
	return l
}

// waitLines polls the serial log until it holds n counter lines.
func (g *counterGuest) waitLines(t *testing.T, n int) []boottest.CounterLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := g.lines(t)
		if len(l) >= n {
			return l
		}
		select {
		case <-g.done:
			b, _ := os.ReadFile(g.serial)
			t.Fatalf("QEMU ended (%v) after %d counter lines; serial:\n%s", g.err, len(l), b)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(g.serial)
			t.Fatalf("%d counter lines after 10 s, want %d; serial:\n%s", len(l), n, b)
		}
	}
}

// kill ends QEMU with SIGKILL: whatever the guest had written is on the
// disks, whatever it was writing is not.
func (g *counterGuest) kill(t *testing.T) {
	select {
	case <-g.done:
		return
	default:
	}
	g.cmd.Process.Kill()
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		t.Error("QEMU did not end after SIGKILL")
	}
}

// readPair reads both raw disks' records and fails the test unless both
// exist, name their own disk and were on the disks at one instant.
func readPair(t *testing.T, a, b string) (uint64, uint64) {
	t.Helper()
	ra, oka, err := boottest.ReadCounterFile(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, okb, err := boottest.ReadCounterFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !oka || !okb || ra.Disk != 'A' || rb.Disk != 'B' {
		t.Fatalf("records: A %+v (found %v), B %+v (found %v)", ra, oka, rb, okb)
	}
	if !boottest.CounterConsistent(ra.Value, rb.Value) {
		t.Fatalf("torn pair: A=%d B=%d, want A == B or A == B+1", ra.Value, rb.Value)
	}
	return ra.Value, rb.Value
}

func lastCount(t *testing.T, l []boottest.CounterLine) uint64 {
	t.Helper()
	last := l[len(l)-1]
	if last.Boot {
		t.Fatalf("last line is the boot line: %+v", l)
	}
	return last.Count
}

// The counter guest boots from disk A, counts on both disks, survives a
// SIGKILL with a consistent pair at least as far as its last COUNT line,
// and on the next boot reports that pair and counts on from it. It logs
// how fast it counts under TCG.
func TestCounterGuestKeepsBothDisksConsistentAndResumesFromThemAfterAKill(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	if err := boottest.WriteCounterDisks(a, b); err != nil {
		t.Fatal(err)
	}
	if va, vb := readPair(t, a, b); va != 0 || vb != 0 {
		t.Fatalf("fresh disks hold A=%d B=%d", va, vb)
	}

	g := startCounter(t, nil, "file="+a+",format=raw", "file="+b+",format=raw")
	l := g.waitLines(t, 2)
	if l[0] != (boottest.CounterLine{Boot: true}) {
		t.Fatalf("first line %+v, want the boot line with A=0 B=0", l[0])
	}
	// Count for about a second, timing it by the wall clock.
	v0, t0 := lastCount(t, l), time.Now()
	for time.Since(t0) < time.Second {
		l = g.waitLines(t, len(l)+1)
	}
	v1, t1 := lastCount(t, l), time.Now()
	for i := 2; i < len(l); i++ {
		if l[i].Boot || l[i].Count <= l[i-1].Count {
			t.Fatalf("line %d: %+v after %+v: want COUNT lines counting up", i, l[i], l[i-1])
		}
	}
	rate := float64(v1-v0) / t1.Sub(t0).Seconds()
	t.Logf("counter guest under TCG: %.0f increments/s (each writes both disks), %d COUNT lines, about %.0f increments per line",
		rate, len(l)-1, float64(v1-l[1].Count)/float64(len(l)-2))
	if rate < 50 {
		t.Fatalf("%.0f increments/s: too slow for live restore point tests", rate)
	}
	g.kill(t)
	last := lastCount(t, g.lines(t))
	va, vb := readPair(t, a, b)
	if vb < last {
		t.Fatalf("disks A=%d B=%d behind the last COUNT line %d", va, vb, last)
	}
	t.Logf("killed after COUNT %d: disks A=%d B=%d", last, va, vb)

	g = startCounter(t, nil, "file="+a+",format=raw", "file="+b+",format=raw")
	l = g.waitLines(t, 2)
	if l[0] != (boottest.CounterLine{Boot: true, A: va, B: vb}) {
		t.Fatalf("boot line %+v after the kill, want A=%d B=%d", l[0], va, vb)
	}
	if c := l[1].Count; c <= va || c > va+uint64(rate*5) {
		t.Fatalf("first COUNT %d after booting with A=%d: want counting on from A", c, va)
	}
	g.kill(t)
	if va2, _ := readPair(t, a, b); va2 < lastCount(t, g.lines(t)) {
		t.Fatalf("disk A=%d behind the last COUNT line", va2)
	}
}

// The same on qcow2 disks, read back through qemu-img as a restore point
// test would: the record is at a fixed LBA whatever the format.
func TestCounterGuestOnQcow2DisksReadsBackThroughQemuImg(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	if err := boottest.WriteCounterDisks(a, b); err != nil {
		t.Fatal(err)
	}
	qemuImg := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, p := range []string{a, b} {
		qemuImg("convert", "-f", "raw", "-O", "qcow2", p, p+".qcow2")
	}
	g := startCounter(t, nil, "file="+a+".qcow2,format=qcow2", "file="+b+".qcow2,format=qcow2")
	l := g.waitLines(t, 4)
	g.kill(t)
	for _, p := range []string{a, b} {
		qemuImg("convert", "-f", "qcow2", "-O", "raw", p+".qcow2", p)
	}
	if _, vb := readPair(t, a, b); vb < lastCount(t, l) {
		t.Fatalf("disk B=%d behind COUNT %d", vb, lastCount(t, l))
	}
}

// Points of both disks taken in one QMP transaction hold a consistent
// pair; points taken one disk after the other, while the guest counts on,
// hold a torn pair, and the consistency rule says so.
func TestCounterGuestTellsPointsOfOneInstantFromTornOnes(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	if err := boottest.WriteCounterDisks(a, b); err != nil {
		t.Fatal(err)
	}
	qemuImg := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, p := range []string{a, b} {
		qemuImg("convert", "-f", "raw", "-O", "qcow2", p, p+".qcow2")
	}
	sock := filepath.Join(dir, "qmp.sock")
	g := startCounter(t, []string{"-qmp", "unix:" + sock + ",server=on,wait=off"},
		"file="+a+".qcow2,format=qcow2", "file="+b+".qcow2,format=qcow2")
	l := g.waitLines(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	point := func(name string, devices ...string) {
		t.Helper()
		var actions []map[string]any
		for _, d := range devices {
			actions = append(actions, map[string]any{"type": "blockdev-snapshot-internal-sync",
				"data": map[string]string{"device": d, "name": name}})
		}
		if _, err := c.Execute(ctx, "transaction", map[string]any{"actions": actions}); err != nil {
			t.Fatalf("point %s of %v: %v", name, devices, err)
		}
	}
	point("together", "ide0-hd0", "ide0-hd1")
	// Disk B first, then disk A once the guest has counted at least two
	// more: a line read only after B's point returned was printed after
	// it, so its value is at least B's.
	point("torn", "ide0-hd1")
	n := len(g.lines(t))
	l = g.waitLines(t, n+1)
	after := l[n].Count
	for lastCount(t, l) < after+2 {
		l = g.waitLines(t, len(l)+1)
	}
	point("torn", "ide0-hd0")
	if _, err := c.Execute(ctx, "quit", nil); err != nil && !errors.Is(err, qmp.ErrClosed) {
		t.Fatal(err)
	}
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		t.Fatal("QEMU did not quit")
	}
	read := func(name string) (uint64, uint64) {
		t.Helper()
		var v [2]uint64
		for i, p := range []string{a, b} {
			raw := filepath.Join(dir, name+filepath.Base(p))
			qemuImg("convert", "-f", "qcow2", "-l", "snapshot.name="+name, "-O", "raw", p+".qcow2", raw)
			rec, ok, err := boottest.ReadCounterFile(raw)
			if err != nil || !ok || rec.Disk != "AB"[i] {
				t.Fatalf("point %s, %s: %+v, %v, %v", name, p, rec, ok, err)
			}
			v[i] = rec.Value
		}
		return v[0], v[1]
	}
	if va, vb := read("together"); !boottest.CounterConsistent(va, vb) || va == 0 {
		t.Fatalf("point of one transaction: A=%d B=%d, want A == B or A == B+1", va, vb)
	} else {
		t.Logf("one transaction: A=%d B=%d", va, vb)
	}
	if va, vb := read("torn"); boottest.CounterConsistent(va, vb) || va < vb+2 {
		t.Fatalf("point of B, then A: A=%d B=%d, want A >= B+2 (torn)", va, vb)
	} else {
		t.Logf("B, then A: A=%d B=%d: torn", va, vb)
	}
}

// CounterGuest's definition, rendered by strata's QEMU argv, gives the
// guest its two disks as BIOS drives 0x80 and 0x81: it counts on both.
func TestCounterGuestDefinitionBootsThroughStrataQEMUArgv(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	if err := boottest.WriteCounterDisks(a, b); err != nil {
		t.Fatal(err)
	}
	def := boottest.CounterGuest("counter", a, b, "raw")
	serial := filepath.Join(dir, "serial")
	def.Serial = []string{"file:" + serial}
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
	argv, err := qemu.Argv(def, qemu.Options{Network: qemu.NetNone})
	if err != nil {
		t.Fatal(err)
	}
	g := &counterGuest{cmd: exec.Command(argv[0], argv[1:]...), serial: serial, done: make(chan struct{})}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.err = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() { g.kill(t) })
	l := g.waitLines(t, 3)
	g.kill(t)
	if _, vb := readPair(t, a, b); vb < lastCount(t, l) || vb == 0 {
		t.Fatalf("disk B=%d, last COUNT %d", vb, lastCount(t, l))
	}
}

// Without a second disk the guest says so and stops instead of counting
// on one disk.
func TestCounterGuestReportsAMissingSecondDisk(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	if err := boottest.WriteCounterDisks(a, b); err != nil {
		t.Fatal(err)
	}
	g := startCounter(t, nil, "file="+a+",format=raw")
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, _ := os.ReadFile(g.serial)
		_, err := boottest.ParseCounterLog(s)
		if err != nil {
			if !strings.Contains(err.Error(), "COUNTER ERROR read drive=81") {
				t.Fatalf("error %v, want a read error of drive 0x81", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no COUNTER ERROR line after 10 s; serial:\n%s", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if va, _ := readPair(t, a, b); va != 0 {
		t.Fatalf("disk A holds %d: the guest counted without disk B", va)
	}
}

// Only pairs one instant can hold are consistent: A is written first.
func TestCounterConsistentAcceptsOnlyEqualOrAOneAhead(t *testing.T) {
	for _, tc := range []struct {
		a, b uint64
		want bool
	}{
		{0, 0, true}, {7, 7, true}, {8, 7, true}, {7, 8, false}, {9, 7, false}, {0, 1<<64 - 1, false},
	} {
		if got := boottest.CounterConsistent(tc.a, tc.b); got != tc.want {
			t.Errorf("CounterConsistent(%d, %d) = %v", tc.a, tc.b, got)
		}
	}
}

// Lines parse only when whole; a log's unfinished last line is not a
// line; an error line is an error.
func TestParseCounterLogTakesOnlyWholeLines(t *testing.T) {
	for line, want := range map[string]*boottest.CounterLine{
		"COUNTER A=00000000000000ff B=00000000000000fe\r": {Boot: true, A: 255, B: 254},
		"COUNT 0000000100000000\r":                        {Count: 1 << 32},
		"COUNT 00000000000001":                            nil, // cut off
		"COUNT 0000000000000x01":                          nil,
		"COUNTER A=0000000000000001":                      nil,
		"Booting from Hard Disk...":                       nil,
	} {
		got, ok := boottest.ParseCounterLine(line)
		if ok != (want != nil) || ok && got != *want {
			t.Errorf("ParseCounterLine(%q) = %+v, %v", line, got, ok)
		}
	}
	log := "SeaBIOS\r\nBooting from Hard Disk...\r\nCOUNTER A=0000000000000000 B=0000000000000000\r\n" +
		"COUNT 0000000000000010\r\nCOUNT 0000000000000020\r\nCOUNT 00000000000000"
	l, err := boottest.ParseCounterLog([]byte(log))
	if err != nil || len(l) != 3 || !l[0].Boot || l[2].Count != 0x20 {
		t.Fatalf("ParseCounterLog = %+v, %v", l, err)
	}
	_, err = boottest.ParseCounterLog([]byte(log[:len(log)-20] + "\r\nCOUNTER ERROR write drive=80 status=cc\r\n"))
	if err == nil || !strings.Contains(err.Error(), "write drive=80 status=cc") {
		t.Fatalf("error line: %v", err)
	}
}

// A record names its disk and is refused when it names neither.
func TestReadCounterRecordChecksItsDisk(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	if err := boottest.WriteCounterDisks(a, b); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 512)
	copy(rec, boottest.CounterMagic+"Z")
	rec[16] = 5
	f, err := os.OpenFile(b, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(rec, boottest.CounterRecordLBA*512)
	f.Close()
	if _, _, err := boottest.ReadCounterFile(b); err == nil {
		t.Fatal("a record of disk 'Z' was read")
	}
	if st, _ := os.Stat(a); st.Size() != boottest.CounterDiskSize {
		t.Fatalf("disk A is %d bytes", st.Size())
	}
	if s := boottest.CounterProgram(); len(s) != 512 || s[510] != 0x55 || s[511] != 0xaa {
		t.Fatal("CounterProgram is not a boot sector")
	}
}
