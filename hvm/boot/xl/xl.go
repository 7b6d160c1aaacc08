// Package xl runs guests under Xen through its toolstack's command line,
// xl (libxl). strata renders the guest's xl.cfg into the guest's runtime
// directory and drives the domain with xl commands; it never talks to
// libxl or QEMU directly (libxl owns the device model's QMP socket).
//
// Vocabulary: a domain is the running Xen guest; its domid is the number
// Xen gave it at creation. A guest that reboots under on_reboot=restart is
// created again by xl's monitor process with a new domid and the same
// name, so the driver finds a guest's domain by name (`xl list`) and then
// acts on the domid it found, never on the name (xl reads an all-digit name
// as a domid).
//
// Invariants: secrets (vncpasswd, spicepasswd) go into the config file in
// the root-only runtime directory, never onto xl's command line; the config
// file is removed when the guest stops. The raw output of `xl list -l`,
// which holds those passwords too, is parsed (storage/inuse/xllist) and
// never logged.
//
// Xen cannot run on the machines strata is tested on: the command runner
// is injectable (Config.Run), and the tests check the exact argv of every
// command and the parsing of recorded xl output (testdata/xl).
package xl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/inuse/xllist"
	"github.com/strata-vm/strata/storage/run"
)

// Runner runs a command and returns its stdout; a failure is a *run.Error
// carrying stderr and the exit code (run.Output is the default).
type Runner func(ctx context.Context, argv ...string) ([]byte, error)

// Defaults for Config.
const (
	DefaultBinary       = "xl"
	DefaultXenstoreRead = "xenstore-read"
	DefaultLogDir       = "/var/log/xen"
	DefaultProbeTimeout = 5 * time.Second
	// DefaultStopTimeout is how long a guest has to shut down when
	// StopOptions.Timeout is zero.
	DefaultStopTimeout = 2 * time.Minute
)

// ConfigFile is the name of the rendered xl.cfg in the guest's runtime
// directory, present while the guest runs.
const ConfigFile = "xl.cfg"

// Config configures the driver; the zero value is the host's xl.
type Config struct {
	// Binary is the xl program (default "xl", looked up on PATH).
	Binary string
	// XenstoreRead is xenstore-read (default "xenstore-read"): the VNC
	// port QEMU chose (vncunused) and the serial console's pty are only
	// in xenstore.
	XenstoreRead string
	// LogDir is where xl's monitor writes xl-NAME.log (default
	// /var/log/xen, Xen's XEN_LOG_DIR); it tells why a domain stopped.
	LogDir string
	// Run runs commands (default run.Output).
	Run Runner
	// ProbeTimeout bounds `xl info` in Available (default 5 s).
	ProbeTimeout time.Duration
}

// Driver runs guests through xl.
type Driver struct {
	c        Config
	probe    sync.Once
	probeErr error
}

var _ boot.Driver = (*Driver)(nil)

// New returns the xl driver.
func New(c Config) *Driver {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.XenstoreRead == "" {
		c.XenstoreRead = DefaultXenstoreRead
	}
	if c.LogDir == "" {
		c.LogDir = DefaultLogDir
	}
	if c.Run == nil {
		c.Run = run.Output
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	return &Driver{c: c}
}

// Name implements boot.Driver.
func (d *Driver) Name() string { return boot.XL }

func (d *Driver) xl(ctx context.Context, args ...string) ([]byte, error) {
	return d.c.Run(ctx, append([]string{d.c.Binary}, args...)...)
}

// Available implements boot.Driver: `xl info` must succeed within
// ProbeTimeout. It is asked once per Driver (one strata command).
func (d *Driver) Available(ctx context.Context) error {
	d.probe.Do(func() {
		pctx, cancel := context.WithTimeout(ctx, d.c.ProbeTimeout)
		defer cancel()
		_, err := d.xl(pctx, "info")
		if err != nil && pctx.Err() != nil && ctx.Err() == nil {
			d.probeErr = storage.Errorf(storage.ErrPrecondition, "xl info did not answer within %s (is xenstored hung?)", d.c.ProbeTimeout)
			return
		}
		d.probeErr = availability(err)
	})
	return d.probeErr
}

func availability(err error) error {
	if err == nil {
		return nil
	}
	var re *run.Error
	if !errors.As(err, &re) {
		// run could not start it: not installed.
		return storage.Errorf(storage.ErrPrecondition, "xl is not installed (Xen's toolstack; Debian: xen-utils-common on a host booted under Xen)")
	}
	if k := Classify(err, "xl info"); errors.Is(k, storage.ErrPrecondition) {
		return k
	}
	return storage.Errorf(storage.ErrPrecondition, "xl info failed: %s", lastLine(re.Stderr, err))
}

var (
	// Texts xl and libxl print when the domain asked for does not exist
	// (xl_utils.c find_domain, xl_info.c main_list and main_domid,
	// libxl__destroy_domid, ERROR_DOMAIN_NOTFOUND = -21).
	notFoundRe = lazyRegexp(`is an invalid domain identifier|Error: Domain '.*' does not exist|maybe this domain does not exist|Non-existant domain|failed \(rc=-21\)`)
	// Texts of a host not running Xen, or without xenstored
	// (libxl_ctx_alloc; xencall and, before Xen 4.7, libxc).
	noXenRe       = lazyRegexp(`Could not obtain handle on privileged command interface|cannot open libxc handle`)
	noXenstoreRe  = lazyRegexp(`cannot connect to xenstore`)
	noContextRe   = lazyRegexp(`cannot init xl context`)
	nameExistsRe  = lazyRegexp(`Domain with name ".*" already exists`)
	shutdownLogRe = lazyRegexp(`^Domain (\d+) has shut down, reason code (-?\d+)`)
	actionLogRe   = lazyRegexp(`^Action for shutdown reason code -?\d+ is (\S+)`)
	destroyedRe   = lazyRegexp(`^Domain (\d+) has been destroyed\.`)
	waitingRe     = lazyRegexp(`^Waiting for domain .* \(domid (\d+)\) to die`)
	ptyRe         = lazyRegexp(`^/dev/pts/[0-9]+$`)
)

// lazyRegexp compiles a pattern when first used, not at start-up: every
// strata command links this package (compiling these took 0.15 ms of each
// command's start).
func lazyRegexp(pattern string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })
}

// Classify turns a failed xl command into strata's error kinds: a domain
// that does not exist is storage.ErrNotFound, a host where xl cannot reach
// Xen is storage.ErrPrecondition saying what is missing, a domain name
// already taken is storage.ErrExists. Other failures are returned as they
// are (argv, exit code and stderr kept). what says what was being done.
func Classify(err error, what string) error {
	var re *run.Error
	if err == nil || !errors.As(err, &re) {
		return err
	}
	s := re.Stderr
	switch {
	case noXenRe().MatchString(s):
		return storage.Errorf(storage.ErrPrecondition, "%s: xl cannot reach Xen: this host is not running under the Xen hypervisor (no privcmd device; boot Xen, or choose another driver)", what)
	case noXenstoreRe().MatchString(s):
		return storage.Errorf(storage.ErrPrecondition, "%s: xl cannot reach xenstored: start Xen's daemons (xencommons)", what)
	case noContextRe().MatchString(s):
		return storage.Errorf(storage.ErrPrecondition, "%s: xl cannot reach Xen: %s", what, lastLine(s, err))
	case nameExistsRe().MatchString(s):
		return storage.Errorf(storage.ErrExists, "%s: %s", what, strings.TrimSpace(nameExistsRe().FindString(s)))
	case notFoundRe().MatchString(lastLine(s, err)):
		// Only the last line: a failed create ends with libxl's clean-up
		// of a domain that never came to be ("Non-existant domain").
		return storage.Errorf(storage.ErrNotFound, "%s: the Xen domain does not exist (%s)", what, lastLine(s, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func lastLine(stderr string, err error) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return err.Error()
}

// lookup finds the domain named name in `xl list`.
func (d *Driver) lookup(ctx context.Context, name string) (xllist.Entry, bool, error) {
	out, err := d.xl(ctx, "list")
	if err != nil {
		return xllist.Entry{}, false, Classify(err, "xl list")
	}
	es, err := xllist.ParseTable(out)
	if err != nil {
		return xllist.Entry{}, false, err
	}
	for _, e := range es {
		if e.Name == name && e.DomID != 0 {
			return e, true, nil
		}
	}
	return xllist.Entry{}, false, nil
}

// running returns the guest's domain, or a precondition error when it
// has none.
func (d *Driver) running(ctx context.Context, g *boot.Guest) (xllist.Entry, error) {
	e, ok, err := d.lookup(ctx, g.Def.Name)
	if err != nil {
		return e, err
	}
	if !ok {
		return e, storage.Errorf(storage.ErrPrecondition, "guest %q is not running under Xen", g.Def.Name)
	}
	return e, nil
}

func id(e xllist.Entry) string { return strconv.Itoa(e.DomID) }

// stateOf maps xl's state letters to a boot.State.
func stateOf(e xllist.Entry) boot.State {
	switch {
	case e.Has('d'):
		return boot.Stopping
	case e.Has('s') && (e.ShutdownReason() == 'c' || e.ShutdownReason() == 'w'):
		return boot.Crashed
	case e.Has('s'):
		// Shut down and not yet cleaned up by xl's monitor, or kept by
		// on_poweroff/on_reboot=preserve: its disks are still attached.
		return boot.Stopping
	case e.Has('p'):
		return boot.Paused
	}
	// r (on a CPU), b (blocked) or neither (runnable, waiting for one).
	return boot.Running
}

// ours returns state.json when this driver wrote it.
func ours(g *boot.Guest) *boot.RunState {
	if g.Run == nil {
		return nil
	}
	rs, err := g.Run.ReadState()
	if err != nil || rs == nil || rs.Driver != boot.XL {
		return nil
	}
	return rs
}

// Start implements boot.Driver: the guest's xl.cfg is rendered into its
// runtime directory, `xl create -p -f CFG` creates the domain paused, and
// `xl unpause DOMID` lets it run unless o.Paused. `-f` names the file
// because xl reads a bare argument holding '=' as a config line.
func (d *Driver) Start(ctx context.Context, g *boot.Guest, o boot.StartOptions) (boot.Status, error) {
	name := g.Def.Name
	if o.FromState != "" {
		if err := boot.CheckState(boot.XL, o.FromState, 0); err != nil {
			return boot.Status{}, err
		}
	}
	if g.Run == nil {
		return boot.Status{}, storage.Errorf(storage.ErrInvalid, "guest %q has no runtime directory", name)
	}
	if rs, err := g.Run.ReadState(); err != nil {
		return boot.Status{}, err
	} else if rs != nil && rs.Driver != boot.XL {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "guest %q runs under the %s driver: stop it there first", name, rs.Driver)
	}
	if e, ok, err := d.lookup(ctx, name); err != nil {
		return boot.Status{}, err
	} else if ok {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "guest %q already runs under Xen (domain %d): stop it first (strata guest stop %s)", name, e.DomID, name)
	}
	cfg, err := xlcfg.Render(g.Def)
	if err != nil {
		return boot.Status{}, err
	}
	path := g.Run.Path(ConfigFile)
	if err := catalog.WriteFileAtomic(path, cfg); err != nil {
		return boot.Status{}, err
	}
	argv, what := []string{"create", "-p", "-f", path}, "xl create"
	if o.FromState != "" {
		// The guest continues from its saved memory (memory.go), with
		// the config rendered now, as a create would have it, and paused
		// until state.json names its domain, as after a create.
		argv, what = []string{"restore", "-p", path, o.FromState}, "xl restore"
	}
	if _, err := d.xl(ctx, argv...); err != nil {
		os.Remove(path)
		return boot.Status{}, Classify(err, fmt.Sprintf("start guest %q (%s)", name, what))
	}
	// A new run begins: the last stop is history.
	g.Run.ClearStopped()
	// From here a failure destroys the domain it created.
	fail := func(domid string, err error) (boot.Status, error) {
		if domid != "" {
			if _, derr := d.xl(context.WithoutCancel(ctx), "destroy", domid); derr != nil {
				err = errors.Join(err, Classify(derr, "destroy the half-started domain "+domid))
			}
		}
		g.Run.ClearState()
		os.Remove(path)
		return boot.Status{}, err
	}
	out, err := d.xl(ctx, "domid", name)
	if err != nil {
		// Without its domid the domain cannot be addressed safely; it
		// was created paused and does not run.
		os.Remove(path)
		return boot.Status{}, Classify(err, fmt.Sprintf("guest %q: find the domain xl created (xl domid)", name))
	}
	domid := strings.TrimSpace(string(out))
	if _, err := strconv.ParseUint(domid, 10, 32); err != nil {
		return fail("", fmt.Errorf("guest %q: xl domid printed %q, not a domain id", name, domid))
	}
	rs := boot.RunState{Driver: boot.XL, Domain: domid, Accel: "xen", Started: time.Now().UTC(), Extra: map[string]string{"config": path}}
	if err := g.Run.WriteState(rs); err != nil {
		return fail(domid, err)
	}
	if !o.Paused {
		if _, err := d.xl(ctx, "unpause", domid); err != nil {
			return fail(domid, Classify(err, fmt.Sprintf("start guest %q (xl unpause)", name)))
		}
	}
	return d.Status(ctx, g)
}

// Stop implements boot.Driver: `xl shutdown -w -F DOMID` asks the guest
// (PV control, or the ACPI power button for a guest without PV drivers)
// and waits for the domain to go; after o.Timeout, `xl destroy DOMID`
// ends it. o.Force destroys at once.
func (d *Driver) Stop(ctx context.Context, g *boot.Guest, o boot.StopOptions) (boot.Status, error) {
	e, err := d.running(ctx, g)
	if err != nil {
		return boot.Status{}, err
	}
	if o.Force {
		if err := d.destroy(ctx, g, e, boot.StopRecord{Reason: boot.ReasonKilled, Detail: "stop --force: xl destroy"}); err != nil {
			return boot.Status{}, err
		}
		return d.Status(ctx, g)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	_, err = d.xl(sctx, "shutdown", "-w", "-F", id(e))
	timedOut := sctx.Err() != nil && ctx.Err() == nil
	cancel()
	switch {
	case err == nil:
		d.stopped(g, boot.StopRecord{Reason: boot.ReasonShutdown, Detail: "xl shutdown"})
	case timedOut:
		if err := d.destroy(ctx, g, e, boot.StopRecord{Reason: boot.ReasonQuit, Detail: fmt.Sprintf("did not shut down within %s: xl destroy", timeout)}); err != nil {
			return boot.Status{}, err
		}
	case errors.Is(Classify(err, ""), storage.ErrNotFound):
		// Gone before xl could ask it: Status records how.
	default:
		return boot.Status{}, Classify(err, fmt.Sprintf("stop guest %q (xl shutdown)", g.Def.Name))
	}
	return d.Status(ctx, g)
}

// destroy ends the domain (`xl destroy DOMID`) and records why.
func (d *Driver) destroy(ctx context.Context, g *boot.Guest, e xllist.Entry, rec boot.StopRecord) error {
	if _, err := d.xl(ctx, "destroy", id(e)); err != nil {
		if err := Classify(err, fmt.Sprintf("end guest %q (xl destroy)", g.Def.Name)); !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		// Gone meanwhile: what it was asked is what happened.
	}
	d.stopped(g, rec)
	return nil
}

// stopped records rec as the guest's last stop and forgets its run.
func (d *Driver) stopped(g *boot.Guest, rec boot.StopRecord) {
	if g.Run == nil {
		return
	}
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	g.Run.WriteStopped(rec)
	g.Run.ClearState()
	os.Remove(g.Run.Path(ConfigFile))
}

// Kill implements boot.Driver: `xl destroy DOMID`.
func (d *Driver) Kill(ctx context.Context, g *boot.Guest) error {
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	return d.destroy(ctx, g, e, boot.StopRecord{Reason: boot.ReasonKilled, Detail: "xl destroy"})
}

// Pause implements boot.Driver: `xl pause DOMID`. xl exits 0 whatever
// libxl answered, so the state is checked first.
func (d *Driver) Pause(ctx context.Context, g *boot.Guest) error {
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	switch st := stateOf(e); st {
	case boot.Running:
	case boot.Paused:
		return storage.Errorf(storage.ErrPrecondition, "guest %q is already paused", g.Def.Name)
	default:
		return storage.Errorf(storage.ErrPrecondition, "guest %q is %s, not running", g.Def.Name, st)
	}
	_, err = d.xl(ctx, "pause", id(e))
	return Classify(err, fmt.Sprintf("pause guest %q", g.Def.Name))
}

// Resume implements boot.Driver: `xl unpause DOMID`.
func (d *Driver) Resume(ctx context.Context, g *boot.Guest) error {
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	if stateOf(e) != boot.Paused {
		return storage.Errorf(storage.ErrPrecondition, "guest %q is not paused", g.Def.Name)
	}
	_, err = d.xl(ctx, "unpause", id(e))
	return Classify(err, fmt.Sprintf("resume guest %q", g.Def.Name))
}

// Status implements boot.Driver. The state letters come from plain `xl
// list` (`xl list -l` carries the configuration only, no run state); the
// disks and the VNC console from `xl list -l DOMID`. A guest this driver
// started whose domain is gone gets a stop record read from xl's monitor
// log (see reasonFromLog), and its runtime files are removed.
func (d *Driver) Status(ctx context.Context, g *boot.Guest) (boot.Status, error) {
	name := g.Def.Name
	st := boot.Status{Guest: name, Driver: boot.XL, State: boot.Stopped}
	e, ok, err := d.lookup(ctx, name)
	if err != nil {
		return st, err
	}
	rs := ours(g)
	if !ok {
		return d.gone(g, rs, st), nil
	}
	st.State = stateOf(e)
	st.Domain = id(e)
	st.Accel = "xen"
	out, err := d.xl(ctx, "list", "-l", id(e))
	if err != nil {
		if err := Classify(err, "xl list -l"); errors.Is(err, storage.ErrNotFound) {
			return d.gone(g, rs, boot.Status{Guest: name, Driver: boot.XL, State: boot.Stopped}), nil
		}
		return st, Classify(err, fmt.Sprintf("status of guest %q (xl list -l)", name))
	}
	doms, err := xllist.ParseLong(out)
	if err != nil {
		return st, err
	}
	for _, dom := range doms {
		if dom.DomID != e.DomID {
			continue
		}
		for _, k := range dom.Disks {
			if k.Path != "" {
				st.Disks = append(st.Disks, k.Path)
			}
		}
		st.VNC = d.vncAddress(ctx, dom)
	}
	if rs != nil {
		st.Started = rs.Started
		if st.State == boot.Running || st.State == boot.Paused {
			st.UptimeSeconds = time.Since(rs.Started).Seconds()
		}
		if rs.Domain != st.Domain || rs.VNC != st.VNC {
			// Rebooted under on_reboot=restart: xl created it again.
			rs.Domain, rs.VNC = st.Domain, st.VNC
			g.Run.WriteState(*rs)
		}
	}
	if g.Run != nil {
		st.LastStop, _ = g.Run.ReadStopped()
	}
	if st.State == boot.Crashed {
		rec := d.reasonFromLog(name)
		if rec.Reason != boot.ReasonCrash {
			rec = boot.StopRecord{At: time.Now().UTC(), Reason: boot.ReasonCrash, Detail: "the guest crashed"}
		}
		rec.Detail += "; the crashed domain is kept (on_crash=preserve): `strata guest kill " + name + "` ends it"
		st.LastStop = &rec
	}
	return st, nil
}

// gone reports a guest without a domain; one this driver started and did
// not see stop gets its stop record now.
func (d *Driver) gone(g *boot.Guest, rs *boot.RunState, st boot.Status) boot.Status {
	if rs != nil {
		d.stopped(g, d.reasonFromLog(g.Def.Name))
	}
	if g.Run != nil {
		st.LastStop, _ = g.Run.ReadStopped()
	}
	return st
}

// reasonFromLog says why the domain of the guest called name stopped,
// from the log xl's monitor process (the daemon `xl create` leaves
// behind) writes to LogDir/xl-NAME.log: "Domain N has shut down, reason
// code R", "Action for shutdown reason code R is ACTION", "Domain N has
// been destroyed." xl rotates that log at every create, so it holds only
// the newest run; it has no timestamps, so the record's time is the log's
// last write. Without a log, or with nothing in it after the newest
// "Waiting for domain", the reason is ReasonDied.
func (d *Driver) reasonFromLog(name string) boot.StopRecord {
	path := filepath.Join(d.c.LogDir, "xl-"+name+".log")
	rec := boot.StopRecord{At: time.Now().UTC(), Reason: boot.ReasonDied, Detail: "the Xen domain is gone and xl recorded no reason (" + path + ")"}
	f, err := os.Open(path)
	if err != nil {
		return rec
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		rec.At = st.ModTime().UTC()
	}
	code, action, destroyed := -2, "", false
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case waitingRe().MatchString(l):
			code, action, destroyed = -2, "", false // a new domain of this run
		case shutdownLogRe().MatchString(l):
			code, _ = strconv.Atoi(shutdownLogRe().FindStringSubmatch(l)[2])
		case actionLogRe().MatchString(l):
			action = actionLogRe().FindStringSubmatch(l)[1]
		case destroyedRe().MatchString(l):
			destroyed = true
		}
	}
	with := func(reason, detail string) boot.StopRecord {
		rec.Reason = reason
		rec.Detail = detail
		if action != "" {
			rec.Detail += " (xl's action: " + action + ")"
		}
		return rec
	}
	switch code {
	case 0:
		return with(boot.ReasonPoweroff, "the guest powered off")
	case 1:
		return with(boot.ReasonReboot, "the guest rebooted")
	case 3:
		return with(boot.ReasonCrash, "the guest crashed")
	case 4:
		return with(boot.ReasonCrash, "the guest's watchdog fired")
	case 2:
		return with(boot.ReasonDied, "the guest was suspended (xl save or migrate)")
	case 5:
		return with(boot.ReasonDied, "the guest asked for a soft reset")
	}
	if destroyed {
		return with(boot.ReasonDied, "the domain was destroyed outside strata (xl destroy)")
	}
	return rec
}

// vncAddress is the domain's VNC console: from its configuration, or,
// when QEMU picked a free port (vncunused), with the port libxl wrote to
// xenstore. Only the port is taken from there: the console directory is
// the guest's console frontend, which the guest can write, so the host
// always comes from the configuration. "" when there is none or the port
// cannot be read.
func (d *Driver) vncAddress(ctx context.Context, dom xllist.Domain) string {
	v := dom.VNC
	if !v.Enabled {
		return ""
	}
	host, display := v.Listen, 0
	if v.Display != nil {
		display = *v.Display
	}
	// libxl also takes vnclisten = "ADDRESS:DISPLAY" with no vncdisplay.
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[:i], ":") {
		if n, err := strconv.Atoi(host[i+1:]); err == nil {
			host = host[:i]
			if display == 0 {
				display = n
			}
		}
	}
	if host == "" {
		host = hvm.DefaultVNCListen
	}
	port := 5900 + display
	if v.FindUnused {
		out, err := d.c.Run(ctx, d.c.XenstoreRead, fmt.Sprintf("/local/domain/%d/console/vnc-port", dom.DomID))
		if err != nil {
			return ""
		}
		port, err = strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil || port < 5900 || port > 65535 {
			return ""
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Screenshot implements boot.Driver: not supported (see Supports).
func (d *Driver) Screenshot(ctx context.Context, g *boot.Guest, w io.Writer) error {
	return d.Supports(g.Def, boot.Screenshot)
}

// Console implements boot.Driver: the guest's first serial port is a pty
// of Xen's QEMU (serial = "pty"), whose path libxl writes to xenstore
// (/local/domain/DOMID/serial/0/tty); strata opens it. `xl console -t
// serial NAME` is the same port on a terminal.
func (d *Driver) Console(ctx context.Context, g *boot.Guest) (io.ReadWriteCloser, error) {
	if err := d.Supports(g.Def, boot.Console); err != nil {
		return nil, err
	}
	e, err := d.running(ctx, g)
	if err != nil {
		return nil, err
	}
	// libxl writes the node under the domain's home, which the guest
	// can read but not write; strata still opens nothing but a pty.
	out, err := d.c.Run(ctx, d.c.XenstoreRead, fmt.Sprintf("/local/domain/%d/serial/0/tty", e.DomID))
	tty := strings.TrimSpace(string(out))
	if err != nil || !ptyRe().MatchString(tty) {
		why := fmt.Sprintf("xenstore has %q", tty)
		if err != nil {
			why = err.Error()
		}
		return nil, storage.Errorf(storage.ErrPrecondition, "cannot find guest %q's serial console (%s): on the host, run `xl console -t serial %d`", g.Def.Name, why, e.DomID)
	}
	f, err := os.OpenFile(tty, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("guest %q's serial console: %w", g.Def.Name, err)
	}
	return f, nil
}

// Running implements boot.Driver: every domain `xl list -l` shows except
// dom0 (the host itself), strata's or not, with the paths of its disks.
func (d *Driver) Running(ctx context.Context) ([]boot.RunningGuest, error) {
	out, err := d.xl(ctx, "list", "-l")
	if err != nil {
		return nil, Classify(err, "xl list -l")
	}
	doms, err := xllist.ParseLong(out)
	if err != nil {
		return nil, err
	}
	var rs []boot.RunningGuest
	for _, dom := range doms {
		if dom.DomID == 0 {
			continue
		}
		r := boot.RunningGuest{Name: dom.Name, Domain: strconv.Itoa(dom.DomID)}
		for _, k := range dom.Disks {
			if k.Path != "" {
				r.Disks = append(r.Disks, k.Path)
			}
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// Supports implements boot.Driver.
func (d *Driver) Supports(g *hvm.Guest, f boot.Feature) error {
	name := "NAME"
	if g != nil && g.Name != "" {
		name = g.Name
	}
	switch f {
	case boot.Pause:
		return nil
	case boot.ChangeMedia:
		if g != nil {
			for _, k := range g.Disks {
				if k.CDROM {
					return nil
				}
			}
		}
		return storage.Errorf(storage.ErrNotSupported, "guest %q has no CD-ROM drive to change media in: add one to its definition (a disk with cdrom: true) and start it again", name)
	case boot.Console:
		if g != nil && len(g.Serial) > 0 && g.Serial[0] == "pty" {
			return nil
		}
		return storage.Errorf(storage.ErrNotSupported, "guest %q has no serial port on a pty, which is how Xen exposes a serial console: set serial: [pty] in its definition and start it again", name)
	case boot.AttachDisk, boot.AttachNIC:
		if g != nil && g.Features.PVDrivers != nil && *g.Features.PVDrivers {
			return nil
		}
		return storage.Errorf(storage.ErrNotSupported, "Xen attaches disks and NICs to an HVM guest only as PV devices, which need PV drivers in the guest; install them, then `strata guest set %s features.pv_drivers=true`", name)
	case boot.Screenshot:
		return storage.Errorf(storage.ErrNotSupported, "xl has no screendump (libxl keeps the device model's monitor to itself): connect a VNC viewer to the guest's console (strata guest vnc %s)", name)
	case boot.LivePoints:
		return storage.Errorf(storage.ErrNotSupported, "xl cannot snapshot the disks of a running domain (libxl keeps the device model's monitor to itself): stop the guest (strata guest stop %s), take the restore point, then start it", name)
	case boot.MemoryState:
		// xl save and xl restore (memory.go).
		return nil
	}
	return storage.Errorf(storage.ErrNotSupported, "the xl driver does not know the feature %q", f)
}

// cdrom checks that vdev is a CD-ROM drive of the guest.
func cdrom(g *boot.Guest, vdev string) error {
	for _, k := range g.Def.Disks {
		if k.Vdev == vdev {
			if !k.CDROM {
				return storage.Errorf(storage.ErrInvalid, "guest %q: %s is a disk, not a CD-ROM drive", g.Def.Name, vdev)
			}
			return nil
		}
	}
	return storage.Errorf(storage.ErrNotFound, "guest %q has no drive %s", g.Def.Name, vdev)
}

// InsertCD puts the image at path (a host path) into the running guest's
// CD-ROM drive vdev: `xl cd-insert DOMID VDEV PATH`.
func (d *Driver) InsertCD(ctx context.Context, g *boot.Guest, vdev, path string) error {
	if err := d.Supports(g.Def, boot.ChangeMedia); err != nil {
		return err
	}
	if err := cdrom(g, vdev); err != nil {
		return err
	}
	if !filepath.IsAbs(path) {
		return storage.Errorf(storage.ErrInvalid, "medium %q: give an absolute host path", path)
	}
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	_, err = d.xl(ctx, "cd-insert", id(e), vdev, path)
	return Classify(err, fmt.Sprintf("guest %q: insert %s into %s", g.Def.Name, path, vdev))
}

// EjectCD empties the running guest's CD-ROM drive vdev: `xl cd-eject
// DOMID VDEV`.
func (d *Driver) EjectCD(ctx context.Context, g *boot.Guest, vdev string) error {
	if err := d.Supports(g.Def, boot.ChangeMedia); err != nil {
		return err
	}
	if err := cdrom(g, vdev); err != nil {
		return err
	}
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	_, err = d.xl(ctx, "cd-eject", id(e), vdev)
	return Classify(err, fmt.Sprintf("guest %q: eject %s", g.Def.Name, vdev))
}

// AttachDisk adds disk k (its source resolved to a host path or device)
// to the running guest as a PV disk: `xl block-attach DOMID SPEC`, SPEC
// the xl disk spec of k. Only for a guest with PV drivers.
func (d *Driver) AttachDisk(ctx context.Context, g *boot.Guest, k hvm.Disk) error {
	if err := d.Supports(g.Def, boot.AttachDisk); err != nil {
		return err
	}
	spec, err := xlcfg.FormatDisk(k)
	if err != nil {
		return err
	}
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	_, err = d.xl(ctx, "block-attach", id(e), spec)
	return Classify(err, fmt.Sprintf("guest %q: attach disk %s", g.Def.Name, k.Vdev))
}

// DetachDisk removes the PV disk vdev from the running guest: `xl
// block-detach DOMID VDEV`.
func (d *Driver) DetachDisk(ctx context.Context, g *boot.Guest, vdev string) error {
	if err := d.Supports(g.Def, boot.AttachDisk); err != nil {
		return err
	}
	if err := plainArg("disk", vdev); err != nil {
		return err
	}
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	_, err = d.xl(ctx, "block-detach", id(e), vdev)
	return Classify(err, fmt.Sprintf("guest %q: detach disk %s", g.Def.Name, vdev))
}

// AttachNIC adds n to the running guest as a PV NIC: `xl network-attach
// DOMID KEY=VALUE...` (one argument per vif key). Only for a guest with
// PV drivers.
func (d *Driver) AttachNIC(ctx context.Context, g *boot.Guest, n hvm.NIC) error {
	if err := d.Supports(g.Def, boot.AttachNIC); err != nil {
		return err
	}
	spec, err := xlcfg.FormatVif(n)
	if err != nil {
		return err
	}
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	args := []string{"network-attach", id(e)}
	if spec != "" {
		// FormatVif refuses values holding a comma: splitting is exact.
		args = append(args, strings.Split(spec, ",")...)
	}
	_, err = d.xl(ctx, args...)
	return Classify(err, fmt.Sprintf("guest %q: attach a NIC", g.Def.Name))
}

// DetachNIC removes the NIC with MAC address mac (or device id) from the
// running guest: `xl network-detach DOMID MAC`.
func (d *Driver) DetachNIC(ctx context.Context, g *boot.Guest, mac string) error {
	if err := d.Supports(g.Def, boot.AttachNIC); err != nil {
		return err
	}
	if err := plainArg("NIC", mac); err != nil {
		return err
	}
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	_, err = d.xl(ctx, "network-detach", id(e), mac)
	return Classify(err, fmt.Sprintf("guest %q: detach NIC %s", g.Def.Name, mac))
}

// plainArg refuses what xl would read as an option or nothing.
func plainArg(what, s string) error {
	if s == "" || strings.HasPrefix(s, "-") || strings.ContainsAny(s, " ,=\x00") {
		return storage.Errorf(storage.ErrInvalid, "%s %q: give its device name (xvdb) or MAC address", what, s)
	}
	return nil
}

// ChangeMedia implements boot.MediaChanger: xl cd-insert, or cd-eject
// for path "".
func (d *Driver) ChangeMedia(ctx context.Context, g *boot.Guest, vdev, path string) error {
	if path == "" {
		return d.EjectCD(ctx, g, vdev)
	}
	return d.InsertCD(ctx, g, vdev, path)
}

var _ boot.Attacher = (*Driver)(nil)
