package run_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
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

func TestReadingToolDiesWithStrata(t *testing.T) {
	if os.Getenv("STRATA_RUN_CHILD") == "1" {
		_ = run.Run(context.Background(), nil, nil, "sleep", "30")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=TestReadingToolDiesWithStrata")
	cmd.Env = append(os.Environ(), "STRATA_RUN_CHILD=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var sleeper int
	for i := 0; i < 200 && sleeper == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		out, _ := exec.Command("pgrep", "-P", fmt.Sprint(cmd.Process.Pid), "sleep").Output()
		fmt.Sscan(string(out), &sleeper)
	}
	if sleeper == 0 {
		t.Fatal("the tool did not start")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	time.Sleep(200 * time.Millisecond)
	// Dead (or a zombie waiting for init to reap it), not running on.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", sleeper)); err == nil && !strings.Contains(string(st), ") Z ") {
		_ = syscall.Kill(sleeper, syscall.SIGKILL)
		t.Errorf("a tool run by Run outlived its killed strata: %s", st)
	}
}

// A service stop signals strata and its tools at once; the tool's death
// can be seen before strata's own signal cancels its context. The run
// waits a moment for that signal, so the caller sees itself interrupted
// and does not report the tool's failure as the cause.
func TestToolKilledByAStopSignalWaitsForStrataOwn(t *testing.T) {
	// A grace long enough that the signal below comes within it however
	// loaded the machine is (the run returns as soon as it does).
	defer run.SetSignalGrace(10 * time.Second)()
	for _, critical := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		argv := []string{"sh", "-c", "kill -TERM $$"}
		go func() { time.Sleep(60 * time.Millisecond); cancel() }()
		var err error
		if critical {
			err = run.Critical(ctx, argv...)
		} else {
			err = run.Run(ctx, nil, nil, argv...)
		}
		if err == nil || ctx.Err() == nil {
			t.Errorf("critical=%v: returned %v before strata's own signal (ctx %v)", critical, err, ctx.Err())
		}
		cancel()
	}
	// No signal comes: the tool's failure is reported after the grace.
	run.SetSignalGrace(250 * time.Millisecond)
	start := time.Now()
	if err := run.Run(context.Background(), nil, nil, "sh", "-c", "kill -TERM $$"); err == nil {
		t.Error("a tool killed by SIGTERM reported success")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waited %s for a signal that never came", d)
	}
	// A tool that exits with a code is reported at once.
	start = time.Now()
	_ = run.Run(context.Background(), nil, nil, "false")
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("a failing tool was reported after %s", d)
	}
}
