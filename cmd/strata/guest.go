package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/store"
)

func openRegistry(c *cli.Context) (*registry.Registry, error) {
	st, _, err := openManager(c) // the manager's hooks guard guest deletes
	if err != nil {
		return nil, err
	}
	return registry.New(st), nil
}

var defineFlags = []cli.Flag{
	&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "define from a YAML file (see README: guest definition schema)"},
	&cli.IntFlag{Name: "memory", Value: 512, Usage: "memory at boot, MiB"},
	&cli.IntFlag{Name: "maxmem", DefaultText: "--memory", Usage: "memory ceiling, MiB (above --memory needs a balloon driver)"},
	&cli.IntFlag{Name: "vcpus", DefaultText: strconv.Itoa(hvm.DefaultVCPUs), Usage: "vCPUs online at boot"},
	&cli.IntFlag{Name: "maxvcpus", DefaultText: "--vcpus", Usage: "vCPU ceiling"},
	&cli.StringSliceFlag{Name: "disk", Usage: "VOLUME[:VDEV] (repeat, in order; default vdevs hda, hdb, hdd, sda...)"},
	&cli.StringFlag{Name: "cdrom", Usage: "an iso name or a path, as the CD-ROM drive (hdc); \"\" for an empty drive"},
	&cli.StringFlag{Name: "boot", DefaultText: hvm.DefaultBoot, Usage: "boot order: c disk, d CD-ROM, n network (e.g. dc)"},
	&cli.StringSliceFlag{Name: "nic", Usage: "a vif spec: bridge=xenbr0[,mac=00:16:3e:..][,model=e1000] (repeat)"},
	&cli.BoolFlag{Name: "vnc", Value: true, Usage: "a VNC console (on 127.0.0.1 unless --vnclisten); --vnc=false for none"},
	&cli.StringFlag{Name: "vnclisten", Usage: "VNC listen address (non-loopback needs a password)"},
	&cli.StringFlag{Name: "vncpasswd-file", Usage: "file holding the VNC password, - for stdin (not on the command line, where ps shows it)"},
	&cli.BoolFlag{Name: "tablet", Usage: "a USB tablet (absolute pointer under VNC)"},
	&cli.BoolFlag{Name: "acpi", Value: true, Usage: "ACPI; --acpi=false turns it off"},
	&cli.BoolFlag{Name: "apic", Value: true, Usage: "APIC; --apic=false turns it off"},
	&cli.BoolFlag{Name: "viridian", Usage: "Hyper-V enlightenments for Windows"},
	&cli.StringFlag{Name: "firmware", Usage: "bios, seabios, rombios or ovmf"},
	&cli.StringFlag{Name: "os", Usage: "guest OS hint for lint: winxp, win2000, win2003, windows, linux, other"},
	&cli.StringFlag{Name: "driver", DefaultText: "auto", Usage: "the driver guest start uses: auto, qemu, libvirt or xl"},
	&cli.StringFlag{Name: "on-reboot", DefaultText: "restart", Usage: "destroy (e.g. XP install phase 1), restart, ..."},
	&cli.StringFlag{Name: "on-poweroff", DefaultText: "destroy", Usage: "destroy, restart, ..."},
	&cli.StringFlag{Name: "on-crash", DefaultText: "destroy", Usage: "destroy, restart, preserve, ..."},
}

// guestFromFlags builds a definition from define's flags.
func guestFromFlags(c *cli.Context, name string) (*hvm.Guest, error) {
	g := &hvm.Guest{APIVersion: hvm.APIVersion, Name: name, Boot: c.String("boot"), Firmware: c.String("firmware"), OS: c.String("os"), Driver: c.String("driver")}
	g.Memory = hvm.Int(c.Int("memory"))
	for flag, p := range map[string]**int{"maxmem": &g.MaxMem, "vcpus": &g.VCPUs, "maxvcpus": &g.MaxVCPUs} {
		if c.IsSet(flag) {
			*p = hvm.Int(c.Int(flag))
		}
	}
	for flag, p := range map[string]**bool{"acpi": &g.Features.ACPI, "apic": &g.Features.APIC} {
		if c.IsSet(flag) {
			*p = hvm.Bool(c.Bool(flag))
		}
	}
	if c.Bool("viridian") {
		g.Features.Viridian = &hvm.Viridian{Enabled: true}
	}
	hasCD := c.IsSet("cdrom")
	for i, spec := range c.StringSlice("disk") {
		vol, vdev, _ := strings.Cut(spec, ":")
		if vdev == "" {
			vdev = registry.DiskVdev(i, hasCD)
		}
		g.Disks = append(g.Disks, hvm.Disk{Volume: vol, Vdev: vdev})
	}
	if hasCD {
		cd := hvm.Disk{Vdev: "hdc", CDROM: true}
		if v := c.String("cdrom"); strings.ContainsRune(v, '/') {
			cd.Path = v
		} else if v != "" {
			cd.Media = v
		}
		g.Disks = append(g.Disks, cd)
	}
	for i, spec := range c.StringSlice("nic") {
		if hvm.SecretValue(spec) {
			return nil, storage.Errorf(storage.ErrInvalid, "--nic %d holds a password, which is not taken on the command line (ps shows it): define the guest from a YAML file (-f) instead", i+1)
		}
		n, _, err := xlcfg.ParseVif(spec)
		if err != nil {
			return nil, err
		}
		g.NICs = append(g.NICs, n)
	}
	if c.IsSet("vnc") {
		g.Display.VNC = hvm.Bool(c.Bool("vnc"))
	}
	g.Display.VNCListen = c.String("vnclisten")
	if f := c.String("vncpasswd-file"); f != "" {
		pw, err := readSecret("--vncpasswd-file", f)
		if err != nil {
			return nil, err
		}
		g.Display.VNCPasswd = pw
	}
	if c.Bool("tablet") {
		g.USB, g.USBDevices = hvm.Bool(true), []string{"tablet"}
	}
	g.Lifecycle = hvm.Lifecycle{OnReboot: c.String("on-reboot"), OnPoweroff: c.String("on-poweroff"), OnCrash: c.String("on-crash")}
	return g, nil
}

// readSecret reads a password from a file, or from stdin for "-", without
// its trailing newline: passwords never come from argv, where ps and shell
// history show them.
func readSecret(flag, file string) (hvm.Secret, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", storage.Errorf(storage.ErrInvalid, "cannot read %s %q: %w", flag, file, err)
	}
	return hvm.Secret(strings.TrimRight(string(b), "\r\n")), nil
}

// setSecrets reads guest set's --vncpasswd-file and --secret-file KEY=FILE.
func setSecrets(c *cli.Context) (map[string]hvm.Secret, error) {
	specs := c.StringSlice("secret-file")
	if f := c.String("vncpasswd-file"); f != "" {
		specs = append(specs, "vncpasswd="+f)
	}
	out := map[string]hvm.Secret{}
	stdin := false
	for _, spec := range specs {
		key, file, ok := strings.Cut(spec, "=")
		if !ok || key == "" || file == "" {
			return nil, storage.Errorf(storage.ErrInvalid, "--secret-file %q is not KEY=FILE (FILE - reads stdin), e.g. --secret-file vncpasswd=/root/vnc.pw", spec)
		}
		if _, dup := out[key]; dup {
			return nil, storage.Errorf(storage.ErrInvalid, "%s is given twice: give each password once", key)
		}
		if file == "-" {
			if stdin {
				return nil, storage.Errorf(storage.ErrInvalid, "only one password can come from stdin (-)")
			}
			stdin = true
		}
		pw, err := readSecret("--secret-file", file)
		if err != nil {
			return nil, err
		}
		out[key] = pw
	}
	return out, nil
}

func guestCommand() *cli.Command {
	return &cli.Command{
		Name:  "guest",
		Usage: "HVM guests: define, import, edit, render, lint; start, stop, install, status, console",
		Subcommands: append([]*cli.Command{
			flattenCommand(true),
			guestWatchCommand,
			guestOwnCommand,
			guestMoveCommand(),
			{
				Name: "define", Usage: "define a guest from flags or a YAML file (a MAC is generated and pinned per NIC)", ArgsUsage: "NAME",
				Flags: defineFlags,
				Action: func(c *cli.Context) error {
					var g *hvm.Guest
					if f := c.String("file"); f != "" {
						for _, f := range defineFlags {
							if n := f.Names()[0]; n != "file" && c.IsSet(n) {
								return storage.Errorf(storage.ErrInvalid, "give either -f FILE (and optionally NAME) or flags like --%s, not both", n)
							}
						}
						if c.NArg() > 1 {
							return storage.Errorf(storage.ErrInvalid, "guest define -f FILE takes at most one NAME (got %d)", c.NArg())
						}
						var err error
						if g, err = hvm.LoadFile(f); err != nil {
							return err
						}
						if c.NArg() == 1 {
							g.Name = c.Args().First()
						}
					} else {
						if err := needArgs(c, "NAME"); err != nil {
							return err
						}
						var err error
						if g, err = guestFromFlags(c, c.Args().First()); err != nil {
							return err
						}
					}
					r, err := openRegistry(c)
					if err != nil {
						return err
					}
					if _, _, err := r.Define(c.Context, g); err != nil {
						return err
					}
					return showGuest(c, r, g.Name)
				},
			},
			{
				Name: "import", Usage: "import an xl/xm config (never executed) or, with --libvirt, domain XML", ArgsUsage: "FILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "name of the guest (default: the config's)"},
					&cli.BoolFlag{Name: "adopt-disks", Usage: "register the disk images and devices it names as volumes, in place"},
					&cli.BoolFlag{Name: "allow-backing", Usage: "with --adopt-disks: accept disks declared qcow2 (format=qcow2) whose backing file lies outside strata's pools"},
					&cli.BoolFlag{Name: "libvirt", Usage: "FILE is libvirt domain XML"},
					&cli.BoolFlag{Name: "replace", Usage: "update the existing guest (--name, else the config's name) from FILE, keeping its install record, os hint, MACs and volumes; prints what changed"},
					&cli.BoolFlag{Name: "dry-run", Usage: "with --replace: print what would change and check it, store nothing"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "FILE"); err != nil {
						return err
					}
					file := c.Args().First()
					data, err := os.ReadFile(file)
					if err != nil {
						return storage.Errorf(storage.ErrNotFound, "cannot read %q: %w", file, err)
					}
					r, err := openRegistry(c)
					if err != nil {
						return err
					}
					o := registry.ImportOptions{Name: c.String("name"), AdoptDisks: c.Bool("adopt-disks"), AllowBacking: c.Bool("allow-backing"), Libvirt: c.Bool("libvirt"), Replace: c.Bool("replace"), DryRun: c.Bool("dry-run")}
					if o.DryRun && !o.Replace {
						return storage.Errorf(storage.ErrInvalid, "--dry-run goes with --replace")
					}
					if o.Replace {
						return replaceGuest(c, r, file, data, o)
					}
					g, _, err := r.Import(c.Context, file, data, o)
					if err != nil {
						return err
					}
					return showGuest(c, r, g.Name)
				},
			},
			{
				Name: "set", Usage: "change a guest: KEY=VALUE with xl names and syntax (memory=1024 viridian=1 vif=bridge=br1 cdrom=ISO) or YAML paths (nics.0.bridge=br1); KEY= unsets; disks+=VOL[:VDEV], nics-=MAC edit lists; passwords only from a file", ArgsUsage: "NAME [KEY=VALUE|KEY+=VALUE|KEY-=VALUE...]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "vncpasswd-file", Usage: "file holding the VNC password, - for stdin (never on the command line)"},
					&cli.StringSliceFlag{Name: "secret-file", Usage: "KEY=FILE: set a password key (vncpasswd, spicepasswd, extra.KEY, ...) from FILE, - for stdin (repeat)"},
				},
				Action: func(c *cli.Context) error {
					secrets, err := setSecrets(c)
					if err != nil {
						return err
					}
					if c.NArg() < 1 || c.NArg() < 2 && len(secrets) == 0 {
						return storage.Errorf(storage.ErrInvalid, "guest set takes NAME and at least one KEY=VALUE or --secret-file KEY=FILE")
					}
					r, err := openRegistry(c)
					if err != nil {
						return err
					}
					g, _, err := r.Set(c.Context, c.Args().First(), c.Args().Tail(), secrets)
					if err != nil {
						return err
					}
					warnIfRunning(c, g.Name)
					return showGuest(c, r, g.Name)
				},
			},
			{
				Name: "list", Usage: "list guests",
				Action: func(c *cli.Context) error {
					if err := needArgs(c); err != nil {
						return err
					}
					lm, err := openLifecycle(c)
					if err != nil {
						return err
					}
					gs, err := lm.St.Guests(c.Context)
					if err != nil {
						return err
					}
					type listed struct {
						store.GuestView
						State boot.State `json:"state"`
						// Host runs the guest, when it is another host
						// sharing the catalog.
						Host string `json:"host,omitempty"`
					}
					names := make([]string, len(gs))
					for i, g := range gs {
						names[i] = g.Name
					}
					states := lm.States(c.Context, names)
					out := make([]listed, len(gs))
					for i, g := range gs {
						out[i] = listed{GuestView: g, State: states[g.Name]}
						if !out[i].State.Live() {
							if host := runningOn(lm.St, g.ID); host != "" {
								out[i].State, out[i].Host = boot.Running, host
							}
						}
					}
					return emit(c, out, func(w *tabwriter.Writer) {
						row(w, "NAME", "STATE", "ID", "DISKS")
						for _, g := range out {
							state := string(g.State)
							if g.Host != "" {
								state += " on " + g.Host
							}
							row(w, g.Name, state, g.ID, strings.Join(g.DiskNames, ","))
						}
					})
				},
			},
			{
				Name: "show", Usage: "show a guest's definition (--output yaml writes the YAML schema back)", ArgsUsage: "NAME",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "show-secrets", Usage: "print passwords instead of [redacted]"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					r, err := openRegistry(c)
					if err != nil {
						return err
					}
					return showGuest(c, r, c.Args().First())
				},
			},
			{
				Name: "render", Usage: "render a guest as xl.cfg, xm, libvirt domain XML or a QEMU command line", ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Value: "xl", Usage: "xl, xm, libvirt or qemu"},
					&cli.StringFlag{Name: "hypervisor", Usage: "xen or kvm (libvirt: default xen; qemu: kvm selects -accel kvm)"},
					&cli.StringFlag{Name: "accel", Usage: "qemu: tcg or kvm"},
					&cli.StringFlag{Name: "network", Usage: "qemu: bridge (default), user or none"},
					&cli.BoolFlag{Name: "show-secrets", Usage: "include console passwords (left out by default; a console off loopback is then rendered on 127.0.0.1)"},
					&cli.BoolFlag{Name: "allow-exposed", Usage: "render even if lint finds a console, monitor or port the network can reach (refused by default, exit 7)"},
					&cli.StringSliceFlag{Name: "bridge-map", Usage: "FROM=TO: put NICs on bridge FROM (default xenbr0) onto TO, for a host without Xen's bridges, e.g. xenbr0=br0 (repeat)"},
					&cli.BoolFlag{Name: "allow-missing-disks", Usage: "render even if a writable disk's file or device does not exist here (a config for the host that has it)"},
					&cli.StringFlag{Name: "qmp", Usage: "qemu: the QMP socket to render, through which the VNC password is set (default: in the guest's runtime directory)"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					bridges, err := hvm.ParseBridgeMap(c.StringSlice("bridge-map"))
					if err != nil {
						return err
					}
					r, err := openRegistry(c)
					if err != nil {
						return err
					}
					text, argv, err := r.Render(c.Context, c.Args().First(), registry.RenderOptions{Format: c.String("format"), Hypervisor: c.String("hypervisor"), Accel: c.String("accel"), Network: c.String("network"), ShowSecrets: c.Bool("show-secrets"), AllowExposed: c.Bool("allow-exposed"), Bridges: bridges, QMP: c.String("qmp"), AllowMissingDisks: c.Bool("allow-missing-disks")})
					if err != nil {
						return err
					}
					if argv != nil {
						return emit(c, argv, func(w *tabwriter.Writer) {
							for _, a := range argv {
								fmt.Fprintln(w, a)
							}
						})
					}
					_, err = os.Stdout.Write(text)
					return err
				},
			},
			{
				Name: "installed", Usage: "record that Windows was installed in a guest outside strata (guest install records its own): lint then holds HAL and activation changes against it", ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "acpi", DefaultText: "the definition's", Usage: "ACPI as Setup saw it, where it differs from the definition now"},
					&cli.BoolFlag{Name: "apic", DefaultText: "the definition's", Usage: "APIC as Setup saw it, where it differs from the definition now"},
					&cli.IntFlag{Name: "vcpus", DefaultText: "the definition's", Usage: "vCPUs Setup saw, where they differ from the definition now"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					var o registry.InstalledOptions
					if c.IsSet("acpi") {
						o.ACPI = hvm.Bool(c.Bool("acpi"))
					}
					if c.IsSet("apic") {
						o.APIC = hvm.Bool(c.Bool("apic"))
					}
					if c.IsSet("vcpus") {
						o.VCPUs = hvm.Int(c.Int("vcpus"))
					}
					r, err := openRegistry(c)
					if err != nil {
						return err
					}
					g, _, err := r.RecordInstall(c.Context, c.Args().First(), o)
					if err != nil {
						return err
					}
					return showGuest(c, r, g.Name)
				},
			},
			{
				Name: "lint", Usage: "check a guest for Windows pitfalls (HAL, activation, XP install, exposed VNC, ...); exits 7 when a finding is an error, unless --warn-only", ArgsUsage: "NAME",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "warn-only", Usage: "report findings and exit 0 even when one is an error"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					r, err := openRegistry(c)
					if err != nil {
						return err
					}
					fs, err := r.Lint(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					if fs == nil {
						fs = []lint.Finding{}
					}
					if err := emit(c, fs, func(w *tabwriter.Writer) {
						row(w, "SEVERITY", "ID", "FIELD", "MESSAGE", "FIX")
						for _, f := range fs {
							row(w, f.Severity, f.ID, f.Field, f.Message, f.Fix)
						}
					}); err != nil {
						return err
					}
					var errs []string
					for _, f := range fs {
						if f.Severity == lint.Error {
							errs = append(errs, f.ID)
						}
					}
					if len(errs) > 0 && !c.Bool("warn-only") {
						return storage.Errorf(storage.ErrPrecondition, "guest %q: %d finding(s) of error severity (%s); --warn-only reports without failing", c.Args().First(), len(errs), strings.Join(errs, ", "))
					}
					return nil
				},
			},
			{
				Name: "delete", Usage: "forget a guest (its disks stay unless --with-disks)", ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "with-disks", Usage: "also delete the volumes that are its disks"},
					&cli.BoolFlag{Name: "with-points", Usage: "also delete its restore points (refused while one is pinned)"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					lm, err := openLifecycle(c)
					if err != nil {
						return err
					}
					name := c.Args().First()
					if c.Bool("with-points") {
						if err := deletePointsOf(c, lm, name); err != nil {
							return err
						}
					}
					if err := lm.Delete(c.Context, name, c.Bool("with-disks")); err != nil {
						return err
					}
					what := "guest deleted; its disks stay (see strata volume list)"
					if c.Bool("with-disks") {
						what = "guest deleted with its disks"
					}
					log.Info().Str("guest", c.Args().First()).Msg(what)
					return nil
				},
			},
		}, append(guestRunCommands(), guestAttachCommands()...)...),
	}
}

// deletePointsOf deletes every restore point of a guest about to be
// deleted: not of a running guest (the delete would refuse it after the
// points were gone), and not at all when one is pinned.
func deletePointsOf(c *cli.Context, lm *lifecycle.Manager, name string) error {
	st, err := lm.Status(c.Context, name)
	if err != nil {
		return err
	}
	if st.State.Live() {
		return storage.Errorf(storage.ErrInUse, "guest %q is %s: stop it first (strata guest stop %s); nothing was deleted", name, st.State, name)
	}
	t := snapshot.TargetRef{Name: name}
	points, err := lm.Points.List(c.Context, &t)
	if err != nil || len(points) == 0 {
		return err
	}
	refs := make([]string, len(points))
	for i, p := range points {
		refs[i] = strconv.Itoa(p.ID)
	}
	_, err = lm.Points.DeleteMany(c.Context, t, refs)
	return err
}

// showGuest prints a guest: YAML (the schema, for define -f), JSON (the
// same keys plus id and disk volumes) or a summary table. Passwords are
// redacted unless --show-secrets.
func showGuest(c *cli.Context, r *registry.Registry, name string) error {
	g, rec, err := r.Get(c.Context, name)
	if err != nil {
		return err
	}
	if !c.Bool("show-secrets") {
		g = g.Redacted()
	}
	doc, err := hvm.Marshal(g)
	if err != nil {
		return err
	}
	if c.String("output") == "yaml" {
		_, err := os.Stdout.Write(doc)
		return err
	}
	var tree map[string]any
	if err := yaml.Unmarshal(doc, &tree); err != nil {
		return err
	}
	tree["id"] = rec.ID
	return emit(c, tree, func(w *tabwriter.Writer) {
		row(w, "name:", g.Name)
		row(w, "uuid:", g.UUID)
		row(w, "memory:", fmt.Sprintf("%d MiB", hvm.Val(g.Memory, 0)))
		row(w, "vcpus:", g.EffectiveVCPUs())
		row(w, "acpi/apic:", fmt.Sprintf("%v/%v", g.EffectiveACPI(), g.EffectiveAPIC()))
		row(w, "boot:", g.EffectiveBoot())
		for _, d := range g.Disks {
			kind, src := d.Source()
			row(w, "disk:", d.Vdev, kind, src, d.Format, map[bool]string{true: "cdrom", false: ""}[d.CDROM])
		}
		for _, n := range g.NICs {
			row(w, "nic:", n.MAC, n.Bridge, n.Model)
		}
		if g.Display.VNCEnabled() {
			row(w, "vnc:", g.Display.EffectiveVNCListen(), g.Display.VNCPasswd.String())
		}
	})
}

// warnIfRunning says that a change to a running guest's definition takes
// effect when it next starts.
func warnIfRunning(c *cli.Context, name string) {
	lm, err := openLifecycle(c)
	if err != nil {
		return
	}
	if st, err := lm.Status(c.Context, name); err == nil && st.State.Live() {
		log.Warn().Str("guest", name).Msg("the guest is running: the change takes effect when it next starts (strata guest restart " + name + ")")
	}
}

// replaceGuest updates a guest from an edited config and prints what
// changed (KEY, OLD, NEW; JSON: a list of {key, old, new}).
func replaceGuest(c *cli.Context, r *registry.Registry, file string, data []byte, o registry.ImportOptions) error {
	g, changes, _, err := r.Replace(c.Context, file, data, o)
	if err != nil {
		return err
	}
	switch {
	case len(changes) == 0:
		log.Info().Str("guest", g.Name).Msg("no changes: the guest's definition already says what the config says")
	case o.DryRun:
		log.Info().Str("guest", g.Name).Int("changes", len(changes)).Msg("dry run: nothing was stored")
	default:
		warnIfRunning(c, g.Name)
	}
	if changes == nil {
		changes = []registry.Change{}
	}
	return emit(c, changes, func(w *tabwriter.Writer) {
		row(w, "KEY", "OLD", "NEW")
		for _, ch := range changes {
			row(w, ch.Key, orNone(ch.Old), orNone(ch.New))
		}
	})
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
