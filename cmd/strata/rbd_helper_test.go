package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// TestRBDHelperBesideTheBinaryOrTheTools: strata runs an RBD rollback's
// calls in the strata-rbd helper beside its executable (the debug log
// says it started it); a strata with no helper beside it, or one that
// group or others may write, runs the rbd and rados tools instead and
// says why at debug level (never a helper found on $PATH), and
// STRATA_RBD_CLIENT=helper makes that a failure; STRATA_RBD_CLIENT=cli
// never starts the helper. Every path rolls back to the point's bytes.
func TestRBDHelperBesideTheBinaryOrTheTools(t *testing.T) {
	c := storagetest.CephCluster(t)
	home := t.TempDir()
	ok(t, home, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", c.Namespace(t), "--ceph-conf", c.Conf)
	d := newDisk(t, home, "v", "raw", "ceph")
	d.write(t, 0x01)
	ok(t, home, "snapshot", "create", "--volume", "v")

	// strata copies: alone in a directory (the helper is on $PATH,
	// which must not count), and beside a helper others may write.
	built := strataBinary(t)
	raw, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	helper, err := os.ReadFile(filepath.Join(filepath.Dir(built), "strata-rbd"))
	if err != nil {
		t.Fatal(err)
	}
	alone := filepath.Join(t.TempDir(), "strata")
	unsafeDir := t.TempDir()
	for path, b := range map[string][]byte{alone: raw, filepath.Join(unsafeDir, "strata"): raw, filepath.Join(unsafeDir, "strata-rbd"): helper} {
		if err := os.WriteFile(path, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(unsafeDir, "strata-rbd"), 0o777); err != nil {
		t.Fatal(err)
	}
	run := func(bin string, env ...string) result {
		t.Helper()
		cmd := exec.Command(bin, "--home", home, "--log-level", "debug", "snapshot", "rollback", "--volume", "v", "1")
		cmd.Env = append(append(os.Environ(), "PATH="+filepath.Dir(built)+":"+os.Getenv("PATH")), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, isExit := err.(*exec.ExitError); isExit {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{stdout.String(), stderr.String(), code}
	}
	const started, tools = "the strata-rbd helper runs", "running the rbd and rados tools instead"
	for _, c := range []struct {
		name, bin string
		env       []string
		want      string
	}{
		{"beside", built, nil, started},
		{"forced-helper", built, []string{"STRATA_RBD_CLIENT=helper"}, started},
		{"alone", alone, nil, "no helper"},
		{"writable-by-others", filepath.Join(unsafeDir, "strata"), nil, "writable by group or others"},
		{"forced-cli", built, []string{"STRATA_RBD_CLIENT=cli"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d.write(t, 0x02)
			r := run(c.bin, c.env...)
			if r.code != 0 {
				t.Fatalf("rollback: exit %d\n%s", r.code, r.stderr)
			}
			d.expect(t, 0x01, "after the rollback")
			switch {
			case c.want == started && (!strings.Contains(r.stderr, started) || strings.Contains(r.stderr, tools)):
				t.Fatalf("the helper did not run:\n%s", r.stderr)
			case c.want != started && c.want != "" && (!strings.Contains(r.stderr, tools) || !strings.Contains(r.stderr, c.want)):
				t.Fatalf("no debug line saying the tools run because of %q:\n%s", c.want, r.stderr)
			case c.want == "" && (strings.Contains(r.stderr, started) || strings.Contains(r.stderr, tools)):
				t.Fatalf("STRATA_RBD_CLIENT=cli still chose:\n%s", r.stderr)
			}
		})
	}
	r := run(alone, "STRATA_RBD_CLIENT=helper")
	if r.code != 7 || !strings.Contains(r.stderr, "STRATA_RBD_CLIENT=helper") {
		t.Fatalf("STRATA_RBD_CLIENT=helper with no helper beside strata: exit %d, want 7 saying why\n%s", r.code, r.stderr)
	}
}

// TestStrataDoesNotLoadCephLibraries: the strata binary never imports
// purego (storage/rbd/librados): a program that does is dynamically
// linked and starts slower; only strata-rbd does.
func TestStrataDoesNotLoadCephLibraries(t *testing.T) {
	for _, c := range []struct {
		pkg  string
		want bool
	}{{".", false}, {"../strata-rbd", true}} {
		out, err := exec.Command("go", "list", "-tags", "urfave_cli_no_docs", "-deps", c.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", c.pkg, err, out)
		}
		if got := strings.Contains(string(out), "github.com/ebitengine/purego"); got != c.want {
			t.Errorf("%s imports purego: %v, want %v", c.pkg, got, c.want)
		}
	}
}
