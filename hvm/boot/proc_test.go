package boot_test

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
)

// zombieLeaderEnv makes the test binary, run as a helper, end its main
// thread alone (exit, not exit_group) and go on with its other threads,
// holding a file open: as a killed QEMU does for a moment, its main
// thread a zombie while its I/O threads still hold the disks.
const zombieLeaderEnv = "STRATA_TEST_ZOMBIE_LEADER"

func init() {
	if os.Getenv(zombieLeaderEnv) == "" {
		return
	}
	runtime.LockOSThread() // init runs on the main thread: keep it
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		os.Exit(1)
	}
	go func() {
		for {
			time.Sleep(time.Hour)
			f.Stat()
		}
	}()
	os.Stdout.WriteString("ready\n")
	syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0) // this thread only
}

// A process whose main thread has ended while others run still holds
// what it opened: it is not gone until its last thread is.
func TestSameProcessWhileOtherThreadsOutliveTheMainThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), zombieLeaderEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	start, err := boot.ProcStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helper's main thread did not end: %s", b)
		}
		time.Sleep(time.Millisecond)
	}
	if !boot.SameProcess(pid, start) {
		t.Fatal("a process whose other threads still run is reported gone")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if boot.SameProcess(pid, start) {
		t.Fatal("a process that ended is reported running")
	}
}
