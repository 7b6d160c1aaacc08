package boottest

// A Linux guest that runs one program, for what can only be tested inside
// a guest (device-mapper and LVM: the host has no /dev/mapper/control).
// The run kit is the test guest's Debian cloud kernel and busybox-static
// plus the tools of a few Debian packages (their binaries and the shared
// libraries those load, found through ELF DT_NEEDED as for the guest
// agent), extra kernel modules and configuration files, built from
// packages at first use and cached like the test guest (LinuxKit). Run
// appends the program (a static binary, typically `go test -c` with
// CGO_ENABLED=0), its arguments and environment to the initramfs, attaches
// sparse scratch disks and boots: the guest's /init (guestrun_init.sh)
// runs the program with its output on the second serial port, prints the
// exit code there and powers off.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/run"
)

// RunKitSpec says what a run kit holds beyond the kernel and busybox.
type RunKitSpec struct {
	// Name names the kit in the cache ("lvm").
	Name string
	// Packages are Debian packages unpacked, with everything they depend
	// on (Depends, PreDepends) except Skip, to find Binaries and their
	// libraries in.
	Packages []string
	Skip     []string
	// Binaries are paths inside the unpacked packages ("sbin/lvm"),
	// copied to the same path in the guest with the libraries they load;
	// the packages' symlinks to them (sbin/lvcreate -> lvm) come along.
	Binaries []string
	// Modules are kernel modules /init loads (after their dependencies)
	// besides the test guest's disk modules.
	Modules []string
	// Files are extra files: path in the guest -> content.
	Files map[string]string
}

// LVMSpec is the LVM run kit: lvm2, dmsetup and thin-provisioning-tools
// (thin_check, which lvm runs when it activates a thin pool) from
// Debian 12, the device-mapper modules, the loop module (a loop device
// over an LV is one of the in-use checks' cases), and an lvm.conf for a
// guest without udev, dmeventd or lvmpolld.
var LVMSpec = RunKitSpec{
	Name:     "lvm",
	Packages: []string{"lvm2", "dmsetup", "thin-provisioning-tools"},
	// dmeventd (monitoring) and the init-system packages are not used
	// in a guest whose /init runs one program.
	Skip:     []string{"dmeventd", "init-system-helpers", "sysvinit-utils", "lsb-base", "gcc-12-base"},
	Binaries: []string{"sbin/lvm", "sbin/dmsetup", "usr/sbin/pdata_tools"},
	Modules:  []string{"dm_mod", "dm_snapshot", "dm_thin_pool", "loop"},
	Files:    map[string]string{"etc/lvm/lvm.conf": guestLVMConf},
}

// guestLVMConf: no udev in the guest, so LVM makes its device nodes
// itself and does not wait for udev (udev_sync, udev_rules), scans /dev
// instead of asking udev (obtain_device_list_from_udev), and only the
// scratch disks (global_filter: every command reads the metadata of each
// device it scans, which under TCG is slow); no dmeventd
// (monitoring) and no lvmpolld (lvconvert --merge polls by itself); no
// metadata backups, which only cost time on a scratch disk.
const guestLVMConf = `# lvm.conf of strata's LVM test guest (hvm/boot/boottest LVMSpec)
devices {
	obtain_device_list_from_udev = 0
	use_devicesfile = 0
	external_device_info_source = "none"
	global_filter = [ "a|^/dev/vd|", "r|.*|" ]
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
global {
	use_lvmpolld = 0
	thin_check_executable = "/usr/sbin/thin_check"
}
backup {
	backup = 0
	archive = 0
}
`

// runKitFormat changes whenever the run kit's layout or the way it is
// made does.
const runKitFormat = "strata-runkit-2"

//go:embed guestrun_init.sh
var runInit []byte

// Lines /init prints on the program's serial port (ttyS1).
const (
	RunStart = "strata-guestrun: start" // followed by the guest's uptime in seconds
	RunExit  = "strata-guestrun: exit " // followed by the program's exit code
)

// DisksEnv is the environment variable holding the scratch disks' device
// paths in the guest, space-separated, in the order of RunOptions.Disks.
const DisksEnv = "STRATA_GUEST_DISKS"

// RunKit is a built run kit in the cache. Its files are shared: read
// them, never change them.
type RunKit struct {
	Dir            string            `json:"-"`
	Kernel         string            `json:"-"`
	Initrd         string            `json:"-"`
	Spec           string            `json:"spec"`
	KernelPackage  string            `json:"kernel_package"`
	KernelVersion  string            `json:"kernel_version"`
	BusyboxVersion string            `json:"busybox_version"`
	Packages       map[string]string `json:"packages"` // package -> Debian version
	Libs           []string          `json:"libs"`
	Modules        []string          `json:"modules"`
	Built          bool              `json:"-"`
}

// BuildRunKit returns the run kit of spec in cacheDir ("" for
// DefaultCacheDir), building it when no kit of the same inputs is there
// (as LinuxKit does: the first build downloads from Debian's mirror).
func BuildRunKit(ctx context.Context, cacheDir string, spec RunKitSpec) (*RunKit, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("run kit cache: %w", err)
	}
	k, err := buildRunKit(ctx, cacheDir, spec)
	var de *downloadError
	if err != nil && errors.As(err, &de) && updateAptLists(ctx) {
		k, err = buildRunKit(ctx, cacheDir, spec)
	}
	return k, err
}

func buildRunKit(ctx context.Context, cacheDir string, spec RunKitSpec) (*RunKit, error) {
	kernel, busybox, _, err := resolvePackages(ctx, cacheDir)
	if err != nil {
		return nil, err
	}
	pkgs, err := resolveSpecPackages(ctx, cacheDir, spec)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	specJSON, _ := json.Marshal(spec)
	for _, s := range []string{runKitFormat, string(specJSON), string(runInit), strings.Join(guestModules, ","), kernel.Pkg, kernel.Version, kernel.SHA256, busybox.Version, busybox.SHA256} {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	for _, d := range pkgs {
		fmt.Fprintf(h, "%s %s %s\n", d.Pkg, d.Version, d.SHA256)
	}
	dir := filepath.Join(cacheDir, "run-"+spec.Name+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	if k, err := loadRunKit(dir); err == nil {
		return k, nil
	}
	removeStaleBuilds(cacheDir)
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("run kit cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := makeRunKit(ctx, tmp, spec, kernel, busybox, pkgs); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "kit"), dir); err != nil {
		if k, err2 := loadRunKit(dir); err2 == nil {
			return k, nil
		}
		return nil, fmt.Errorf("run kit cache: %w", err)
	}
	k, err := loadRunKit(dir)
	if err != nil {
		return nil, err
	}
	k.Built = true
	pruneKits(cacheDir, dir)
	return k, nil
}

// resolveSpecPackages names spec's packages and their dependencies with
// their candidate versions, kept in cacheDir while apt's lists are
// unchanged (apt-cache costs seconds).
func resolveSpecPackages(ctx context.Context, cacheDir string, spec RunKitSpec) ([]debPackage, error) {
	type resolved struct {
		Lists    string       `json:"lists"`
		Spec     []string     `json:"spec"`
		Packages []debPackage `json:"packages"`
	}
	memo := filepath.Join(cacheDir, "apt-resolved-run-"+spec.Name+".json")
	key := append(append([]string{}, spec.Packages...), "--skip")
	key = append(key, spec.Skip...)
	lists := aptListsFingerprint()
	var r resolved
	if b, err := os.ReadFile(memo); err == nil && json.Unmarshal(b, &r) == nil && lists != "" && r.Lists == lists &&
		strings.Join(r.Spec, " ") == strings.Join(key, " ") && len(r.Packages) > 0 {
		return r.Packages, nil
	}
	skip := map[string]bool{}
	for _, s := range spec.Skip {
		skip[s] = true
	}
	seen := map[string]bool{}
	var names []string
	for _, p := range spec.Packages {
		c, err := aptDependsClosure(ctx, p, skip)
		if err != nil {
			return nil, fmt.Errorf("run kit %s: %w", spec.Name, err)
		}
		for _, n := range c {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	got, err := aptCandidates(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("run kit %s: %w", spec.Name, err)
	}
	r = resolved{Lists: lists, Spec: key}
	for _, n := range names {
		r.Packages = append(r.Packages, got[n])
	}
	if b, err := json.Marshal(r); err == nil {
		atomicfile.WriteFile(memo, b, atomicfile.Options{}) // a memo: a lost one is made again
	}
	return r.Packages, nil
}

func loadRunKit(dir string) (*RunKit, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kit.json"))
	if err != nil {
		return nil, err
	}
	k := &RunKit{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.cpio")}
	if err := json.Unmarshal(b, k); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	for _, p := range []string{k.Kernel, k.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	os.Chtimes(filepath.Join(dir, "kit.json"), now, now)
	return k, nil
}

// makeRunKit makes tmp/kit: the kernel, and an initramfs of busybox, the
// modules, the spec's binaries with their libraries and files, and /init.
func makeRunKit(ctx context.Context, tmp string, spec RunKitSpec, kernel, busybox debPackage, pkgs []debPackage) error {
	out := filepath.Join(tmp, "kit")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	k := &RunKit{Spec: spec.Name, KernelPackage: kernel.Pkg, KernelVersion: kernel.Version, BusyboxVersion: busybox.Version, Packages: map[string]string{}}
	trees, modDir, err := unpackKernel(ctx, tmp, out, kernel, busybox, "run kit")
	if err != nil {
		return err
	}
	tools := filepath.Join(tmp, "x-tools")
	for _, d := range pkgs {
		deb, err := aptDownload(ctx, tmp, d)
		if err != nil {
			return err
		}
		if _, err := run.Output(ctx, "dpkg-deb", "-x", deb, tools); err != nil {
			return err
		}
		k.Packages[d.Pkg] = d.Version
	}
	order, err := moduleLoadOrder(modDir, append(append([]string{}, guestModules...), spec.Modules...), nil)
	if err != nil {
		return err
	}
	var a cpioArchive
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "lib", "lib/modules", "lib64", "lib/" + multiarch, "strata", "mnt", "etc"} {
		a.dir(d)
	}
	a.node("dev/console", syscall.S_IFCHR|0o600, 5, 1)
	if err := addBusybox(&a, trees[busybox.Pkg], busybox.Pkg, "run kit"); err != nil {
		return err
	}
	a.file("init", 0o755, runInit)
	if k.Modules, err = addModules(&a, order); err != nil {
		return err
	}
	libs, interp, err := addBinaries(&a, tools, spec)
	if err != nil {
		return err
	}
	// glibc loads libgcc_s when a thread is cancelled or exits early.
	if p, err := findLib(tools, "libgcc_s.so.1"); err == nil {
		libs["libgcc_s.so.1"] = p
	}
	if k.Libs, err = addLibs(&a, libs, interp); err != nil {
		return err
	}
	addSpecFiles(&a, spec.Files)
	// Uncompressed: under TCG the kernel's gunzip of the tools costs
	// more than QEMU's copy of the bigger file.
	if err := os.WriteFile(filepath.Join(out, "initrd.cpio"), a.finish(), 0o644); err != nil {
		return err
	}
	meta, _ := json.MarshalIndent(k, "", "  ")
	return os.WriteFile(filepath.Join(out, "kit.json"), append(meta, '\n'), 0o644)
}

// addBinaries adds the spec's binaries from the unpacked tools with the
// package's links to each; it returns the libraries they need (by
// soname) and their ELF interpreter.
func addBinaries(a *cpioArchive, tools string, spec RunKitSpec) (map[string]string, string, error) {
	libs := map[string]string{}
	interp := ""
	for _, bin := range spec.Binaries {
		p := filepath.Join(tools, bin)
		in, l, err := elfClosure(tools, p)
		if err != nil {
			return nil, "", fmt.Errorf("run kit %s: %s: %w", spec.Name, bin, err)
		}
		interp = in
		for n, f := range l {
			libs[n] = f
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", err
		}
		a.file(bin, 0o755, b)
		// The package's links to the binary (lvcreate -> lvm), so that
		// every command name works in the guest. An unreadable
		// directory has no links to add.
		ents, _ := os.ReadDir(filepath.Dir(p))
		for _, e := range ents {
			lp := filepath.Join(filepath.Dir(p), e.Name())
			if t, err := os.Readlink(lp); err == nil && filepath.Base(t) == filepath.Base(bin) {
				a.symlink(filepath.Join(filepath.Dir(bin), e.Name()), t)
			}
		}
	}
	return libs, interp, nil
}

// addSpecFiles adds the spec's files (guest path to content) in sorted
// order, after their directories, parents first (a parent sorts before
// its children); etc is already there.
func addSpecFiles(a *cpioArchive, specFiles map[string]string) {
	files := make([]string, 0, len(specFiles))
	for f := range specFiles {
		files = append(files, f)
	}
	sort.Strings(files)
	made := map[string]bool{}
	for _, f := range files {
		for d := filepath.Dir(f); d != "." && d != "etc"; d = filepath.Dir(d) {
			made[d] = true
		}
	}
	ds := make([]string, 0, len(made))
	for d := range made {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	for _, d := range ds {
		a.dir(d)
	}
	for _, f := range files {
		a.file(f, 0o644, []byte(specFiles[f]))
	}
}

// RunOptions is one run of a program in a run kit's guest.
type RunOptions struct {
	// Program is a static binary for linux/amd64 (CGO_ENABLED=0).
	Program string
	// Args and Env (KEY=VALUE) are the program's; neither may hold a
	// newline. The program runs in /tmp with PATH set and DisksEnv
	// naming the scratch disks.
	Args []string
	Env  []string
	// Files are more files for the guest: path in the guest (relative,
	// e.g. "strata/bin/strata") -> file on the host; executables keep
	// their mode. A static strata binary goes here for scenarios that
	// run it.
	Files map[string]string
	// Disks are the sizes in bytes of sparse raw scratch disks, attached
	// as virtio disks (/dev/vda, /dev/vdb, ...) in this order.
	Disks []int64
	// MemoryMiB is the guest's memory (default 512).
	MemoryMiB int
	// Output, when set, receives the program's output as it arrives.
	Output io.Writer
	// WorkDir holds the disks and logs (default: a new temporary
	// directory, removed afterwards).
	WorkDir string
}

// RunResult is what a run showed.
type RunResult struct {
	Output   string        // the program's output (stdout and stderr)
	Console  string        // the kernel's and /init's console (ttyS0)
	ExitCode int           // the program's exit code; -1 when it did not finish
	Boot     time.Duration // from QEMU's start to the program's start
	// Uptime is the guest kernel's uptime when the program started:
	// Boot less QEMU's own start and loading of the kernel and initramfs.
	Uptime time.Duration
	Total  time.Duration // from QEMU's start to its exit
}

// Run boots the kit with the program and waits for the guest to power
// off. An error means the guest did not run the program to its end (the
// result still holds what it printed); a program that failed is an exit
// code other than 0, not an error.
func (k *RunKit) Run(ctx context.Context, o RunOptions) (*RunResult, error) {
	if err := checkRunOptions(o); err != nil {
		return nil, err
	}
	work := o.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "strata-guestrun-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	initrd, err := k.runInitrd(o, work)
	if err != nil {
		return nil, err
	}
	console := filepath.Join(work, "console.log")
	args, err := k.qemuArgs(o, work, initrd, console)
	if err != nil {
		return nil, err
	}
	res, werr, scanErr, err := runQEMU(ctx, args, o.Output)
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(console); err == nil {
		res.Console = string(b)
	}
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("run kit: the guest did not finish in time: %w", ctx.Err())
	case werr != nil:
		return res, werr
	case scanErr != nil:
		return res, fmt.Errorf("run kit: reading the program's output: %w", scanErr)
	case res.ExitCode < 0:
		return res, errors.New("run kit: the guest powered off without the program's exit code (see its console)")
	}
	return res, nil
}

// checkRunOptions refuses arguments and environment entries the guest's
// line-based files cannot carry.
func checkRunOptions(o RunOptions) error {
	for _, s := range append(append([]string{}, o.Args...), o.Env...) {
		if strings.ContainsAny(s, "\n\x00") {
			return fmt.Errorf("run kit: argument or environment %q holds a newline", s)
		}
	}
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("run kit: environment entry %q is not KEY=VALUE", e)
		}
	}
	return nil
}

// runInitrd writes the run's initrd into work: the kit's, with the run's
// part (program, arguments, environment, disk count, files) as a second
// archive appended (the kernel unpacks them in order; each must start
// 4-byte aligned).
func (k *RunKit) runInitrd(o RunOptions, work string) (string, error) {
	prog, err := os.ReadFile(o.Program)
	if err != nil {
		return "", fmt.Errorf("run kit: %w", err)
	}
	var a cpioArchive
	a.file("strata/program", 0o755, prog)
	a.file("strata/args", 0o644, []byte(lines(o.Args)))
	a.file("strata/env", 0o644, []byte(lines(o.Env)))
	a.file("strata/disks", 0o644, []byte(strconv.Itoa(len(o.Disks))+"\n"))
	if err := addFiles(&a, o.Files); err != nil {
		return "", err
	}
	base, err := os.ReadFile(k.Initrd)
	if err != nil {
		return "", err
	}
	for len(base)%4 != 0 {
		base = append(base, 0)
	}
	initrd := filepath.Join(work, "initrd")
	return initrd, os.WriteFile(initrd, append(base, a.finish()...), 0o644)
}

// qemuArgs is QEMU's command line for the run (TCG, the kernel's console
// to a file, the program's output on stdout), with its scratch disks
// made in work.
func (k *RunKit) qemuArgs(o RunOptions, work, initrd, console string) ([]string, error) {
	mem := o.MemoryMiB
	if mem == 0 {
		mem = 512
	}
	args := []string{"-machine", "pc", "-accel", "tcg", "-m", strconv.Itoa(mem), "-display", "none", "-nodefaults", "-no-reboot",
		"-kernel", k.Kernel, "-initrd", initrd, "-append", "console=ttyS0,115200 quiet panic=1",
		"-chardev", "file,id=console,path=" + console, "-serial", "chardev:console", "-serial", "stdio"}
	for i, size := range o.Disks {
		p := filepath.Join(work, fmt.Sprintf("disk%d.raw", i))
		f, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		err = f.Truncate(size)
		f.Close()
		if err != nil {
			return nil, err
		}
		// cache=unsafe: scratch disks need no flush to the host's disk.
		args = append(args, "-drive", "file="+p+",format=raw,if=virtio,cache=unsafe")
	}
	return args, nil
}

// runQEMU runs QEMU and reads the program's output from its stdout until
// it ends. err: QEMU did not start; werr: it ended badly; scanErr: the
// output could not be read.
func runQEMU(ctx context.Context, args []string, echo io.Writer) (res *RunResult, werr, scanErr, err error) {
	qemu, err := run.Look("qemu-system-x86_64")
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	res = &RunResult{ExitCode: -1}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	scanErr = readProgramOutput(stdout, res, start, echo)
	// A line too long for the scanner ends the loop: keep reading, so
	// that QEMU never blocks on a full pipe.
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		werr = fmt.Errorf("run kit: qemu: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	res.Total = time.Since(start)
	return res, werr, scanErr, nil
}

// readProgramOutput reads the guest's stdout into res: the start and
// exit markers, and every other line as the program's output (echoed
// when echo is set).
func readProgramOutput(stdout io.Reader, res *RunResult, start time.Time, echo io.Writer) error {
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if v, ok := strings.CutPrefix(line, RunStart); ok {
			res.Boot = time.Since(start)
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				res.Uptime = time.Duration(f * float64(time.Second))
			}
			continue
		}
		if v, ok := strings.CutPrefix(line, RunExit); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				res.ExitCode = n
			}
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
		if echo != nil {
			fmt.Fprintln(echo, line)
		}
	}
	res.Output = out.String()
	return sc.Err()
}

// addFiles adds host files to a, under the guest paths given, with the
// directories they need (those of the kit are there already; a
// directory given twice is harmless to the kernel's unpacking).
func addFiles(a *cpioArchive, files map[string]string) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		if p == "" || filepath.IsAbs(p) || p != filepath.Clean(p) || strings.HasPrefix(p, "..") {
			return fmt.Errorf("run kit: guest path %q must be relative and clean", p)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	made := map[string]bool{}
	for _, p := range paths {
		var dirs []string
		for d := filepath.Dir(p); d != "." && !made[d]; d = filepath.Dir(d) {
			made[d] = true
			dirs = append([]string{d}, dirs...)
		}
		for _, d := range dirs {
			a.dir(d)
		}
		fi, err := os.Stat(files[p])
		if err != nil {
			return fmt.Errorf("run kit: %w", err)
		}
		b, err := os.ReadFile(files[p])
		if err != nil {
			return fmt.Errorf("run kit: %w", err)
		}
		a.file(p, uint32(fi.Mode().Perm()), b)
	}
	return nil
}

func lines(ss []string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// GoTestBinary compiles the tests of the Go package pkg (an import path
// or a directory) into a static binary at out, for Run.
func GoTestBinary(ctx context.Context, pkg, out string, tags ...string) error {
	argv := []string{"go", "test", "-c", "-o", out}
	if len(tags) > 0 {
		argv = append(argv, "-tags", strings.Join(tags, ","))
	}
	argv = append(argv, pkg)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, b)
	}
	return nil
}
