package libvirt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/libvirt"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	storagetest.StopLibvirtd()
	os.Exit(code)
}

const serialMarker = "STRATA-LIBVIRT-OK"

// bootSector is a raw disk whose first sector prints serialMarker on COM1
// and then halts with interrupts off: it boots in milliseconds under TCG
// and never answers the ACPI power button.
func bootSector() []byte {
	b := []byte{
		0xfa,             // cli
		0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1 data register)
	}
	for _, c := range []byte(serialMarker + "\r\n") {
		b = append(b, 0xb0, c, 0xee) // mov al, c; out dx, al
	}
	b = append(b,
		0xf4,       // hlt
		0xeb, 0xfd, // jmp short back to hlt
	)
	b = append(b, make([]byte, 510-len(b))...)
	b = append(b, 0x55, 0xaa)
	return append(b, make([]byte, 1<<20-len(b))...)
}

// reachableDir is a directory libvirt's QEMU user can pass through (the
// test's TempDir is 0700): under /var/tmp, mode 0711.
func reachableDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "strata-libvirt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o711); err != nil {
		t.Fatal(err)
	}
	return d
}

// freeVNCDisplay picks a display whose port is free now. libvirt's own
// choice (autoport) tests ports with SO_REUSEADDR, and so takes 5900
// while a QEMU outside libvirt (the qemu driver's tests) listens on
// 127.0.0.1:5900.
func freeVNCDisplay(t *testing.T) int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port > 5900 && port < 65536 {
			return port - 5900
		}
	}
}

func uniqueName(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "strata-test-" + hex.EncodeToString(b)
}

type env struct {
	t    *testing.T
	d    *libvirt.Driver
	sock string
	dir  string
}

func newEnv(t *testing.T) *env {
	sock := storagetest.Libvirtd(t)
	storagetest.NeedTool(t, "qemu-system-x86_64")
	return &env{t: t, d: libvirt.New(libvirt.Config{Socket: sock}), sock: sock, dir: reachableDir(t)}
}

// guest makes a boot-sector guest with its runtime directory.
func (e *env) guest() *boot.Guest {
	t := e.t
	t.Helper()
	name := uniqueName(t)
	img := filepath.Join(e.dir, name+".img")
	if err := os.WriteFile(img, bootSector(), 0o600); err != nil {
		t.Fatal(err)
	}
	def := &hvm.Guest{Name: name, Memory: hvm.Int(16), Serial: []string{"pty"},
		Disks: []hvm.Disk{{Path: img, Vdev: "hda", Format: "raw"}}}
	def.Display.VNCDisplay = hvm.Int(freeVNCDisplay(t))
	if err := def.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	rd, err := boot.RunDirFor(home, "id-"+name)
	if err != nil {
		t.Fatal(err)
	}
	g := &boot.Guest{ID: "id-" + name, Def: def, Run: rd}
	t.Cleanup(func() { e.remove(name) })
	return g
}

// raw is a plain go-libvirt connection, as another tool (virsh) would use.
func (e *env) raw() *lv.Libvirt {
	e.t.Helper()
	l := lv.NewWithDialer(dialers.NewLocal(dialers.WithSocket(e.sock)))
	if err := l.ConnectToURI(lv.QEMUSystem); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { l.Disconnect() })
	return l
}

// remove destroys and undefines a test domain, whoever made it.
func (e *env) remove(name string) {
	l := lv.NewWithDialer(dialers.NewLocal(dialers.WithSocket(e.sock)))
	if l.ConnectToURI(lv.QEMUSystem) != nil {
		return
	}
	defer l.Disconnect()
	if dm, err := l.DomainLookupByName(name); err == nil {
		l.DomainDestroy(dm)
		l.DomainUndefineFlags(dm, lv.DomainUndefineNvram)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// readUntil reads r until it has seen want, or fails after d.
func readUntil(t *testing.T, r io.Reader, want string, d time.Duration) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 256)
		for {
			n, err := r.Read(b)
			buf.Write(b[:n])
			if strings.Contains(buf.String(), want) || err != nil {
				got <- buf.String()
				return
			}
		}
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("console ended without %q: %q", want, s)
		}
	case <-time.After(d):
		t.Fatalf("no %q on the console within %s", want, d)
	}
}

// The whole life of a guest through libvirt: started paused, its first
// serial line read through the console after resume, paused and resumed,
// a screenshot, and a stop that the guest ignores (a boot sector cannot
// answer ACPI), so it ends with quit after the timeout.
func TestLibvirtGuestLifecycle(t *testing.T) {
	e := newEnv(t)
	g := e.guest()
	c := ctx(t)
	t0 := time.Now()
	st, err := e.d.Start(c, g, boot.StartOptions{Paused: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start (paused) took %s", time.Since(t0))
	if st.State != boot.Paused || st.Driver != "libvirt" || st.Domain != g.Def.Name || st.Accel != "tcg" {
		t.Fatalf("status after start --paused: %+v", st)
	}
	if st.PID <= 0 || !strings.HasPrefix(st.VNC, "127.0.0.1:") || len(st.Disks) != 1 || st.Disks[0] != g.Def.Disks[0].Path {
		t.Fatalf("status lacks pid, vnc or disks: %+v", st)
	}
	rs, err := g.Run.ReadState()
	if err != nil || rs == nil || rs.Driver != "libvirt" || rs.Domain != g.Def.Name || !boot.SameProcess(rs.PID, rs.PIDStart) {
		t.Fatalf("state.json: %+v, %v", rs, err)
	}
	// The domain is strata's: its marker carries the guest's ID.
	x, err := e.raw().DomainGetXMLDesc(lv.Domain{Name: g.Def.Name, UUID: mustLookup(t, e, g.Def.Name).UUID}, 0)
	if err != nil || !strings.Contains(x, `id="`+g.ID+`"`) || !strings.Contains(x, libvirt.MarkerNS) || !strings.Contains(x, "type='qemu'") && !strings.Contains(x, `type="qemu"`) {
		t.Fatalf("live XML lacks the marker or type qemu: %v\n%s", err, x)
	}
	if _, err := e.d.Start(c, g, boot.StartOptions{}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("second start: %v, want a precondition error", err)
	}

	con, err := e.d.Console(c, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.d.Resume(c, g); err != nil {
		t.Fatal(err)
	}
	readUntil(t, con, serialMarker, 20*time.Second)
	con.Close()
	if st, err := e.d.Status(c, g); err != nil || st.State != boot.Running || st.UptimeSeconds <= 0 {
		t.Fatalf("status after resume: %+v, %v", st, err)
	}

	if err := e.d.Pause(c, g); err != nil {
		t.Fatal(err)
	}
	if st, err := e.d.Status(c, g); err != nil || st.State != boot.Paused {
		t.Fatalf("status after pause: %+v, %v", st, err)
	}
	if err := e.d.Pause(c, g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("pause of a paused guest: %v", err)
	}
	if err := e.d.Resume(c, g); err != nil {
		t.Fatal(err)
	}

	var shot bytes.Buffer
	if err := e.d.Screenshot(c, g, &shot); err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(shot.Bytes()))
	if err != nil || cfg.Width < 320 || cfg.Height < 200 {
		t.Fatalf("screenshot is not a screen-sized PNG: %+v, %v", cfg, err)
	}
	if _, err := png.Decode(bytes.NewReader(shot.Bytes())); err != nil {
		t.Fatalf("screenshot does not decode: %v", err)
	}

	t0 = time.Now()
	st, err = e.d.Stop(c, g, boot.StopOptions{Timeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < 1500*time.Millisecond {
		t.Fatalf("stop returned after %s, before the timeout: the boot sector cannot have shut down", took)
	}
	if st.State != boot.Stopped || st.LastStop == nil || st.LastStop.Reason != boot.ReasonQuit {
		t.Fatalf("status after stop: %+v (last stop %+v)", st, st.LastStop)
	}
	if rs, _ := g.Run.ReadState(); rs != nil {
		t.Fatalf("state.json left after stop: %+v", rs)
	}
	if tail := st.LastStop.SerialTail; len(tail) == 0 || !strings.Contains(tail[len(tail)-1], serialMarker) {
		t.Fatalf("stop record's serial tail %q lacks the guest's last line", tail)
	}
	if _, err := e.d.Stop(c, g, boot.StopOptions{}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("stop of a stopped guest: %v", err)
	}
	// The definition stays (persistent, for the admin's virsh) until
	// the guest is deleted.
	mustLookup(t, e, g.Def.Name)
	if err := e.d.Undefine(c, g); err != nil {
		t.Fatal(err)
	}
	if _, err := e.raw().DomainLookupByName(g.Def.Name); err == nil {
		t.Fatal("domain still defined after Undefine")
	}
}

func mustLookup(t *testing.T, e *env, name string) lv.Domain {
	t.Helper()
	dm, err := e.raw().DomainLookupByName(name)
	if err != nil {
		t.Fatalf("domain %q: %v", name, err)
	}
	return dm
}

// A guest destroyed behind strata's back (virsh destroy) is reported
// stopped with the reason libvirt keeps; kill ends a running guest.
func TestLibvirtStatusRecordsStopFromLibvirtReason(t *testing.T) {
	e := newEnv(t)
	g := e.guest()
	c := ctx(t)
	if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.raw().DomainDestroy(mustLookup(t, e, g.Def.Name)); err != nil {
		t.Fatal(err)
	}
	st, err := e.d.Status(c, g)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != boot.Stopped || st.LastStop == nil || st.LastStop.Reason != boot.ReasonKilled || !strings.Contains(st.LastStop.Detail, "not by strata") {
		t.Fatalf("status after virsh destroy: %+v (%+v)", st, st.LastStop)
	}
	if rec, _ := g.Run.ReadStopped(); rec == nil || rec.Reason != boot.ReasonKilled {
		t.Fatalf("stopped.json: %+v", rec)
	}

	if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := g.Run.ReadStopped(); rec != nil {
		t.Fatalf("stopped.json kept over a new start: %+v", rec)
	}
	if err := e.d.Kill(c, g); err != nil {
		t.Fatal(err)
	}
	if st, err := e.d.Status(c, g); err != nil || st.State != boot.Stopped || st.LastStop == nil || st.LastStop.Reason != boot.ReasonKilled {
		t.Fatalf("status after kill: %+v, %v", st, err)
	}
	if err := e.d.Kill(c, g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("kill of a stopped guest: %v", err)
	}
}

// foreignXML is a domain the admin defined: same kind of guest, no
// strata marker.
func foreignXML(name, img string) string {
	return `<domain type='qemu'><name>` + name + `</name><memory unit='MiB'>16</memory>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='` + img + `'/><target dev='hda' bus='ide'/></disk></devices></domain>`
}

// A domain of the guest's name that strata did not define is never
// redefined, started, stopped or undefined.
func TestLibvirtRefusesForeignDomainOfSameName(t *testing.T) {
	e := newEnv(t)
	g := e.guest()
	c := ctx(t)
	l := e.raw()
	other := filepath.Join(e.dir, "other.img")
	if err := os.WriteFile(other, bootSector(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.DomainDefineXML(foreignXML(g.Def.Name, other)); err != nil {
		t.Fatal(err)
	}
	before, _ := l.DomainGetXMLDesc(mustLookup(t, e, g.Def.Name), 0)
	_, err := e.d.Start(c, g, boot.StartOptions{})
	if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "not strata's") {
		t.Fatalf("start over a foreign domain: %v", err)
	}
	for what, err := range map[string]error{"undefine": e.d.Undefine(c, g), "pause": e.d.Pause(c, g), "kill": e.d.Kill(c, g)} {
		if !errors.Is(err, storage.ErrExists) {
			t.Errorf("%s of a foreign domain: %v", what, err)
		}
	}
	if st, err := e.d.Status(c, g); err != nil || st.State != boot.Stopped {
		t.Fatalf("status with a foreign domain: %+v, %v", st, err)
	}
	after, _ := l.DomainGetXMLDesc(mustLookup(t, e, g.Def.Name), 0)
	if before != after {
		t.Fatalf("the foreign domain was changed:\n%s\n---\n%s", before, after)
	}
	if rs, _ := g.Run.ReadState(); rs != nil {
		t.Fatalf("state.json written for a refused start: %+v", rs)
	}
}

// Running lists every running domain on the connection with its disks,
// strata's or not: the in-use check must see the admin's guests too.
func TestLibvirtRunningListsForeignDomainWithDisks(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	name := uniqueName(t)
	img := filepath.Join(e.dir, name+".img")
	if err := os.WriteFile(img, bootSector(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.remove(name) })
	if _, err := e.raw().DomainCreateXML(foreignXML(name, img), 0); err != nil {
		t.Fatal(err)
	}
	rs, err := e.d.Running(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Name == name {
			if len(r.Disks) != 1 || r.Disks[0] != img || r.PID <= 0 {
				t.Fatalf("running domain %+v, want disk %s and a pid", r, img)
			}
			return
		}
	}
	t.Fatalf("foreign domain %q not in %+v", name, rs)
}

// Available answers quickly, with the reason, where no libvirtd listens.
func TestLibvirtAvailableWithoutDaemon(t *testing.T) {
	d := libvirt.New(libvirt.Config{Socket: filepath.Join(t.TempDir(), "none.sock"), ConnectTimeout: 500 * time.Millisecond})
	t0 := time.Now()
	err := d.Available(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("available without a daemon: %v", err)
	}
	if time.Since(t0) > 2*time.Second {
		t.Fatalf("available took %s", time.Since(t0))
	}
	if d.Name() != boot.Libvirt {
		t.Fatal(d.Name())
	}
}

func TestLibvirtFeatures(t *testing.T) {
	g := &hvm.Guest{Name: "g", Serial: []string{"file:/x"}}
	fs := boot.Features(libvirt.New(libvirt.Config{}), g)
	for _, f := range []boot.Feature{boot.Pause, boot.AttachDisk, boot.AttachNIC, boot.ChangeMedia, boot.Screenshot} {
		if !slices.Contains(fs, f) {
			t.Errorf("libvirt lacks %s", f)
		}
	}
	if err := libvirt.New(libvirt.Config{}).Supports(g, boot.Console); !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "pty") {
		t.Errorf("console with a file serial: %v", err)
	}
}

// A guest renamed since it last ran starts under its new name: strata's
// domain under the old name (same UUID) is undefined, not left to make
// libvirt refuse the UUID.
func TestLibvirtRenamedGuestStartsUnderNewName(t *testing.T) {
	e := newEnv(t)
	g := e.guest()
	c := ctx(t)
	if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Kill(c, g); err != nil {
		t.Fatal(err)
	}
	old := g.Def.Name
	g.Def.Name = uniqueName(t)
	t.Cleanup(func() { e.remove(g.Def.Name) })
	st, err := e.d.Start(c, g, boot.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Domain != g.Def.Name {
		t.Fatalf("status %+v", st)
	}
	if _, err := e.raw().DomainLookupByName(old); err == nil {
		t.Fatalf("domain under the old name %q still defined", old)
	}
	if err := e.d.Kill(c, g); err != nil {
		t.Fatal(err)
	}
}
