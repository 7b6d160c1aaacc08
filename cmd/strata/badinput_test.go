package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every refusal exits non-zero with a message naming the input and what to
// do, and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "create", "exists", "--size", "1M")
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o600)
	cases := []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"zero size", 2, []string{`invalid size "0"`}, []string{"volume", "create", "v", "--size", "0"}},
		{"negative size", 2, []string{`invalid size "-5G"`}, []string{"volume", "create", "v", "--size=-5G"}},
		{"overflowing size", 2, []string{`invalid size "9999999T"`, "largest"}, []string{"volume", "create", "v", "--size", "9999999T"}},
		{"malformed size", 2, []string{`invalid size "12X"`, "K, M, G, T"}, []string{"volume", "create", "v", "--size", "12X"}},
		{"missing size", 2, []string{"size"}, []string{"volume", "create", "v"}},
		{"bad format", 2, []string{`invalid format "vmdk"`, "raw or qcow2"}, []string{"volume", "create", "v", "--size", "1G", "--format", "vmdk"}},
		{"bad partition", 2, []string{`invalid partition table "apm"`}, []string{"volume", "create", "v", "--size", "1G", "--partition", "apm"}},
		{"bad fs", 2, []string{`invalid filesystem "ntfs"`}, []string{"volume", "create", "v", "--size", "1G", "--fs", "ntfs"}},
		{"long label", 2, []string{`invalid label "ABCDEFGHIJKL"`}, []string{"volume", "create", "v", "--size", "1G", "--fs", "fat32", "--label", "ABCDEFGHIJKL"}},
		{"traversal name", 2, []string{`invalid volume name "../etc"`}, []string{"volume", "create", "../etc", "--size", "1G"}},
		{"dot name", 2, []string{`invalid volume name ".x"`}, []string{"volume", "create", ".x", "--size", "1G"}},
		{"flag-like name", 2, []string{`invalid volume name "-rf"`}, []string{"volume", "create", "--size", "1G", "--", "-rf"}},
		{"shell name", 2, []string{`invalid volume name "a;rm"`}, []string{"volume", "create", "a;rm", "--size", "1G"}},
		{"long name", 2, []string{"longer than 64"}, []string{"volume", "create", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--size", "1G"}},
		{"duplicate volume", 4, []string{`volume "exists" already exists`}, []string{"volume", "create", "exists", "--size", "1G"}},
		{"unknown pool", 3, []string{`pool "nope" not found`}, []string{"volume", "create", "v", "--size", "1G", "--pool", "nope"}},
		{"unknown volume info", 3, []string{`volume "nope" not found`}, []string{"volume", "info", "nope"}},
		{"unknown volume delete", 3, []string{`volume "nope" not found`}, []string{"volume", "delete", "nope"}},
		{"unknown volume resize", 3, []string{`volume "nope" not found`}, []string{"volume", "resize", "nope", "--size", "2G"}},
		{"too many args", 2, []string{"takes 1 argument"}, []string{"volume", "info", "a", "b"}},
		{"unknown flag", 2, []string{"-sise"}, []string{"volume", "create", "v", "--sise", "1G"}},
		{"bad output", 2, []string{`invalid --output "xml"`}, []string{"--output", "xml", "volume", "list"}},
		{"yaml output elsewhere", 2, []string{"--output yaml is only for guest show"}, []string{"--output", "yaml", "volume", "list"}},
		{"bad log level", 2, []string{`invalid --log-level "loud"`}, []string{"--log-level", "loud", "volume", "list"}},
		{"import missing", 3, []string{"does not exist"}, []string{"volume", "import", "/nonexistent/disk.img"}},
		{"import dir", 2, []string{"neither a regular file nor a block device"}, []string{"volume", "import", t.TempDir(), "--name", "d"}},
		{"import bad name", 2, []string{`invalid volume name "a/b"`}, []string{"volume", "import", notDir, "--name", "a/b"}},
		{"import pool without copy", 2, []string{"--pool only applies with --copy"}, []string{"volume", "import", notDir, "--pool", "default"}},
		{"import twice", 4, []string{"already"}, []string{"volume", "import", notDir, "--name", "exists"}},
		{"import from the home", 2, []string{"inside strata's state home", "--copy"}, []string{"volume", "import", filepath.Join(home, "catalog.db"), "--name", "cat"}},
		{"pool bad name", 2, []string{`invalid pool name "a b"`}, []string{"pool", "add", "a b", "--path", t.TempDir()}},
		{"pool bad driver", 2, []string{`invalid driver "zfs"`}, []string{"pool", "add", "p", "--driver", "zfs", "--path", t.TempDir()}},
		{"pool path is file", 2, []string{"is not a directory"}, []string{"pool", "add", "p", "--path", notDir}},
		{"pool duplicate", 4, []string{`pool "default" already exists`}, []string{"pool", "add", "default", "--path", t.TempDir()}},
		{"pool duplicate path", 4, []string{"is already pool"}, []string{"pool", "add", "again", "--path", filepath.Join(home, "pools", "default")}},
		{"pool remove default", 2, []string{"default pool cannot be removed"}, []string{"pool", "remove", "default"}},
		{"pool remove unknown", 3, []string{`pool "nope" not found`}, []string{"pool", "remove", "nope"}},
		{"pool info unknown", 3, []string{`pool "nope" not found`}, []string{"pool", "info", "nope"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotState(t, home)
			r := fails(t, home, tc.code, tc.want, tc.args...)
			if r.stdout != "" {
				t.Errorf("a refusal printed on stdout: %q", r.stdout)
			}
			if after := snapshotState(t, home); after != before {
				t.Errorf("refused command changed the state:\nbefore %s\nafter %s", before, after)
			}
		})
	}
}

// A missing qemu-img names the Debian package to install, and leaves no
// file behind.
func TestMissingQemuImg(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "list")
	before := snapshotState(t, home)
	r := runIn(t, home, []string{"PATH=" + t.TempDir()}, "volume", "create", "q", "--size", "1G", "--format", "qcow2")
	if r.code != 7 || !contains(r.stderr, "qemu-img is not installed", "qemu-utils") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if after := snapshotState(t, home); after != before {
		t.Errorf("state changed:\n%s\n%s", before, after)
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
