package main_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type changeJSON struct{ Key, Old, New string }

func showMap(t *testing.T, home, name string) map[string]any {
	t.Helper()
	var m map[string]any
	jsonOf(t, home, &m, "guest", "show", name)
	return m
}

func dig(m map[string]any, path ...any) any {
	var n any = m
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, _ := n.(map[string]any)
			n = mm[k]
		case int:
			l, _ := n.([]any)
			if k >= len(l) {
				return nil
			}
			n = l[k]
		}
	}
	return n
}

// TestGuestImportReplace: an edited xl config updates the guest it came
// from; the change is shown (and with --dry-run only shown), checked as
// guest set checks, and what is strata's own stays: the install record,
// the os hint and driver, the MAC and UUID the config does not give, and
// the volume behind a disk path.
func TestGuestImportReplace(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	sys := newDisk(t, home, "xp-sys", "raw", "")
	cfg := func(memory int, acpi int, more string) string {
		return writeFile(t, fmt.Sprintf("name = \"xp\"\ntype = \"hvm\"\nmemory = %d\nacpi = %d\nboot = \"dc\"\ndisk = [ \"%s,,hda\"%s ]\nvif = [ \"bridge=xenbr0,model=e1000\" ]\n", memory, acpi, sys.path, more))
	}
	ok(t, home, "guest", "import", cfg(512, 0, ""), "--adopt-disks")
	ok(t, home, "guest", "set", "xp", "os=winxp", "driver=qemu", "features.pv_drivers=true")
	ok(t, home, "guest", "installed", "xp") // Windows was installed outside strata: the record a replace keeps
	before := showMap(t, home, "xp")
	mac, install := dig(before, "nics", 0, "mac"), dig(before, "install")
	if dig(before, "disks", 0, "volume") != "xp-sys" || mac == nil || install == nil {
		t.Fatalf("imported: %v", before)
	}

	// Importing it again without --replace says how to update it.
	fails(t, home, 4, []string{"already exists", "--replace"}, "guest", "import", cfg(512, 0, ""))

	edited := cfg(1024, 1, `, "/srv/iso/xp.iso,,hdc,cdrom"`)
	var changes []changeJSON
	jsonOf(t, home, &changes, "guest", "import", edited, "--replace", "--dry-run")
	want := map[string][2]string{"memory": {"512", "1024"}, "features.acpi": {"false", "true"}, "disks.1.path": {"", "/srv/iso/xp.iso"}}
	got := map[string][2]string{}
	for _, c := range changes {
		got[c.Key] = [2]string{c.Old, c.New}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("dry run: %s changes %v, want %v (all: %v)", k, got[k], v, changes)
		}
	}
	if _, ok := got["install.acpi"]; ok {
		t.Errorf("the install record would change: %v", changes)
	}
	if now := showMap(t, home, "xp"); !reflect.DeepEqual(now, before) {
		t.Errorf("--dry-run changed the guest")
	}

	// The text output is a table of what changed; the CD the edited config
	// names is not there, which is said as on import.
	r := runIn(t, home, nil, "guest", "import", edited, "--replace")
	if r.code != 0 || !strings.Contains(r.stdout, "memory") || !strings.Contains(r.stdout, "1024") {
		t.Errorf("replace: exit %d, printed:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "/srv/iso/xp.iso does not exist") {
		t.Errorf("replace with a missing CD image did not warn:\n%s", r.stderr)
	}
	after := showMap(t, home, "xp")
	if dig(after, "memory") != float64(1024) || dig(after, "features", "acpi") != true || len(dig(after, "disks").([]any)) != 2 {
		t.Errorf("after replace: %v", after)
	}
	for _, k := range [][]any{{"nics", 0, "mac"}, {"uuid"}, {"install"}, {"os"}, {"driver"}, {"features", "pv_drivers"}, {"disks", 0, "volume"}, {"id"}} {
		if a, b := dig(before, k...), dig(after, k...); !reflect.DeepEqual(a, b) {
			t.Errorf("replace changed %v: %v -> %v", k, a, b)
		}
	}
	// The same config again changes nothing.
	jsonOf(t, home, &changes, "guest", "import", edited, "--replace")
	if len(changes) != 0 {
		t.Errorf("a second replace changed %v", changes)
	}

	// The checks guest set makes; a refused replace changes nothing.
	ok(t, home, "guest", "define", "other", "--nic", "bridge=xenbr0,mac=00:16:3e:11:22:33")
	stored := ok(t, home, "-o", "yaml", "guest", "show", "xp", "--show-secrets")
	fails(t, home, 2, []string{"memory"}, "guest", "import", writeFile(t, "name = \"xp\"\ntype = \"hvm\"\nmemory = \"lots\"\n"), "--replace")
	fails(t, home, 4, []string{"00:16:3e:11:22:33", "already used"}, "guest", "import", writeFile(t, "name = \"xp\"\ntype = \"hvm\"\nmemory = 64\nvif = [ \"mac=00:16:3e:11:22:33\" ]\n"), "--replace")
	fails(t, home, 2, []string{"fda", "refused"}, "guest", "import", writeFile(t, "name = \"xp\"\ntype = \"hvm\"\nmemory = 64\nfda = \"/f.img\"\n"), "--replace")
	if now := ok(t, home, "-o", "yaml", "guest", "show", "xp", "--show-secrets"); now != stored {
		t.Errorf("a refused replace changed the guest:\n%s", now)
	}
	fails(t, home, 3, []string{`guest "ghost" does not exist`, "without --replace"}, "guest", "import", edited, "--replace", "--name", "ghost")
	fails(t, home, 2, []string{"--dry-run goes with --replace"}, "guest", "import", edited, "--dry-run")
}
