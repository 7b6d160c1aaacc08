package main_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// strataBinary builds cmd/strata once per test process: the integration
// tests drive the real binary, as an admin would.
func strataBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "strata-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "strata")
		args := []string{"build", "-tags", "urfave_cli_no_docs", "-o", binPath}
		if os.Getenv("STRATA_TEST_RACE") != "" {
			// A binary with the race detector: a race it sees makes strata
			// exit 66 with the report on stderr, which fails the test.
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = &buildError{out: string(out), err: err}
			return
		}
		// strata's Ceph helper beside it, as make build puts it: the rbd
		// tests run the helper path (STRATA_RBD_CLIENT=cli the tools').
		if _, err := storagetest.BuildRBDHelper(dir); err != nil {
			buildErr = err
		}
	})
	if buildErr != nil {
		t.Fatalf("build strata: %v", buildErr)
	}
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

// runIn runs strata with a state home and extra environment.
func runIn(t testing.TB, home string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(strataBinary(t), append([]string{"--home", home}, args...)...)
	cmd.Env = append(append(os.Environ(), "STRATA_LOCK_TIMEOUT=60s"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run strata %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{stdout.String(), stderr.String(), code}
}

// ok runs strata and fails the test unless it exits 0.
func ok(t testing.TB, home string, args ...string) string {
	t.Helper()
	r := runIn(t, home, nil, args...)
	if r.code != 0 {
		t.Fatalf("strata %s: exit %d\nstderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs strata, expecting exit code code and stderr containing each
// of want.
func fails(t testing.TB, home string, code int, want []string, args ...string) result {
	t.Helper()
	r := runIn(t, home, nil, args...)
	if r.code != code {
		t.Errorf("strata %s: exit %d, want %d\nstderr: %s", strings.Join(args, " "), r.code, code, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("strata %s: stderr %q does not contain %q", strings.Join(args, " "), r.stderr, w)
		}
	}
	return r
}

// jsonOf runs strata with --output json and decodes stdout into v.
func jsonOf(t testing.TB, home string, v any, args ...string) {
	t.Helper()
	out := ok(t, home, append([]string{"--output", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("strata %v: output is not JSON: %v\n%s", args, err, out)
	}
}

// snapshotState captures what a refused command must not change: the
// volume and pool listings and the files under home.
func snapshotState(t testing.TB, home string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(ok(t, home, "--output", "json", "volume", "list"))
	var pools []struct{ Name, Path, Driver string }
	jsonOf(t, home, &pools, "pool", "list")
	for _, p := range pools {
		b.WriteString(p.Name + " " + p.Driver + " " + p.Path + "\n")
	}
	_ = filepath.Walk(home, func(p string, info os.FileInfo, err error) error {
		// Lock files are not state: an operation refused after taking
		// one (a resize too large) leaves the empty file behind.
		if err == nil && !info.IsDir() && filepath.Base(p) != "catalog.db" && filepath.Base(filepath.Dir(p)) != "locks" {
			b.WriteString(p + "\n")
		}
		return nil
	})
	return b.String()
}
