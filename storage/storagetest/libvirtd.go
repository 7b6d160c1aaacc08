package storagetest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
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
	once    sync.Once
	err     error
	users   *os.File // held shared while this process uses the daemon
	started []*exec.Cmd
}

// Libvirtd returns the socket of a libvirtd with the QEMU driver: the one
// running, when it answers, else one this process starts (with virtlogd,
// which libvirtd needs to start domains), after creating the kvm group
// and the libvirt-qemu group and user when missing. The daemon is shared
// by every test package running at the same time: a package that started
// it stops it in StopLibvirtd (call it from TestMain after m.Run), once
// no other package uses it.
func Libvirtd(t testing.TB) string {
	t.Helper()
	NeedRoot(t)
	NeedTool(t, "libvirtd")
	NeedTool(t, "virtlogd")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"); err != nil {
		t.Fatal("libvirt's QEMU driver is not installed: run 'make test-deps' (or make test) first")
	}
	libvirtd.once.Do(func() { libvirtd.err = startLibvirtd() })
	if libvirtd.err != nil {
		t.Fatalf("libvirtd: %v", libvirtd.err)
	}
	return LibvirtSocket
}

// StopLibvirtd stops the daemons Libvirtd started in this process, after
// waiting (up to 5 minutes) for other test processes to stop using them.
func StopLibvirtd() {
	if libvirtd.users == nil {
		return
	}
	if len(libvirtd.started) == 0 {
		libvirtd.users.Close()
		return
	}
	start, err := lockFile("libvirtd.start", unix.LOCK_EX)
	if err == nil {
		defer start.Close()
	}
	// Give up the shared hold, then wait for everyone else's.
	unix.Flock(int(libvirtd.users.Fd()), unix.LOCK_UN)
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if unix.Flock(int(libvirtd.users.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			break
		}
	}
	for i := len(libvirtd.started) - 1; i >= 0; i-- {
		cmd := libvirtd.started[i]
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	libvirtd.users.Close()
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
		cmd, err := daemon("virtlogd")
		if err != nil {
			return err
		}
		libvirtd.started = append(libvirtd.started, cmd)
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
	cmd, err := daemon("libvirtd")
	if err != nil {
		return err
	}
	libvirtd.started = append(libvirtd.started, cmd)
	if err := waitFor(libvirtAnswers); err != nil {
		return fmt.Errorf("libvirtd did not come up: %w", err)
	}
	return nil
}

// daemon starts a libvirt daemon in the foreground of a child process
// (no systemd here), its output in a log under lockDir.
func daemon(name string) (*exec.Cmd, error) {
	log, err := os.OpenFile(filepath.Join(lockDir, name+".log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(name)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session: a terminal's Ctrl-C on the test is not its signal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return cmd, nil
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
			if err := run("groupadd", "--system", g); err != nil {
				return err
			}
		}
	}
	if _, err := user.Lookup(LibvirtQEMUUser); err != nil {
		if err := run("useradd", "--system", "--gid", LibvirtQEMUUser, "--groups", "kvm",
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
