package storagetest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/sys/unix"
)

// LibvirtSocket is the system libvirtd's read-write socket.
const LibvirtSocket = "/var/run/libvirt/libvirt-sock"

// The daemon's users: libvirtd refuses to start without them, and with no
// /etc/libvirt/qemu.conf (Debian installs none without recommends) it runs
// QEMU as libvirt-qemu, as on a stock host.
const (
	LibvirtQEMUUser = "libvirt-qemu"
	lockDir         = "/run/strata-test"
	virtlogdSocket  = "/var/run/libvirt/virtlogd-sock"
)

var libvirtd struct {
	once  sync.Once
	err   error
	users *os.File // held shared while this process uses the daemon
}

// Libvirtd returns the socket of a libvirtd with the QEMU driver: the one
// running, when it answers, else one started here (with virtlogd, which
// libvirtd needs to start domains), after creating the kvm group and the
// libvirt-qemu group and user when missing. Test processes running at the
// same time share the daemon: each holds a shared lock while it uses it,
// and the last one to call StopLibvirtd (from TestMain, after m.Run)
// stops the daemons that test support started (their pids are recorded
// under /run/strata-test); a daemon that was running before is left.
func Libvirtd(t testing.TB) string {
	t.Helper()
	NeedRoot(t)
	// Absolute paths: /usr/sbin may not be on a CI runner's PATH.
	for _, f := range []string{"/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is not installed (libvirt-daemon, libvirt-daemon-driver-qemu): run 'make test-deps' (or make test) first", f)
		}
	}
	libvirtd.once.Do(func() { libvirtd.err = startLibvirtd() })
	if libvirtd.err != nil {
		t.Fatalf("libvirtd: %v", libvirtd.err)
	}
	return LibvirtSocket
}

// StopLibvirtd ends this process's use of the daemon; when no other test
// process uses it, the daemons test support started are stopped.
func StopLibvirtd() {
	if libvirtd.users == nil {
		return
	}
	defer libvirtd.users.Close()
	start, err := lockFile("libvirtd.start", unix.LOCK_EX)
	if err != nil {
		return
	}
	defer start.Close()
	unix.Flock(int(libvirtd.users.Fd()), unix.LOCK_UN)
	if unix.Flock(int(libvirtd.users.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return // another test process still uses it: the last one stops it
	}
	pidsFile := filepath.Join(lockDir, "libvirtd.pids")
	b, err := os.ReadFile(pidsFile)
	if err != nil {
		return
	}
	lines := strings.Fields(string(b))
	// libvirtd first: it holds virtlogd's socket.
	for i := len(lines) - 1; i >= 0; i-- {
		name, pidS, _ := strings.Cut(lines[i], ":")
		pid, _ := strconv.Atoi(pidS)
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); pid <= 0 || strings.TrimSpace(string(comm)) != name {
			continue // gone, or the pid is someone else's now
		}
		unix.Kill(pid, unix.SIGTERM)
		for deadline := time.Now().Add(10 * time.Second); unix.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	os.Remove(pidsFile)
}

func lockFile(name string, how int) (*os.File, error) {
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(lockDir, name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func startLibvirtd() error {
	if err := libvirtUsers(); err != nil {
		return err
	}
	// One process at a time decides whether to start the daemon.
	start, err := lockFile("libvirtd.start", unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer start.Close()
	libvirtd.users, err = lockFile("libvirtd.users", unix.LOCK_SH)
	if err != nil {
		return err
	}
	if libvirtAnswers() == nil {
		return nil
	}
	if c, err := net.DialTimeout("unix", virtlogdSocket, time.Second); err == nil {
		c.Close()
	} else {
		if err := daemon("virtlogd"); err != nil {
			return err
		}
		if err := waitFor(func() error {
			c, err := net.DialTimeout("unix", virtlogdSocket, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			return fmt.Errorf("virtlogd did not come up: %w", err)
		}
	}
	if err := daemon("libvirtd"); err != nil {
		return err
	}
	if err := waitFor(libvirtAnswers); err != nil {
		return fmt.Errorf("libvirtd did not come up: %w", err)
	}
	return nil
}

// daemon starts a libvirt daemon in the foreground of a child process
// (no systemd here), its output in a log under lockDir, and records its
// pid for the StopLibvirtd that comes last.
func daemon(name string) error {
	log, err := os.OpenFile(filepath.Join(lockDir, name+".log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join("/usr/sbin", name))
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session: it outlives this process when another test
	// process still uses it, and a terminal's Ctrl-C is not for it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go cmd.Wait() // reaped when it ends, whoever stops it
	f, err := os.OpenFile(filepath.Join(lockDir, "libvirtd.pids"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s:%d\n", name, cmd.Process.Pid)
	return err
}

func waitFor(f func() error) error {
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = f(); err == nil {
			return nil
		}
	}
	return err
}

func libvirtAnswers() error {
	l := lv.NewWithDialer(dialers.NewLocal(dialers.WithSocket(LibvirtSocket), dialers.WithLocalTimeout(time.Second)))
	done := make(chan error, 1)
	go func() {
		err := l.ConnectToURI(lv.QEMUSystem)
		if err == nil {
			_, err = l.ConnectGetLibVersion()
			l.Disconnect()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no answer on %s", LibvirtSocket)
	}
}

// libvirtUsers creates the kvm group and the libvirt-qemu group and user,
// as Debian's libvirt-daemon-system package would.
func libvirtUsers() error {
	run := func(argv ...string) error {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %w: %s", argv, err, out)
		}
		return nil
	}
	for _, g := range []string{"kvm", LibvirtQEMUUser} {
		if _, err := user.LookupGroup(g); err != nil {
			if err := run("/usr/sbin/groupadd", "--system", g); err != nil {
				return err
			}
		}
	}
	if _, err := user.Lookup(LibvirtQEMUUser); err != nil {
		if err := run("/usr/sbin/useradd", "--system", "--gid", LibvirtQEMUUser, "--groups", "kvm",
			"--home-dir", "/var/lib/libvirt", "--no-create-home", "--shell", "/usr/sbin/nologin", LibvirtQEMUUser); err != nil {
			return err
		}
	}
	// Debian's udev rule makes /dev/kvm 0660 root:kvm; without udev it
	// stays 0600 root, and libvirt, finding KVM unusable for its QEMU
	// user after a probe that used it, throws away its capability cache
	// and probes QEMU again on every define (some 30 s here).
	if st, err := os.Stat("/dev/kvm"); err == nil && st.Mode().Perm() == 0o600 {
		if err := run("chgrp", "kvm", "/dev/kvm"); err != nil {
			return err
		}
		return os.Chmod("/dev/kvm", 0o660)
	}
	return nil
}
