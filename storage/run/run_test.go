package run_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

func TestErrorKeepsArgvCodeAndStderr(t *testing.T) {
	_, err := run.Output(context.Background(), "ls", "/nonexistent-strata-path")
	var re *run.Error
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *run.Error", err)
	}
	if re.ExitCode != 2 || re.Argv[1] != "/nonexistent-strata-path" || !strings.Contains(re.Stderr, "No such file") {
		t.Errorf("got %+v; want exit 2, the argv and ls's English (C locale) stderr", re)
	}
	if !strings.Contains(err.Error(), "ls /nonexistent-strata-path failed (exit code 2)") {
		t.Errorf("message %q", err)
	}
}

func TestNoShell(t *testing.T) {
	// A shell would expand this; argv passes it through as one argument.
	out, err := run.Output(context.Background(), "echo", "$(id) ; `id` | x")
	if err != nil || string(out) != "$(id) ; `id` | x\n" {
		t.Errorf("got %q, %v", out, err)
	}
}

func TestMissingToolNamesPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := run.Run(context.Background(), nil, nil, "qemu-img", "info", "x")
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "apt-get install qemu-utils") {
		t.Errorf("got %v", err)
	}
}

func TestCriticalIsNotStoppedByCancelOrTerminalSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- run.Critical(ctx, "sh", "-c", "sleep 0.4; test $$ = $(ps -o pgid= -p $$ | tr -d ' ')") }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("a critical tool was stopped, or does not lead its own process group: %v", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("returned after %s: the tool did not run to its end", d)
	}
	// The same with Run is killed at once.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if err := run.Run(ctx, nil, nil, "sleep", "5"); err == nil {
		t.Error("Run was not stopped by its context")
	}
}
