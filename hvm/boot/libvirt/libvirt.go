// Package libvirt runs guests through a libvirtd on this host, over
// libvirt's RPC protocol (github.com/digitalocean/go-libvirt, no C
// library), with the domain XML hvm/libvirt renders.
//
// Vocabulary: a domain is libvirt's guest; strata's domains carry a marker
// in their <metadata> (<strata:guest id="GUEST-ID"/> in the namespace
// MarkerNS), and the domain's name is the guest's name.
//
// Invariants:
//   - strata acts only on domains that carry its marker with the guest's
//     ID: a domain of the same name without it (the admin's own) is
//     refused, never redefined, stopped or undefined;
//   - domains are defined persistently, so the admin sees them in
//     `virsh list --all`, and libvirt keeps the reason a stopped domain
//     stopped, which Status turns into stopped.json;
//   - the domain type is kvm only where the CPU has vmx or svm and libvirt
//     offers kvm; elsewhere qemu (TCG);
//   - only a local libvirtd (a unix socket) is reached.
//
// go-libvirt's stream calls are broken: when libvirt sends a stream packet
// after go-libvirt stopped reading one (an error, the stream's end), its
// router blocks sending it while holding the lock the caller needs to
// deregister, and the connection hangs for good. Screenshots therefore go
// through virsh; the console, which needs a stream, runs on a connection
// of its own that Close throws away.
package libvirt

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	hvmlibvirt "github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
	"libvirt.org/go/libvirtxml"
)

// MarkerNS is the XML namespace of strata's marker in a domain's metadata.
const MarkerNS = "https://strata-vm.org/xmlns/guest/1"

// Defaults.
const (
	DefaultSocket = "/var/run/libvirt/libvirt-sock"
	DefaultURI    = "qemu:///system"
)

// Config says which libvirtd the driver talks to.
type Config struct {
	// Socket is libvirtd's read-write unix socket (DefaultSocket).
	Socket string
	// URI is the connection URI sent to the daemon (DefaultURI).
	URI string
	// ConnectTimeout bounds opening a connection (2 s): Available must
	// answer quickly where no libvirtd runs.
	ConnectTimeout time.Duration
	// QEMUPidDir is where libvirtd keeps its QEMU pidfiles
	// (/run/libvirt/qemu), read for Status.PID and Running.
	QEMUPidDir string
	// UnplugTimeout is how long a detach waits for the guest to let a
	// device go (DefaultUnplugTimeout); libvirt itself waits 5 s first.
	UnplugTimeout time.Duration
}

// Driver runs guests through libvirt.
type Driver struct {
	cfg Config
}

var _ boot.Driver = (*Driver)(nil)

// New returns a libvirt driver; zero fields of c take the defaults.
func New(c Config) *Driver {
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if c.URI == "" {
		c.URI = DefaultURI
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.QEMUPidDir == "" {
		c.QEMUPidDir = "/run/libvirt/qemu"
	}
	return &Driver{cfg: c}
}

// Name is "libvirt".
func (d *Driver) Name() string { return boot.Libvirt }

// URI is the connection URI the driver asks libvirtd for.
func (d *Driver) URI() string { return d.cfg.URI }

// Available answers nil when the libvirtd answers on its socket.
func (d *Driver) Available(ctx context.Context) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.ConnectGetLibVersion(); err != nil {
		return storage.Errorf(storage.ErrPrecondition, "libvirt at %s does not answer: %v", d.cfg.Socket, err)
	}
	return nil
}

// Supports says what libvirt can do for g.
func (d *Driver) Supports(g *hvm.Guest, f boot.Feature) error {
	switch f {
	case boot.Pause, boot.ChangeMedia:
		return nil
	case boot.AttachDisk, boot.AttachNIC:
		return supportsHotplug(g)
	case boot.Screenshot:
		if !hasDisplay(g) {
			return storage.Errorf(storage.ErrNotSupported, "guest %q has no display (vnc or spice) for libvirt to take a screenshot of", g.Name)
		}
		return nil
	case boot.Console:
		if len(g.Serial) > 0 && g.Serial[0] != "pty" {
			return storage.Errorf(storage.ErrNotSupported, "guest %q: libvirt's console needs the first serial port to be a pty (it is %q): set serial[0] to pty or remove it", g.Name, g.Serial[0])
		}
		return nil
	case boot.LivePoints:
		return nil
	case boot.MemoryState:
		// libvirt's save and restore (memory.go).
		return nil
	}
	return storage.Errorf(storage.ErrNotSupported, "the libvirt driver does not know feature %q", f)
}

func hasDisplay(g *hvm.Guest) bool {
	return g.Display.VNCEnabled() || (g.Display.Spice != nil && g.Display.Spice.Enabled)
}

// domain is a looked-up domain and whether it is the guest's.
type domain struct {
	lv.Domain
	ours    bool
	foreign string // why it is not ours
}

// lookup finds the domain named after g; ok is false when none exists.
func (d *Driver) lookup(c *conn, g *boot.Guest) (dom domain, ok bool, err error) {
	dm, err := c.DomainLookupByName(g.Def.Name)
	if libvirtCode(err) == lv.ErrNoDomain {
		return dom, false, nil
	}
	if err != nil {
		return dom, false, fmt.Errorf("libvirt: look up domain %q: %w", g.Def.Name, err)
	}
	dom.Domain = dm
	id, err := markerOf(c, dm)
	if err != nil {
		return dom, true, err
	}
	switch {
	case id == g.ID:
		dom.ours = true
	case id == "":
		dom.foreign = fmt.Sprintf("libvirt domain %q is not strata's (no strata marker in its metadata)", dm.Name)
	default:
		dom.foreign = fmt.Sprintf("libvirt domain %q belongs to another strata guest (id %s)", dm.Name, id)
	}
	return dom, true, nil
}

// mine looks up g's domain and refuses one that is not strata's guest g.
// ok is false when no domain exists.
func (d *Driver) mine(c *conn, g *boot.Guest) (domain, bool, error) {
	dom, ok, err := d.lookup(c, g)
	if err != nil || !ok {
		return dom, ok, err
	}
	if !dom.ours {
		return dom, true, storage.Errorf(storage.ErrExists, "%s: strata does not touch it; rename the guest or the domain", dom.foreign)
	}
	return dom, true, nil
}

type marker struct {
	XMLName xml.Name `xml:"guest"`
	ID      string   `xml:"id,attr"`
}

func markerOf(c *conn, dm lv.Domain) (string, error) {
	s, err := c.DomainGetMetadata(dm, int32(lv.DomainMetadataElement), lv.OptString{MarkerNS}, lv.DomainAffectCurrent)
	if libvirtCode(err) == lv.ErrNoDomainMetadata {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("libvirt: read the metadata of domain %q: %w", dm.Name, err)
	}
	var m marker
	if err := xml.Unmarshal([]byte(s), &m); err != nil {
		return "", nil
	}
	return m.ID, nil
}

// domainXML renders g for libvirt with strata's marker and a pty console.
func (d *Driver) domainXML(c *conn, g *boot.Guest) (string, string, error) {
	dx, err := hvmlibvirt.Domain(g.Def, hvmlibvirt.KVM)
	if err != nil {
		return "", "", err
	}
	accel := d.accel(c)
	dx.Type = map[string]string{"kvm": "kvm", "tcg": "qemu"}[accel]
	var buf bytes.Buffer
	buf.WriteString(`<strata:guest xmlns:strata="` + MarkerNS + `" id="`)
	if err := xml.EscapeText(&buf, []byte(g.ID)); err != nil {
		return "", "", err
	}
	buf.WriteString(`"/>`)
	dx.Metadata = &libvirtxml.DomainMetadata{XML: buf.String()}
	if len(dx.Devices.Serials) == 0 {
		// The console and the first serial line need a port.
		dx.Devices.Serials = []libvirtxml.DomainSerial{{
			Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
			Target: &libvirtxml.DomainSerialTarget{Port: new(uint)},
		}}
	}
	if s0 := &dx.Devices.Serials[0]; s0.Source != nil && s0.Source.Pty != nil && s0.Log == nil {
		// virtlogd (root) writes it: the runtime directory stays
		// closed to QEMU's user.
		s0.Log = &libvirtxml.DomainChardevLog{File: g.Run.Path(SerialLog), Append: "off"}
	}
	s, err := dx.Marshal()
	return s, accel, err
}

// SerialLog is the file in the runtime directory where the first serial
// port's output is kept (written by libvirt's virtlogd).
const SerialLog = "serial.log"

// serialTail returns the last n lines of the guest's serial log.
func serialTail(g *boot.Guest, n int) []string {
	f, err := os.Open(g.Run.Path(SerialLog))
	if err != nil {
		return nil
	}
	defer f.Close()
	const max = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// accel is kvm where the CPU can virtualise and libvirt offers kvm, else
// tcg: /dev/kvm alone may be a slow software backend.
func (d *Driver) accel(c *conn) string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil || !(bytes.Contains(b, []byte(" vmx")) || bytes.Contains(b, []byte(" svm"))) {
		return "tcg"
	}
	caps, err := c.ConnectGetCapabilities()
	if err != nil || !strings.Contains(caps, "<domain type='kvm'") {
		return "tcg"
	}
	return "kvm"
}

// mineStopped is strata's domain of g (existed: libvirt knows it), which
// must not be running: a start or a restore is refused then.
func (d *Driver) mineStopped(c *conn, g *boot.Guest) (dom domain, existed bool, err error) {
	dom, existed, err = d.mine(c, g)
	if err != nil || !existed {
		return dom, existed, err
	}
	st, _, err := c.DomainGetState(dom.Domain, 0)
	if err != nil {
		return dom, existed, fmt.Errorf("libvirt: state of domain %q: %w", dom.Name, err)
	}
	if live(lv.DomainState(st)) {
		return dom, existed, storage.Errorf(storage.ErrPrecondition, "guest %q is already running (libvirt domain %q)", g.Def.Name, dom.Name)
	}
	return dom, existed, nil
}

// Start defines the guest's domain (replacing strata's earlier definition
// of it) and starts it.
func (d *Driver) Start(ctx context.Context, g *boot.Guest, o boot.StartOptions) (boot.Status, error) {
	if o.FromState != "" {
		return d.restore(ctx, g, o.FromState, o)
	}
	c, err := d.connect(ctx)
	if err != nil {
		return boot.Status{}, err
	}
	defer c.close()
	_, existed, err := d.mineStopped(c, g)
	if err != nil {
		return boot.Status{}, err
	}
	if err := d.forgetOldName(c, g); err != nil {
		return boot.Status{}, err
	}
	if err := d.cephSecrets(ctx, c, g.Def); err != nil {
		return boot.Status{}, err
	}
	x, accel, err := d.domainXML(c, g)
	if err != nil {
		return boot.Status{}, err
	}
	before := owners(g)
	dm, err := c.DomainDefineXMLFlags(x, lv.DomainDefineValidate)
	if err != nil {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "libvirt refused guest %q's definition: %v", g.Def.Name, err)
	}
	var flags uint32
	if o.Paused {
		flags |= uint32(lv.DomainStartPaused)
	}
	started := time.Now().UTC()
	if _, err := c.DomainCreateWithFlags(dm, flags); err != nil {
		if !existed {
			// Nothing changed: the definition goes with the failed start.
			c.DomainUndefineFlags(dm, lv.DomainUndefineNvram)
		}
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "libvirt could not start guest %q: %v%s%s", g.Def.Name, err, permissionHint(err, g.Def), cephConfHint(err))
	}
	rs := boot.RunState{Driver: boot.Libvirt, Domain: dm.Name, Accel: accel, Started: started,
		Extra: map[string]string{"uuid": uuidString(dm.UUID)}}
	return d.recordRun(c, g, dm, rs, before)
}

// recordRun records a domain that a start or a restore just ran: its
// QEMU's pid (with its start time), its VNC address and the files libvirt
// lent its QEMU user (before: their owners before), in the guest's run
// state; the last stop record goes.
func (d *Driver) recordRun(c *conn, g *boot.Guest, dm lv.Domain, rs boot.RunState, before map[string][2]int) (boot.Status, error) {
	if pid := d.pid(dm.Name); pid > 0 {
		rs.PID = pid
		// Without a start time (QEMU gone already) the pid alone is
		// recorded; status then finds it gone.
		rs.PIDStart, _ = boot.ProcStart(pid)
	}
	if lx, err := liveXML(c, dm); err == nil {
		rs.VNC = vncAddr(lx)
		recordLent(&rs, lx, before)
	}
	if err := g.Run.WriteState(rs); err != nil {
		return boot.Status{}, err
	}
	if err := g.Run.ClearStopped(); err != nil {
		return boot.Status{}, err
	}
	return d.status(c, g)
}

// forgetOldName undefines strata's stopped domain of a guest renamed
// since it last ran (same UUID and marker, old name): libvirt refuses a
// second domain with the UUID.
func (d *Driver) forgetOldName(c *conn, g *boot.Guest) error {
	raw, err := hex.DecodeString(strings.ReplaceAll(g.Def.UUID, "-", ""))
	if err != nil || len(raw) != lv.UUIDBuflen {
		return nil // no UUID: libvirt makes one, nothing to collide with
	}
	var u lv.UUID
	copy(u[:], raw)
	dm, err := c.DomainLookupByUUID(u)
	if err != nil || dm.Name == g.Def.Name {
		return nil
	}
	id, err := markerOf(c, dm)
	if err != nil {
		return err
	}
	if id != g.ID {
		return storage.Errorf(storage.ErrExists, "libvirt domain %q already has guest %q's UUID %s and is not its strata domain: strata does not touch it", dm.Name, g.Def.Name, g.Def.UUID)
	}
	st, _, err := c.DomainGetState(dm, 0)
	if err != nil {
		return fmt.Errorf("libvirt: state of domain %q: %w", dm.Name, err)
	}
	if live(lv.DomainState(st)) {
		return storage.Errorf(storage.ErrPrecondition, "guest %q is already running under its old name (libvirt domain %q)", g.Def.Name, dm.Name)
	}
	if err := c.DomainUndefineFlags(dm, lv.DomainUndefineNvram|lv.DomainUndefineManagedSave); err != nil {
		return fmt.Errorf("libvirt: undefine domain %q (the guest's old name): %w", dm.Name, err)
	}
	return nil
}

// permissionHint names the first directory on a disk's path that others
// (libvirt's QEMU user) cannot traverse, when libvirt's error is a
// permission denial.
func permissionHint(err error, g *hvm.Guest) string {
	if !strings.Contains(err.Error(), "Permission denied") {
		return ""
	}
	for _, k := range g.Disks {
		kind, src := k.Source()
		if kind != hvm.SourcePath {
			continue
		}
		for dir := filepath.Dir(src); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
			if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o001 == 0 {
				return fmt.Sprintf(" (libvirt runs QEMU as its own user, which cannot pass through %s (mode %o): chmod o+x it, or open the state home with this strata once to fix strata's own directories)", dir, st.Mode().Perm())
			}
		}
	}
	return ""
}

func uuidString(u lv.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func live(s lv.DomainState) bool {
	return s == lv.DomainRunning || s == lv.DomainPaused || s == lv.DomainBlocked ||
		s == lv.DomainShutdown || s == lv.DomainCrashed || s == lv.DomainPmsuspended
}

// running looks up g's domain and refuses when it is not running.
// onRunning connects and runs fn on the guest's live domain (an error
// when it does not run).
func (d *Driver) onRunning(ctx context.Context, g *boot.Guest, fn func(c *conn, dm lv.Domain, st lv.DomainState) error) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	dm, st, err := d.running(c, g)
	if err != nil {
		return err
	}
	return fn(c, dm, st)
}

func (d *Driver) running(c *conn, g *boot.Guest) (lv.Domain, lv.DomainState, error) {
	dom, ok, err := d.mine(c, g)
	if err != nil {
		return lv.Domain{}, 0, err
	}
	if !ok {
		return lv.Domain{}, 0, storage.Errorf(storage.ErrPrecondition, "guest %q is not running (libvirt has no domain %q)", g.Def.Name, g.Def.Name)
	}
	st, _, err := c.DomainGetState(dom.Domain, 0)
	if err != nil {
		return lv.Domain{}, 0, fmt.Errorf("libvirt: state of domain %q: %w", dom.Name, err)
	}
	if !live(lv.DomainState(st)) {
		return lv.Domain{}, 0, storage.Errorf(storage.ErrPrecondition, "guest %q is not running", g.Def.Name)
	}
	return dom.Domain, lv.DomainState(st), nil
}

// Stop asks the guest to shut down (ACPI power button), waits up to
// o.Timeout, then destroys it; with o.Force it destroys it at once.
func (d *Driver) Stop(ctx context.Context, g *boot.Guest, o boot.StopOptions) (boot.Status, error) {
	c, err := d.connect(ctx)
	if err != nil {
		return boot.Status{}, err
	}
	defer c.close()
	dm, _, err := d.running(c, g)
	if err != nil {
		return boot.Status{}, err
	}
	if o.Force {
		if err := d.destroy(c, g, dm, boot.ReasonKilled, "stop --force"); err != nil {
			return boot.Status{}, err
		}
		return d.status(c, g)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	pressed := 0
	press := func() error {
		pressed++
		err := c.DomainShutdownFlags(dm, lv.DomainShutdownAcpiPowerBtn)
		if err != nil && libvirtCode(err) != lv.ErrOperationInvalid {
			return fmt.Errorf("libvirt: shut down domain %q: %w", dm.Name, err)
		}
		return nil
	}
	if err := press(); err != nil {
		return boot.Status{}, err
	}
	for time.Now().Before(deadline) {
		st, reason, err := c.DomainGetState(dm, 0)
		if err != nil {
			return boot.Status{}, fmt.Errorf("libvirt: state of domain %q: %w", dm.Name, err)
		}
		if !live(lv.DomainState(st)) {
			rec := stopRecord(lv.DomainState(st), reason)
			if rec.Reason == boot.ReasonPoweroff {
				rec.Reason = boot.ReasonShutdown
			}
			if err := d.recordStop(c, g, rec); err != nil {
				return boot.Status{}, err
			}
			return d.status(c, g)
		}
		// Windows may ignore the first press while it boots.
		if pressed == 1 && time.Until(deadline) < timeout/2 {
			if err := press(); err != nil {
				return boot.Status{}, err
			}
		}
		select {
		case <-ctx.Done():
			return boot.Status{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := d.destroy(c, g, dm, boot.ReasonQuit, fmt.Sprintf("no shutdown within %s", timeout)); err != nil {
		return boot.Status{}, err
	}
	return d.status(c, g)
}

func (d *Driver) destroy(c *conn, g *boot.Guest, dm lv.Domain, reason, detail string) error {
	err := c.DomainDestroyFlags(dm, 0)
	if err != nil && libvirtCode(err) != lv.ErrOperationInvalid {
		return fmt.Errorf("libvirt: destroy domain %q: %w", dm.Name, err)
	}
	return d.recordStop(c, g, boot.StopRecord{At: time.Now().UTC(), Reason: reason, Detail: detail})
}

// recordStop writes the stop record, forgets the run and gives back the
// files libvirt lent the guest and keeps.
func (d *Driver) recordStop(c *conn, g *boot.Guest, rec boot.StopRecord) error {
	rec.SerialTail = serialTail(g, 10)
	rs, _ := g.Run.ReadState()
	if err := g.Run.WriteStopped(rec); err != nil {
		return err
	}
	if err := g.Run.ClearState(); err != nil {
		return err
	}
	d.giveBack(c, rs)
	return nil
}

// Kill destroys the guest's domain at once.
func (d *Driver) Kill(ctx context.Context, g *boot.Guest) error {
	return d.onRunning(ctx, g, func(c *conn, dm lv.Domain, _ lv.DomainState) error {
		return d.destroy(c, g, dm, boot.ReasonKilled, "kill")
	})
}

// Pause suspends the guest's vCPUs.
func (d *Driver) Pause(ctx context.Context, g *boot.Guest) error {
	return d.onRunning(ctx, g, func(c *conn, dm lv.Domain, st lv.DomainState) error {
		if st == lv.DomainPaused {
			return storage.Errorf(storage.ErrPrecondition, "guest %q is already paused", g.Def.Name)
		}
		if err := c.DomainSuspend(dm); err != nil {
			return fmt.Errorf("libvirt: suspend domain %q: %w", dm.Name, err)
		}
		return nil
	})
}

// Resume continues a paused guest.
func (d *Driver) Resume(ctx context.Context, g *boot.Guest) error {
	return d.onRunning(ctx, g, func(c *conn, dm lv.Domain, st lv.DomainState) error {
		if st != lv.DomainPaused {
			return storage.Errorf(storage.ErrPrecondition, "guest %q is not paused", g.Def.Name)
		}
		if err := c.DomainResume(dm); err != nil {
			return fmt.Errorf("libvirt: resume domain %q: %w", dm.Name, err)
		}
		return nil
	})
}

// Status reports the guest's state from libvirt. A domain that stopped
// since strata started it gets its stop record from libvirt's reason.
func (d *Driver) Status(ctx context.Context, g *boot.Guest) (boot.Status, error) {
	c, err := d.connect(ctx)
	if err != nil {
		return boot.Status{}, err
	}
	defer c.close()
	return d.status(c, g)
}

func (d *Driver) status(c *conn, g *boot.Guest) (boot.Status, error) {
	s := boot.Status{Guest: g.Def.Name, State: boot.Stopped}
	rs, err := g.Run.ReadState()
	if err != nil {
		return s, err
	}
	if rs != nil && rs.Driver != boot.Libvirt {
		rs = nil // another driver's run: not ours to judge
	}
	dom, ok, err := d.lookup(c, g)
	if err != nil {
		return s, err
	}
	var st lv.DomainState
	var reason int32
	if ok && dom.ours {
		var raw int32
		raw, reason, err = c.DomainGetState(dom.Domain, 0)
		if err != nil {
			return s, fmt.Errorf("libvirt: state of domain %q: %w", dom.Name, err)
		}
		st = lv.DomainState(raw)
	}
	if !ok || !dom.ours || !live(st) {
		if rs != nil {
			rec := boot.StopRecord{At: time.Now().UTC(), Reason: boot.ReasonDied, Detail: fmt.Sprintf("libvirt has no domain %q any more", g.Def.Name)}
			if ok && dom.ours {
				rec = stopRecord(st, reason)
			}
			if err := d.recordStop(c, g, rec); err != nil {
				return s, err
			}
		}
		s.LastStop, err = g.Run.ReadStopped()
		return s, err
	}
	s.Driver, s.Domain = boot.Libvirt, dom.Name
	switch {
	case st == lv.DomainCrashed, st == lv.DomainPaused && lv.DomainPausedReason(reason) == lv.DomainPausedCrashed:
		s.State = boot.Crashed
	case st == lv.DomainPaused, st == lv.DomainPmsuspended:
		s.State = boot.Paused
	case st == lv.DomainShutdown:
		s.State = boot.Stopping
	default:
		s.State = boot.Running
	}
	if rs != nil {
		s.Accel, s.Started = rs.Accel, rs.Started
		s.UptimeSeconds = time.Since(rs.Started).Seconds()
	}
	s.PID = d.pid(dom.Name)
	if lx, err := liveXML(c, dom.Domain); err == nil {
		s.VNC = vncAddr(lx)
		s.Disks = diskPaths(lx)
		if s.Accel == "" {
			s.Accel = map[string]string{"kvm": "kvm", "qemu": "tcg"}[lx.Type]
		}
	}
	return s, nil
}

// stopRecord turns libvirt's state and reason for a stopped domain into
// strata's stop record.
func stopRecord(st lv.DomainState, reason int32) boot.StopRecord {
	rec := boot.StopRecord{At: time.Now().UTC()}
	if st != lv.DomainShutoff {
		rec.Reason, rec.Detail = boot.ReasonDied, fmt.Sprintf("libvirt state %d", st)
		return rec
	}
	switch lv.DomainShutoffReason(reason) {
	case lv.DomainShutoffShutdown:
		rec.Reason = boot.ReasonPoweroff
	case lv.DomainShutoffDestroyed:
		rec.Reason, rec.Detail = boot.ReasonKilled, "destroyed through libvirt, not by strata"
	case lv.DomainShutoffCrashed:
		rec.Reason = boot.ReasonCrash
	case lv.DomainShutoffFailed:
		rec.Reason, rec.Detail = boot.ReasonDied, "libvirt: the domain failed to start"
	case lv.DomainShutoffDaemon:
		rec.Reason, rec.Detail = boot.ReasonDied, "libvirt: stopped by the daemon"
	case lv.DomainShutoffSaved:
		rec.Reason, rec.Detail = boot.ReasonDied, "libvirt: saved to a file (if by a memory point strata was interrupted in, strata doctor --repair finishes the point and resumes the guest)"
	case lv.DomainShutoffMigrated:
		rec.Reason, rec.Detail = boot.ReasonDied, "libvirt: migrated to another host"
	default:
		rec.Reason, rec.Detail = boot.ReasonDied, fmt.Sprintf("libvirt shutoff reason %d", reason)
	}
	return rec
}

func liveXML(c *conn, dm lv.Domain) (*libvirtxml.Domain, error) {
	s, err := c.DomainGetXMLDesc(dm, 0)
	if err != nil {
		return nil, err
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(s); err != nil {
		return nil, err
	}
	return &x, nil
}

// vncAddr is the live VNC console's host:port.
func vncAddr(x *libvirtxml.Domain) string {
	if x.Devices == nil {
		return ""
	}
	for _, gr := range x.Devices.Graphics {
		if v := gr.VNC; v != nil && v.Port > 0 {
			host := v.Listen
			for _, l := range v.Listeners {
				if l.Address != nil && l.Address.Address != "" {
					host = l.Address.Address
				}
			}
			if host == "" {
				host = "127.0.0.1"
			}
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			return host + ":" + strconv.Itoa(v.Port)
		}
	}
	return ""
}

// diskPaths lists the host files and block devices a domain has open,
// its disks' backing chains included (open read-only).
func diskPaths(x *libvirtxml.Domain) []string {
	if x.Devices == nil {
		return nil
	}
	var out []string
	add := func(s *libvirtxml.DomainDiskSource) {
		switch {
		case s == nil:
		case s.File != nil && s.File.File != "":
			out = append(out, s.File.File)
		case s.Block != nil && s.Block.Dev != "":
			out = append(out, s.Block.Dev)
		}
	}
	for _, k := range x.Devices.Disks {
		add(k.Source)
		for b := k.BackingStore; b != nil; b = b.BackingStore {
			add(b.Source)
		}
	}
	return out
}

// pid reads libvirtd's pidfile for the domain's QEMU.
func (d *Driver) pid(name string) int {
	b, err := os.ReadFile(filepath.Join(d.cfg.QEMUPidDir, name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Running lists every active domain on the connection, strata's or not,
// with the disks its live XML names.
func (d *Driver) Running(ctx context.Context) ([]boot.RunningGuest, error) {
	c, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return d.listRunning(c)
}

func (d *Driver) listRunning(c *conn) ([]boot.RunningGuest, error) {
	doms, _, err := c.ConnectListAllDomains(1, lv.ConnectListDomainsActive)
	if err != nil {
		return nil, fmt.Errorf("libvirt: list domains: %w", err)
	}
	var out []boot.RunningGuest
	for _, dm := range doms {
		x, err := liveXML(c, dm)
		if libvirtCode(err) == lv.ErrNoDomain {
			continue // stopped meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("libvirt: XML of domain %q: %w", dm.Name, err)
		}
		out = append(out, boot.RunningGuest{Name: dm.Name, Domain: uuidString(dm.UUID), PID: d.pid(dm.Name), Disks: diskPaths(x)})
	}
	return out, nil
}

// Screenshot writes the guest's screen as PNG: libvirt's QEMU driver
// hands over a PPM, which is converted. It runs virsh (libvirt's own
// client), not go-libvirt's DomainScreenshot: that stream call deadlocks
// the connection when libvirt sends a packet after go-libvirt stopped
// reading (its callback blocks holding the lock the caller's deregister
// needs), and the screenshot then hangs for ever.
func (d *Driver) Screenshot(ctx context.Context, g *boot.Guest, w io.Writer) error {
	if err := d.Supports(g.Def, boot.Screenshot); err != nil {
		return err
	}
	return d.onRunning(ctx, g, func(c *conn, dm lv.Domain, _ lv.DomainState) error {
		tmp := g.Run.Path("screenshot.tmp")
		os.Remove(tmp)
		defer os.Remove(tmp)
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := run.Output(sctx, "virsh", "-q", "-c", d.virshURI(), "screenshot", "--domain", dm.Name, "--file", tmp); err != nil {
			return fmt.Errorf("libvirt: screenshot of domain %q: %w", dm.Name, err)
		}
		b, err := os.ReadFile(tmp)
		if err != nil {
			return err
		}
		if err := boot.WritePNG(b, w); err != nil {
			return fmt.Errorf("libvirt: screenshot of domain %q: %w", dm.Name, err)
		}
		return nil
	})
}

// virshURI is the connection URI that reaches the driver's daemon from
// virsh: the socket given in the URI when it is not the default one.
func (d *Driver) virshURI() string {
	if d.cfg.Socket == DefaultSocket {
		return d.cfg.URI
	}
	u := d.cfg.URI
	if i := strings.Index(u, ":///"); i > 0 && !strings.Contains(u[:i], "+") {
		u = u[:i] + "+unix" + u[i:]
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "socket=" + url.QueryEscape(d.cfg.Socket)
}

// Console connects to the guest's first serial port through libvirt's
// console stream, on a connection of its own that Close ends.
func (d *Driver) Console(ctx context.Context, g *boot.Guest) (io.ReadWriteCloser, error) {
	if err := d.Supports(g.Def, boot.Console); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c, err := d.connect(cctx)
	if err != nil {
		cancel()
		return nil, err
	}
	dm, _, err := d.running(c, g)
	if err != nil {
		c.close()
		cancel()
		return nil, err
	}
	inR, inW := io.Pipe()   // what the user types, to the guest
	outR, outW := io.Pipe() // what the guest writes
	con := &console{r: outR, w: inW, done: make(chan struct{})}
	con.end = func() {
		inW.Close()
		c.close()
		cancel()
	}
	go func() {
		defer close(con.done)
		err := c.DomainOpenConsoleBidirectional(dm, nil, inR, outW, 0)
		if err == nil {
			err = io.EOF
		}
		outW.CloseWithError(err)
	}()
	return con, nil
}

type console struct {
	r    *io.PipeReader
	w    *io.PipeWriter
	end  func()
	done chan struct{}
}

func (c *console) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *console) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *console) Close() error {
	c.end()
	c.r.Close()
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
	}
	return nil
}

// Undefine removes the guest's stopped domain from libvirt, only when it
// is strata's (the guest is being deleted). A missing domain is not an
// error; a running one is refused.
func (d *Driver) Undefine(ctx context.Context, g *boot.Guest) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	dom, ok, err := d.mine(c, g)
	if err != nil || !ok {
		return err
	}
	st, _, err := c.DomainGetState(dom.Domain, 0)
	if err != nil {
		return fmt.Errorf("libvirt: state of domain %q: %w", dom.Name, err)
	}
	if live(lv.DomainState(st)) {
		return storage.Errorf(storage.ErrInUse, "guest %q is running (libvirt domain %q): stop it first", g.Def.Name, dom.Name)
	}
	if err := c.DomainUndefineFlags(dom.Domain, lv.DomainUndefineNvram|lv.DomainUndefineManagedSave); err != nil {
		return fmt.Errorf("libvirt: undefine domain %q: %w", dom.Name, err)
	}
	return nil
}

// ChangeMedia implements boot.MediaChanger: the CD-ROM drive's disk
// element, rendered as for a start with the new source (none to eject),
// updated on the live domain. libvirt lends the new image to its QEMU
// user as it does at start.
func (d *Driver) ChangeMedia(ctx context.Context, g *boot.Guest, vdev, path string) error {
	def := *g.Def
	def.Disks = append([]hvm.Disk(nil), g.Def.Disks...)
	found := false
	for i := range def.Disks {
		if def.Disks[i].Vdev == vdev && def.Disks[i].CDROM {
			def.Disks[i].Volume, def.Disks[i].Media, def.Disks[i].Device = "", "", ""
			def.Disks[i].Path, def.Disks[i].Format = path, "raw"
			found = true
		}
	}
	if !found {
		return storage.Errorf(storage.ErrInvalid, "guest %q has no CD-ROM drive %s", g.Def.Name, vdev)
	}
	dx, err := hvmlibvirt.Domain(&def, hvmlibvirt.KVM)
	if err != nil {
		return err
	}
	var disk *libvirtxml.DomainDisk
	for i := range dx.Devices.Disks {
		if t := dx.Devices.Disks[i].Target; t != nil && t.Dev == vdev {
			disk = &dx.Devices.Disks[i]
		}
	}
	if disk == nil {
		return storage.Errorf(storage.ErrInvalid, "guest %q: drive %s is not in its domain", g.Def.Name, vdev)
	}
	x, err := disk.Marshal()
	if err != nil {
		return err
	}
	return d.onRunning(ctx, g, func(c *conn, dm lv.Domain, _ lv.DomainState) error {
		if err := c.DomainUpdateDeviceFlags(dm, x, lv.DomainDeviceModifyLive|lv.DomainDeviceModifyForce); err != nil {
			return storage.Errorf(storage.ErrPrecondition, "libvirt: change the medium in %s of domain %q: %w", vdev, dm.Name, err)
		}
		return nil
	})
}
