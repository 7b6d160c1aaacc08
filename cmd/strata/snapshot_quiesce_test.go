package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/qga"
)

// pointCount reads the test guest's counter file from the internal
// snapshot ref of the qcow2 image at path (-U: the guest holds the image)
// with e2fsprogs' debugfs; -1 when the file is not on that filesystem.
func pointCount(t *testing.T, path, ref string) int {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "point.raw")
	if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", "-l", "snapshot.name="+ref, path, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert of point %s: %v: %s", ref, err, out)
	}
	out, err := exec.Command("debugfs", "-R", "cat "+boottest.AgentCountFile, raw).Output()
	if err != nil {
		t.Fatalf("debugfs: %v", err)
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("the point's counter file holds %q", s)
	}
	return n
}

var agentWrote = regexp.MustCompile(regexp.QuoteMeta(boottest.AgentWrote) + `(\d+)`)

// lastWrote is the last counter value the guest reported in serial.
func lastWrote(serial string) int {
	m := agentWrote.FindAllStringSubmatch(serial, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

func serialOf(t *testing.T, home, name string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(home, "run", guestID(t, home, name), "serial.log"))
	return string(b)
}

// A guest whose definition says features.guest_agent runs the real
// qemu-ga (the test guest's agent mode: an ext2 filesystem the guest
// keeps writing to, with the kernel's writeback off, so that only a sync
// or a freeze puts its writes on the disk). A plain live point is
// crash-consistent and misses what the guest wrote; with --quiesce the
// agent froze the filesystems (the guest's freeze hook ran before the
// pause and its thaw hook after), the point says "filesystem" and holds
// every write the guest finished before the freeze, and the guest is
// thawed: the agent reports it, and the guest keeps writing.
func TestQuiescedLivePointFreezesTheGuestFilesystemsThroughItsAgent(t *testing.T) {
	k := linuxKit(t)
	needTool(t, "debugfs", "e2fsprogs")
	home := shortHome(t)
	ok(t, home, "volume", "create", "qa-fs", "--size", "16M", "--format", "qcow2")
	var vol struct{ Path string }
	jsonOf(t, home, &vol, "volume", "info", "qa-fs")
	def := filepath.Join(t.TempDir(), "qa.yaml")
	yaml := "api_version: strata/v1\nname: qa\nmemory: 256\ndriver: qemu\nos: linux\nfeatures:\n  guest_agent: true\n" +
		"disks:\n  - volume: qa-fs\n    vdev: xvda\n    format: qcow2\n" +
		"direct_boot:\n  kernel: " + k.Kernel + "\n  ramdisk: " + k.InitrdFor(boottest.ModeAgent) + "\n  cmdline: " + k.Append(boottest.ModeAgent) + "\n"
	if err := os.WriteFile(def, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "guest", "define", "qa", "-f", def)
	ok(t, home, "guest", "start", "qa", "--network", "none", "--wait-serial", boottest.AgentReady, "--wait-timeout", "3m")
	t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", "qa") })
	waitSerialLog(t, home, "qa", regexp.QuoteMeta(boottest.AgentWrote)+"3", time.Minute)

	// Without --quiesce: the writes are in the guest's page cache only.
	var crash livePoint
	jsonOf(t, home, &crash, "snapshot", "create", "qa", "--name", "crash")
	if crash.Consistency != "crash" || !crash.Live {
		t.Fatalf("plain live point: %+v", crash)
	}
	if n := pointCount(t, vol.Path, crash.Disks[0].Ref); n != -1 {
		t.Fatalf("the crash-consistent point holds counter %d: the guest's writes reached the disk without a freeze, so the test proves nothing", n)
	}

	before := lastWrote(serialOf(t, home, "qa"))
	var fs livePoint
	jsonOf(t, home, &fs, "snapshot", "create", "qa", "--name", "quiesced", "--quiesce")
	if fs.Consistency != "filesystem" || !fs.Live || fs.PauseMS == nil {
		t.Fatalf("quiesced live point: %+v", fs)
	}
	serial := serialOf(t, home, "qa")
	frz := strings.Index(serial, boottest.AgentFreezeHook+"freeze")
	thw := strings.Index(serial, boottest.AgentFreezeHook+"thaw")
	if frz < 0 || thw < frz {
		t.Fatalf("the guest's freeze hook did not run freeze then thaw:\n%s", serial[max(0, len(serial)-2000):])
	}
	atFreeze := lastWrote(serial[:frz])
	got := pointCount(t, vol.Path, fs.Disks[0].Ref)
	if got < atFreeze || got < before {
		t.Fatalf("the quiesced point holds counter %d, but the guest had written %d before the freeze (%d before the command)", got, atFreeze, before)
	}
	t.Logf("crash point: no counter; quiesced point: %d (written before the freeze: %d); pause %.1f ms", got, atFreeze, *fs.PauseMS)

	// Thawed: the agent says so, and the guest writes on.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := qga.Dial(ctx, filepath.Join(home, "run", guestID(t, home, "qa"), "agent.sock"))
	if err != nil {
		t.Fatalf("the agent after the point: %v", err)
	}
	s, err := qga.FreezeStatus(ctx, a)
	a.Close()
	if err != nil || s != qga.Thawed {
		t.Fatalf("the guest's filesystems after the point: %q, %v", s, err)
	}
	waitSerialLog(t, home, "qa", regexp.QuoteMeta(boottest.AgentWrote)+strconv.Itoa(got+5)+"\r?\n", time.Minute)
	if st := ok(t, home, "guest", "status", "qa"); !strings.Contains(st, "running") {
		t.Fatalf("status after the points: %s", st)
	}
}

// --quiesce is refused with what to do, and nothing recorded, for a guest
// that cannot freeze: without features.guest_agent (exit 8: its points
// are crash-consistent); with it, but started before it was set (no
// channel: exit 7); with the channel but no agent answering in it (exit
// 7, within seconds).
func TestQuiesceRefusedWithoutAnAnsweringAgent(t *testing.T) {
	home := shortHome(t)
	liveGuest(t, home, "na", "STRATA-NA")
	fails(t, home, 8, []string{"no QEMU guest agent", "features.guest_agent", "crash-consistent"}, "snapshot", "create", "na", "--quiesce")
	ok(t, home, "guest", "set", "na", "features.guest_agent=true")
	fails(t, home, 7, []string{"without the guest agent's channel", "start it again"}, "snapshot", "create", "na", "--quiesce")

	ok(t, home, "guest", "kill", "na")
	ok(t, home, "guest", "start", "na", "--wait-serial", "STRATA-NA")
	start := time.Now()
	fails(t, home, 7, []string{"does not answer", "qemu-ga", "leave --quiesce out"}, "snapshot", "create", "na", "--quiesce")
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the refusal took %v", d)
	}
	if out := ok(t, home, "--output", "json", "snapshot", "list", "na"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after refused --quiesce: %s", out)
	}
	// A plain live point still works.
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", "na")
	if p.Consistency != "crash" {
		t.Fatalf("plain point: %+v", p)
	}
}

// The same through libvirt: the domain XML's agent channel, which libvirt
// connects to the guest's qemu-ga, and libvirt's agent passthrough. The
// kit is copied where libvirt's QEMU user can read it.
func TestQuiescedLivePointThroughLibvirt(t *testing.T) {
	k := linuxKit(t)
	needTool(t, "debugfs", "e2fsprogs")
	home, name := libvirtHome(t)
	kit := filepath.Join(home, "kit")
	if err := os.Mkdir(kit, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o711)
	for _, f := range []string{k.Kernel, k.InitrdFor(boottest.ModeAgent)} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(kit, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ok(t, home, "volume", "create", name, "--size", "16M", "--format", "qcow2")
	var vol struct{ Path string }
	jsonOf(t, home, &vol, "volume", "info", name)
	def := filepath.Join(t.TempDir(), "lq.yaml")
	yaml := "api_version: strata/v1\nname: " + name + "\nmemory: 256\ndriver: libvirt\nos: linux\nfeatures:\n  guest_agent: true\n" +
		"disks:\n  - volume: " + name + "\n    vdev: xvda\n    format: qcow2\n" +
		"direct_boot:\n  kernel: " + filepath.Join(kit, filepath.Base(k.Kernel)) + "\n  ramdisk: " + filepath.Join(kit, filepath.Base(k.InitrdFor(boottest.ModeAgent))) + "\n  cmdline: " + k.Append(boottest.ModeAgent) + "\n"
	if err := os.WriteFile(def, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "guest", "define", name, "-f", def)
	// A display of its own: libvirt's automatic port misses QEMUs that
	// other tests run on loopback.
	ok(t, home, "guest", "set", name, "vncunused=0", fmt.Sprintf("vncdisplay=%d", 40+(os.Getpid()+45)%50))
	ok(t, home, "guest", "start", name, "--wait-serial", boottest.AgentReady, "--wait-timeout", "3m")
	t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", name) })

	var fs livePoint
	for i := 0; ; i++ {
		// libvirt learns that the agent opened its port a moment after
		// the guest says so.
		r := runIn(t, home, nil, "--output", "json", "snapshot", "create", name, "--quiesce")
		if r.code == 0 {
			if err := json.Unmarshal([]byte(r.stdout), &fs); err != nil {
				t.Fatal(err)
			}
			break
		}
		if r.code != 7 || i > 10 {
			t.Fatalf("quiesced point through libvirt: exit %d: %s", r.code, r.stderr)
		}
		time.Sleep(time.Second)
	}
	if fs.Consistency != "filesystem" || !fs.Live {
		t.Fatalf("quiesced point through libvirt: %+v", fs)
	}
	if got := pointCount(t, vol.Path, fs.Disks[0].Ref); got < 1 {
		t.Fatalf("the quiesced point through libvirt holds counter %d", got)
	}
	if s := statusOf(t, home, name); s.State != "running" {
		t.Fatalf("after the point: %+v", s)
	}

	// A strata killed with the guest paused and frozen: the point's
	// guard resumes the domain and thaws its filesystems through
	// libvirt's agent passthrough, then undoes the point, with no strata
	// command run.
	if r := runIn(t, home, []string{"STRATA_CRASH_AT=create:live-paused"}, "snapshot", "create", name, "--name", "torn", "--quiesce"); r.code == 0 {
		t.Fatal("the killed quiesced point exited 0")
	}
	waitDomRunning(t, name, 10*time.Second)
	waitGuardsGone(t, home, time.Minute)
	out, err := exec.Command("virsh", "-c", "qemu:///system", "qemu-agent-command", name, `{"execute":"guest-fsfreeze-status"}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"thawed"`) {
		guardLogs(t, home)
		t.Fatalf("the guest's filesystems after the killed quiesced point: %s %v", out, err)
	}
	logs, _ := filepath.Glob(filepath.Join(home, "run", "*", "guard.log"))
	var said []byte
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		said = append(said, b...)
	}
	if !strings.Contains(string(said), "resumed the guest") || !strings.Contains(string(said), "thawed the guest's filesystems") {
		t.Fatalf("the guard did not say it resumed and thawed the guest:\n%s", said)
	}
	var all []livePoint
	jsonOf(t, home, &all, "snapshot", "list", name)
	if len(all) != 1 || all[0].ID != fs.ID {
		t.Fatalf("points after the guard undid the killed one: %+v", all)
	}
	if f, code := doctor(t, home); code != 0 || len(f) != 0 {
		t.Fatalf("doctor (no --repair) after the guard: exit %d, %+v", code, f)
	}
}

// A strata killed while the guest is paused and its filesystems frozen
// for a quiesced point leaves neither: the guest's watcher resumes the
// guest and thaws its filesystems through the agent, with no strata
// command run (the guest's own thaw hook runs, the agent reports the
// filesystems thawed and the guest writes on); the next point undoes
// the interrupted one.
func TestKilledQuiescedPointLeavesTheGuestRunningAndThawed(t *testing.T) {
	k := linuxKit(t)
	home := shortHome(t)
	ok(t, home, "volume", "create", "qk-fs", "--size", "16M", "--format", "qcow2")
	def := filepath.Join(t.TempDir(), "qk.yaml")
	yaml := "api_version: strata/v1\nname: qk\nmemory: 256\ndriver: qemu\nos: linux\nfeatures:\n  guest_agent: true\n" +
		"disks:\n  - volume: qk-fs\n    vdev: xvda\n    format: qcow2\n" +
		"direct_boot:\n  kernel: " + k.Kernel + "\n  ramdisk: " + k.InitrdFor(boottest.ModeAgent) + "\n  cmdline: " + k.Append(boottest.ModeAgent) + "\n"
	if err := os.WriteFile(def, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "guest", "define", "qk", "-f", def)
	ok(t, home, "guest", "start", "qk", "--network", "none", "--wait-serial", boottest.AgentReady, "--wait-timeout", "3m")
	t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", "qk") })
	waitSerialLog(t, home, "qk", regexp.QuoteMeta(boottest.AgentWrote)+"3", time.Minute)

	r := runIn(t, home, []string{"STRATA_CRASH_AT=create:live-paused"}, "snapshot", "create", "qk", "--name", "torn", "--quiesce")
	if r.code == 0 {
		t.Fatalf("the killed point exited 0: %s", r.stderr)
	}
	serial := filepath.Join(home, "run", guestID(t, home, "qk"), "serial.log")
	var frz int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(serial)
		s := string(b)
		frz = strings.LastIndex(s, boottest.AgentFreezeHook+"freeze")
		if frz >= 0 && strings.Contains(s[frz:], boottest.AgentFreezeHook+"thaw") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after strata died with the guest frozen, the guest is not thawed (freeze hook at %d):\n%s", frz, s[max(0, len(s)-2000):])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := qga.Dial(ctx, filepath.Join(home, "run", guestID(t, home, "qk"), "agent.sock"))
	if err != nil {
		t.Fatalf("the agent after the interrupted point: %v", err)
	}
	s, err := qga.FreezeStatus(ctx, a)
	a.Close()
	if err != nil || s != qga.Thawed {
		t.Fatalf("the guest's filesystems after the interrupted point: %q, %v", s, err)
	}
	if st := statusOf(t, home, "qk"); st.State != "running" {
		t.Fatalf("the guest after the interrupted point: %+v", st)
	}
	b, _ := os.ReadFile(serial)
	n := lastWrote(string(b))
	waitSerialLog(t, home, "qk", regexp.QuoteMeta(boottest.AgentWrote)+strconv.Itoa(n+3)+"\r?\n", time.Minute)

	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", "qk", "--name", "next", "--quiesce")
	var all []livePoint
	jsonOf(t, home, &all, "snapshot", "list", "qk")
	if len(all) != 1 || all[0].ID != p.ID || p.Consistency != "filesystem" {
		t.Fatalf("points after the interrupted one: %+v", all)
	}
}

// A hostile guest that floods its agent channel (and never answers) gets
// a quiesced point refused within seconds (exit 7, saying the channel is
// not the agent's), nothing recorded and the guest running; a
// crash-consistent point of it still works.
func TestQuiesceOfAGuestFloodingItsAgentChannelIsRefused(t *testing.T) {
	k := linuxKit(t)
	home := shortHome(t)
	ok(t, home, "volume", "create", "qf-fs", "--size", "16M", "--format", "qcow2")
	def := filepath.Join(t.TempDir(), "qf.yaml")
	yaml := "api_version: strata/v1\nname: qf\nmemory: 256\ndriver: qemu\nos: linux\nfeatures:\n  guest_agent: true\n" +
		"disks:\n  - volume: qf-fs\n    vdev: xvda\n    format: qcow2\n" +
		"direct_boot:\n  kernel: " + k.Kernel + "\n  ramdisk: " + k.InitrdFor(boottest.ModeAgent) + "\n  cmdline: " + k.Append(boottest.ModeAgent, boottest.FloodingAgent) + "\n"
	if err := os.WriteFile(def, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "guest", "define", "qf", "-f", def)
	ok(t, home, "guest", "start", "qf", "--network", "none", "--wait-serial", boottest.AgentReady, "--wait-timeout", "3m")
	t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", "qf") })
	start := time.Now()
	fails(t, home, 7, []string{"not the QEMU guest agent's protocol", "nothing was recorded"}, "snapshot", "create", "qf", "--quiesce")
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	if out := ok(t, home, "--output", "json", "snapshot", "list", "qf"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after a refused --quiesce: %s", out)
	}
	if s := statusOf(t, home, "qf"); s.State != "running" {
		t.Fatalf("the guest after a refused --quiesce: %+v", s)
	}
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", "qf")
	if p.Consistency != "crash" || !p.Live {
		t.Fatalf("a plain point of the flooding guest: %+v", p)
	}
}
