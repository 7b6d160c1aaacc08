package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeXL is a stand-in for Xen's xl: no Xen can run on the machines the
// tests run on. It keeps one domain (id 5) in a directory: create and
// restore make it exist (restore only from a file that begins as xl's
// save files do), save writes such a file and ends it (after
// XL_FAKE_SAVE_SLEEP seconds), destroy and shutdown end it; every argv
// is logged. It is not a real Xen: only the commands strata sends and
// the order of the work around them are checked.
const fakeXL = `#!/bin/sh
d="$XL_FAKE_DIR"
echo "$*" >> "$d/log"
name() { sed -n 's/^name = "\(.*\)"$/\1/p' "$1"; }
case "$1" in
info) echo "xen_major : 4"; exit 0 ;;
list)
	if [ "$2" = "-l" ]; then
		if [ -e "$d/alive" ]; then printf '[{"domid": 5, "config": {"c_info": {"type": "hvm", "name": "%s"}}}]\n' "$(cat "$d/name")"; else echo '[]'; fi
		exit 0
	fi
	printf 'Name                                        ID   Mem VCPUs\tState\tTime(s)\n'
	printf 'Domain-0                                     0  2048     2     r-----      10.0\n'
	if [ -e "$d/alive" ]; then printf '%-40s %5d %5d %5d     %s  %8.1f\n' "$(cat "$d/name")" 5 16 1 "-b----" 1.0; fi
	exit 0 ;;
create) name "$4" > "$d/name"; touch "$d/alive" ;;
restore)
	[ "$(head -c 27 "$4")" = "Xen saved domain, xl format" ] || { echo "not an xl save file" >&2; exit 1; }
	name "$3" > "$d/name"; touch "$d/alive" ;;
domid) echo 5 ;;
unpause|pause) ;;
save)
	sleep "${XL_FAKE_SAVE_SLEEP:-0}"
	printf 'Xen saved domain, xl format\n \000 \rthe domain of the fake xl\n' > "$3"
	rm -f "$d/alive" ;;
destroy|shutdown) rm -f "$d/alive" ;;
*) echo "fake xl: $*: not faked" >&2; exit 1 ;;
esac
`

// A memory point of a guest xl runs (a stand-in xl, see fakeXL): xl save
// of the domain, the point's disks taken while it is saved (an internal
// snapshot by qemu-img and a copy), xl restore from the file with the
// rendered config; the point is ready, of consistency memory, its state
// the file xl wrote. rollback --memory of the stopped guest restores it
// from the point through xl. A save past --max-pause (xl's save cannot
// be interrupted) is followed by the restore only: nothing recorded, no
// disk taken, no state file left.
func TestMemoryPointThroughXLSavesTakesTheDisksAndRestores(t *testing.T) {
	home := shortHome(t)
	bin, dir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "xl"), []byte(fakeXL), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "XL_FAKE_DIR=" + dir}
	xlLog := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.Remove(filepath.Join(dir, "log"))
		return string(b)
	}
	run := func(args ...string) string {
		t.Helper()
		r := runIn(t, home, env, args...)
		if r.code != 0 {
			t.Fatalf("strata %v: exit %d: %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	status := func() guestStatus {
		t.Helper()
		var s guestStatus
		if err := json.Unmarshal([]byte(run("--output", "json", "guest", "status", "xg")), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	run("volume", "create", "xs", "--size", "1M", "--format", "qcow2")
	run("volume", "create", "xd", "--size", "1M", "--format", "raw")
	run("guest", "define", "xg", "--disk", "xs", "--disk", "xd", "--memory", "16", "--os", "other", "--driver", "xl")
	run("guest", "start", "xg")
	xlLog()

	var p memoryPoint
	if err := json.Unmarshal([]byte(run("--output", "json", "snapshot", "create", "xg", "--memory", "--max-pause", "30s")), &p); err != nil {
		t.Fatal(err)
	}
	log := xlLog()
	cfg := filepath.Join(home, "run", guestID(t, home, "xg"), "xl.cfg")
	save, restore := "save 5 "+p.Memory.Path, "restore -p "+cfg+" "+p.Memory.Path
	if !strings.Contains(log, save) || !strings.Contains(log, restore) || strings.Index(log, save) > strings.Index(log, restore) {
		t.Fatalf("xl commands of a memory point:\n%s(want %q, then %q)", log, save, restore)
	}
	if !p.Live || p.Consistency != "memory" || p.Memory == nil || p.Memory.Driver != "xl" || p.Memory.Bytes <= 0 || p.PauseMS == nil || len(p.Disks) != 2 {
		t.Fatalf("memory point through xl: %+v %+v", p, p.Memory)
	}
	if snaps := internalSnapshots(t, volumePath(t, home, "xs")); len(snaps) != 1 {
		t.Fatalf("internal snapshots of the qcow2 disk: %v", snaps)
	}
	if _, err := os.Stat(p.Disks[1].Ref); err != nil {
		t.Fatalf("the raw disk's copy: %v", err)
	}
	if s := status(); s.State != "running" {
		t.Fatalf("the guest after the point: %+v", s)
	}

	// Over --max-pause: restored, nothing recorded.
	r := runIn(t, home, append(env, "XL_FAKE_SAVE_SLEEP=0.3"), "snapshot", "create", "xg", "--memory", "--max-pause", "100ms")
	if r.code != 7 || !strings.Contains(r.stderr, "--max-pause") {
		t.Fatalf("a memory point through xl over --max-pause: exit %d: %s", r.code, r.stderr)
	}
	if log := xlLog(); !strings.Contains(log, "save 5 ") || !strings.Contains(log, "restore -p ") {
		t.Fatalf("xl commands of a memory point over --max-pause:\n%s", log)
	}
	var all []memoryPoint
	if err := json.Unmarshal([]byte(run("--output", "json", "snapshot", "list", "xg")), &all); err != nil || len(all) != 1 {
		t.Fatalf("points after a memory point over --max-pause: %+v %v", all, err)
	}
	if snaps := internalSnapshots(t, volumePath(t, home, "xs")); len(snaps) != 1 {
		t.Fatalf("internal snapshots after a memory point over --max-pause: %v", snaps)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p.Memory.Path), "*.state")); len(left) != 1 {
		t.Fatalf("state files after a memory point over --max-pause: %v", left)
	}

	// Stopped, the guest is restored from the point through xl.
	run("guest", "kill", "xg")
	xlLog()
	run("snapshot", "rollback", "xg", fmt.Sprint(p.ID), "--memory")
	if log := xlLog(); !strings.Contains(log, restore) {
		t.Fatalf("xl commands of rollback --memory:\n%s", log)
	}
	if s := status(); s.State != "running" || s.Driver != "xl" {
		t.Fatalf("after rollback --memory through xl: %+v", s)
	}
	run("guest", "kill", "xg")
}
