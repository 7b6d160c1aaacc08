package main

import (
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
)

// The commands that write a guest's definition: define, import, set and
// installed. Each prints the guest as guest show does (import --replace:
// what changed).

func newGuestDefineCommand() *cli.Command {
	return &cli.Command{
		Name: "define", Usage: "define a guest from flags or a YAML file (a MAC is generated and pinned per NIC)", ArgsUsage: "NAME",
		Flags:  defineFlags,
		Action: guestDefineAction,
	}
}

func guestDefineAction(c *cli.Context) error {
	g, err := guestDefinition(c)
	if err != nil {
		return err
	}
	r, err := openRegistry(c)
	if err != nil {
		return err
	}
	if _, _, err := r.Define(c.Context, g); err != nil {
		return err
	}
	return showGuest(c, r, g.Name)
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

// guestDefinition reads define's definition: from -f FILE (NAME, if
// given, renames it), else from NAME and the flags.
func guestDefinition(c *cli.Context) (*hvm.Guest, error) {
	f := c.String("file")
	if f == "" {
		if err := needArgs(c, "NAME"); err != nil {
			return nil, err
		}
		return guestFromFlags(c, c.Args().First())
	}
	for _, fl := range defineFlags {
		if n := fl.Names()[0]; n != "file" && c.IsSet(n) {
			return nil, storage.Errorf(storage.ErrInvalid, "give either -f FILE (and optionally NAME) or flags like --%s, not both", n)
		}
	}
	if c.NArg() > 1 {
		return nil, storage.Errorf(storage.ErrInvalid, "guest define -f FILE takes at most one NAME (got %d)", c.NArg())
	}
	g, err := hvm.LoadFile(f)
	if err != nil {
		return nil, err
	}
	if c.NArg() == 1 {
		g.Name = c.Args().First()
	}
	return g, nil
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

func newGuestImportCommand() *cli.Command {
	return &cli.Command{
		Name: "import", Usage: "import an xl/xm config (never executed) or, with --libvirt, domain XML", ArgsUsage: "FILE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "name of the guest (default: the config's)"},
			&cli.BoolFlag{Name: "adopt-disks", Usage: "register the disk images and devices it names as volumes, in place"},
			&cli.BoolFlag{Name: "allow-backing", Usage: "with --adopt-disks: accept disks declared qcow2 (format=qcow2) whose backing file lies outside strata's pools"},
			&cli.BoolFlag{Name: "libvirt", Usage: "FILE is libvirt domain XML"},
			&cli.BoolFlag{Name: "replace", Usage: "update the existing guest (--name, else the config's name) from FILE, keeping its install record, os hint, MACs and volumes; prints what changed"},
			&cli.BoolFlag{Name: "dry-run", Usage: "with --replace: print what would change and check it, store nothing"},
		},
		Action: guestImportAction,
	}
}

func guestImportAction(c *cli.Context) error {
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
			row(w, ch.Key, orDash(ch.Old), orDash(ch.New))
		}
	})
}

func newGuestSetCommand() *cli.Command {
	return &cli.Command{
		Name: "set", Usage: "change a guest: KEY=VALUE with xl names and syntax (memory=1024 viridian=1 vif=bridge=br1 cdrom=ISO) or YAML paths (nics.0.bridge=br1); KEY= unsets; disks+=VOL[:VDEV], nics-=MAC edit lists; passwords only from a file", ArgsUsage: "NAME [KEY=VALUE|KEY+=VALUE|KEY-=VALUE...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "vncpasswd-file", Usage: "file holding the VNC password, - for stdin (never on the command line)"},
			&cli.StringSliceFlag{Name: "secret-file", Usage: "KEY=FILE: set a password key (vncpasswd, spicepasswd, extra.KEY, ...) from FILE, - for stdin (repeat)"},
		},
		Action: guestSetAction,
	}
}

func guestSetAction(c *cli.Context) error {
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
}

func newGuestInstalledCommand() *cli.Command {
	return &cli.Command{
		Name: "installed", Usage: "record that Windows was installed in a guest outside strata (guest install records its own): lint then holds HAL and activation changes against it", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "acpi", DefaultText: "the definition's", Usage: "ACPI as Setup saw it, where it differs from the definition now"},
			&cli.BoolFlag{Name: "apic", DefaultText: "the definition's", Usage: "APIC as Setup saw it, where it differs from the definition now"},
			&cli.IntFlag{Name: "vcpus", DefaultText: "the definition's", Usage: "vCPUs Setup saw, where they differ from the definition now"},
		},
		Action: guestInstalledAction,
	}
}

func guestInstalledAction(c *cli.Context) error {
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
}
