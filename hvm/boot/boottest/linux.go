package boottest

// The Linux test guest: a Debian cloud kernel and a busybox-static
// initramfs whose /init does one job chosen on the kernel command line
// (testguest_init.sh), built from Debian packages downloaded at build time
// (never committed binaries) and cached. Install mode makes the empty first
// hard disk a marker disk (markerdisk.go) that boots by itself; patch mode
// overwrites its marker; so an end-to-end test sees a two-phase install, a
// bad patch and a rollback through what the disk prints when it boots.

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/run"
)

// Modes of the test guest (strata.mode= on the kernel command line).
const (
	// ModeInstall makes the guest's first hard disk (all zeros, or already
	// a marker disk) a marker disk printing InstalledMarker, then prints
	// InstallDone and powers off.
	ModeInstall = "install"
	// ModePatch overwrites the marker of an installed disk with
	// BadPatchMarker, prints PatchApplied and powers off.
	ModePatch = "patch"
	// ModeCheck prints CheckPrefix and the disk's marker value, and powers
	// off.
	ModeCheck = "check"
	// ModeWait prints WaitingForPowerButton, then powers off when the ACPI
	// power button is pressed (after printing PowerButtonPressed).
	ModeWait = "wait"
	// ModeAgent runs the QEMU guest agent (the real qemu-ga, on the
	// virtio-serial port org.qemu.guest_agent.0) with a freeze hook that
	// prints AgentFreezeHook, on an ext2 filesystem on the first hard disk
	// (made when the disk has none) mounted at /mnt with the kernel's
	// writeback off, so that only a sync or a freeze puts the guest's
	// writes on the disk; it writes a counter to /mnt/count (AgentCountFile)
	// a few times a second, printing AgentWrote and the value after each
	// write, prints AgentReady once the agent runs, and powers off when the
	// ACPI power button is pressed, as ModeWait does.
	ModeAgent = "agent"
)

// Extra kernel arguments (Append, QEMUArgs, ISOSource).
const (
	// DiskWaits makes the disk that install (or patch) writes wait, when it
	// boots, for the ACPI power button after printing its marker
	// (MarkerWaiting), so that a guest booted from it runs until stopped.
	DiskWaits = "strata.disk=wait"
	// EndWithReboot ends the Linux guest's job with a reboot instead of a
	// power-off, as an installer's first phase does (on_reboot=destroy
	// then stops the guest). It prints "strata-testguest: rebooting".
	EndWithReboot = "strata.end=reboot"
	// HotplugWrite makes the waiting guest (ModeWait) write a line to
	// each disk hot-plugged into it, after DiskAdded.
	HotplugWrite = "strata.hotplug=write"
	// FloodingAgent replaces qemu-ga in ModeAgent with a hostile agent:
	// it never answers, and writes into the agent's channel without end,
	// with no line end and no 0xFF byte.
	FloodingAgent = "strata.agent=flood"
)

// Lines the Linux guest prints on its serial console (ttyS0).
const (
	InstallDone           = "strata-testguest: install done"
	PatchApplied          = "strata-testguest: patch applied"
	CheckPrefix           = "strata-testguest: disk marker: "
	WaitingForPowerButton = "strata-testguest: waiting for the power button"
	PowerButtonPressed    = "strata-testguest: power button pressed"
	GuestFailed           = "strata-testguest: FAILED" // followed by the reason
	// While it waits (ModeWait), the guest reports devices hot-plugged
	// into it or removed from it: DiskAdded and DeviceRemoved are
	// followed by the kernel's name (vdb, eth0), NICAdded by the name
	// and the MAC; HotplugWrote and the name when it wrote to a new disk.
	DiskAdded     = "strata-testguest: disk added: "
	NICAdded      = "strata-testguest: nic added: "
	DeviceRemoved = "strata-testguest: device removed: "
	HotplugWrote  = "strata-testguest: wrote to "
	// ModeAgent: AgentReady once qemu-ga runs; AgentWrote and the value
	// (decimal) after each write of the counter; AgentFreezeHook and
	// "freeze" or "thaw" when qemu-ga runs its fsfreeze hook, which it
	// does just before it freezes the filesystems and just after it
	// thaws them.
	AgentReady      = "strata-testguest: agent ready"
	AgentWrote      = "strata-testguest: agent wrote "
	AgentFreezeHook = "strata-testguest: fsfreeze hook: "
	// AgentCountFile is the counter's file on the agent mode's filesystem.
	AgentCountFile = "/count"
)

// Paths inside an ISO source directory (ISOSource) and the arguments that
// make it bootable.
const (
	ISOBootImage   = "isolinux/isolinux.bin"
	ISOBootCatalog = "isolinux/boot.cat"
	isoKernel      = "boot/vmlinuz"
	isoInitrd      = "boot/initrd.gz"
)

// Host files copied into an ISO source (Debian isolinux and
// syslinux-common, in TEST_DEPS and DEMO_DEPS).
var (
	IsolinuxBin = "/usr/lib/ISOLINUX/isolinux.bin"
	LdlinuxC32  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// KernelPackageEnv pins the kernel package (e.g.
// linux-image-6.1.0-57-cloud-amd64) instead of the newest cloud kernel the
// apt lists offer.
const KernelPackageEnv = "STRATA_TESTGUEST_KERNEL"

// kitFormat changes whenever the kit's layout or the way it is made does,
// so that a cached kit of an older layout is rebuilt.
const kitFormat = "strata-testguest-3"

// guestModules are loaded by /init, each after what it depends on: IDE
// disks and CDs on QEMU's pc machine (ata_piix), virtio disks, ISO 9660,
// and the ACPI power button as an input device. optionalModules are loaded
// where the kernel has them: the cloud kernel has no AHCI (q35's SATA) and
// no LSI SCSI (strata's sd* disks under QEMU), so with it the test guest's
// disk must be an IDE (hd*) or virtio one; a kernel pinned with
// KernelPackageEnv to the generic flavour (linux-image-6.1.0-*-amd64) sees
// them all.
var (
	guestModules    = []string{"ata_piix", "sd_mod", "sr_mod", "isofs", "virtio_pci", "virtio_blk", "button", "evdev", "virtio_console"}
	optionalModules = []string{"virtio_scsi", "ahci", "sym53c8xx", "virtio_net"}
)

//go:embed testguest_init.sh
var guestInit []byte

// fsfreezeHook is qemu-ga's fsfreeze hook in the guest (-F): qemu-ga runs
// it with "freeze" before freezing and "thaw" after thawing, its output
// going nowhere, so it writes to the console itself.
const fsfreezeHook = "#!/bin/sh\necho \"" + AgentFreezeHook + "$1\" >/dev/console\nexit 0\n"

// agentPackage is the guest agent's Debian package; agentSkip are
// packages its dependencies name that an initramfs without an init
// system does not need (init-system-helpers pulls in perl; gcc-12-base
// holds only documentation). Only the shared libraries qemu-ga loads
// (its ELF DT_NEEDED, recursively, and libgcc_s, which glibc loads for
// thread cancellation) go into the initramfs.
const agentPackage = "qemu-guest-agent"

var agentSkip = map[string]bool{"init-system-helpers": true, "gcc-12-base": true}

// Kit is a built test guest: a kernel and an initramfs in a cache directory.
// Its files are shared by every caller of the same cache: read them, never
// change them.
type Kit struct {
	Dir            string   `json:"-"`               // the kit's directory in the cache
	Kernel         string   `json:"-"`               // path of the kernel (bzImage)
	Initrd         string   `json:"-"`               // path of the gzipped cpio initramfs
	AgentInitrd    string   `json:"-"`               // Initrd with qemu-ga appended, for ModeAgent only (InitrdFor)
	KernelPackage  string   `json:"kernel_package"`  // e.g. linux-image-6.1.0-57-cloud-amd64
	KernelVersion  string   `json:"kernel_version"`  // its Debian version
	BusyboxVersion string   `json:"busybox_version"` // busybox-static's Debian version
	AgentVersion   string   `json:"agent_version"`   // qemu-guest-agent's Debian version
	AgentLibs      []string `json:"agent_libs"`      // the shared libraries qemu-ga loads
	Modules        []string `json:"modules"`         // module files in load order
	Built          bool     `json:"-"`               // this call built it (false: it was cached)
}

// DefaultCacheDir is $XDG_CACHE_HOME/strata-testguest, else
// ~/.cache/strata-testguest, else one under the temporary directory.
func DefaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "strata-testguest")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".cache", "strata-testguest")
	}
	return filepath.Join(os.TempDir(), "strata-testguest")
}

// LinuxKit returns the test guest kit in cacheDir ("" for DefaultCacheDir),
// building it when no kit made from the same inputs (the Debian packages'
// versions and hashes, /init, the module list, the boot sector) is there.
// A build downloads the newest linux-image-6.1.0-*-cloud-amd64 (or the one
// KernelPackageEnv names) and busybox-static with apt-get download, so the
// first one needs Debian's mirror; it builds in a temporary directory and
// renames it into place, so processes building at once do not collide.
//
// A download that fails is tried once more after apt-get update (as root):
// lists older than the mirror name versions it no longer has.
func LinuxKit(ctx context.Context, cacheDir string) (*Kit, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("test guest cache: %w", err)
	}
	k, err := linuxKit(ctx, cacheDir)
	var de *downloadError
	if err != nil && errors.As(err, &de) && updateAptLists(ctx) {
		k, err = linuxKit(ctx, cacheDir)
	}
	return k, err
}

// downloadError is an apt-get download that failed.
type downloadError struct {
	pkg string
	err error
}

func (e *downloadError) Error() string {
	return fmt.Sprintf("test guest: downloading %s from Debian's mirror failed (the first build needs the network): %v", e.pkg, e.err)
}

func (e *downloadError) Unwrap() error { return e.err }

func linuxKit(ctx context.Context, cacheDir string) (*Kit, error) {
	kernel, busybox, agent, err := resolvePackages(ctx, cacheDir)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, s := range []string{kitFormat, kernel.Pkg, kernel.Version, kernel.SHA256, busybox.Pkg, busybox.Version, busybox.SHA256, strings.Join(guestModules, ","), strings.Join(optionalModules, ","), string(guestInit), string(MarkerBootSector()), fsfreezeHook} {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	for _, d := range agent {
		fmt.Fprintf(h, "%s %s %s\n", d.Pkg, d.Version, d.SHA256)
	}
	dir := filepath.Join(cacheDir, strings.TrimPrefix(kernel.Pkg, "linux-image-")+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	if k, err := loadKit(dir); err == nil {
		return k, nil
	}
	removeStaleBuilds(cacheDir)
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("test guest cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	k, err := buildKit(ctx, tmp, kernel, busybox, agent)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "kit"), dir); err != nil {
		// Another process built the same kit first: use its.
		if k2, err2 := loadKit(dir); err2 == nil {
			return k2, nil
		}
		return nil, fmt.Errorf("test guest cache: %w", err)
	}
	k, err = loadKit(dir)
	if err != nil {
		return nil, err
	}
	k.Built = true
	pruneKits(cacheDir, dir)
	return k, nil
}

func loadKit(dir string) (*Kit, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kit.json"))
	if err != nil {
		return nil, err
	}
	k := &Kit{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.gz"), AgentInitrd: filepath.Join(dir, "initrd-agent.gz")}
	if err := json.Unmarshal(b, k); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	for _, p := range []string{k.Kernel, k.Initrd, k.AgentInitrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	// kit.json's time says when the kit was last used (pruneKits).
	now := time.Now()
	os.Chtimes(filepath.Join(dir, "kit.json"), now, now)
	return k, nil
}

// pruneKits removes the kits in cacheDir other than keep that nobody used
// for a day: those of older kernels or of an older /init.
func pruneKits(cacheDir, keep string) {
	kits, _ := filepath.Glob(filepath.Join(cacheDir, "*", "kit.json"))
	for _, j := range kits {
		d := filepath.Dir(j)
		if fi, err := os.Stat(j); err == nil && d != keep && time.Since(fi.ModTime()) > 24*time.Hour {
			os.RemoveAll(d)
		}
	}
}

// removeStaleBuilds removes build directories a killed process left.
func removeStaleBuilds(cacheDir string) {
	old, _ := filepath.Glob(filepath.Join(cacheDir, ".build-*"))
	for _, d := range old {
		if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(d)
		}
	}
}

// Append is the kernel command line of a mode: the serial console on
// ttyS0, a reboot (which -no-reboot turns into QEMU's exit) on a panic,
// then extra arguments (e.g. "strata.marker=installed-2").
func (k *Kit) Append(mode string, extra ...string) string {
	return strings.Join(append([]string{"console=ttyS0,115200", "quiet", "panic=1", "strata.mode=" + mode}, extra...), " ")
}

// InitrdFor is the initramfs of mode: AgentInitrd for ModeAgent, else
// Initrd. The agent's part (qemu-ga and its libraries) is kept out of
// the other modes' initramfs: unpacking it costs seconds at every boot
// under TCG.
func (k *Kit) InitrdFor(mode string) string {
	if mode == ModeAgent {
		return k.AgentInitrd
	}
	return k.Initrd
}

// QEMUArgs boots the kit directly (-kernel, -initrd, -append), for tests
// that do not need the CD; the caller adds the machine, disks and serial.
func (k *Kit) QEMUArgs(mode string, extra ...string) []string {
	return []string{"-kernel", k.Kernel, "-initrd", k.InitrdFor(mode), "-append", k.Append(mode, extra...)}
}

// ISOSource fills dst (created if missing) with the tree of a bootable CD
// running mode: isolinux/isolinux.bin, ldlinux.c32 and isolinux.cfg (serial
// console, no prompt), boot/vmlinuz and boot/initrd.gz. Make it an ISO with
// `strata iso build` and ISOBuildArgs, or with the kit's XorrisoISO.
func (k *Kit) ISOSource(mode, dst string, extra ...string) error {
	cfg := "SERIAL 0 115200\nDEFAULT strata\nPROMPT 0\nTIMEOUT 0\n" +
		"LABEL strata\n  KERNEL /" + isoKernel + "\n  INITRD /" + isoInitrd + "\n  APPEND " + k.Append(mode, extra...) + "\n"
	for _, d := range []string{"isolinux", "boot"} {
		if err := os.MkdirAll(filepath.Join(dst, d), 0o755); err != nil {
			return err
		}
	}
	for _, c := range []struct{ from, to, pkg string }{
		{IsolinuxBin, ISOBootImage, "isolinux"},
		{LdlinuxC32, "isolinux/ldlinux.c32", "syslinux-common"},
		{k.Kernel, isoKernel, ""},
		{k.InitrdFor(mode), isoInitrd, ""},
	} {
		if err := copyFile(c.from, filepath.Join(dst, c.to)); err != nil {
			if c.pkg != "" && errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s is missing: install the Debian package %s", c.from, c.pkg)
			}
			return err
		}
	}
	return os.WriteFile(filepath.Join(dst, "isolinux", "isolinux.cfg"), []byte(cfg), 0o644)
}

// ISOBuildArgs are the strata arguments (after global flags such as
// --home) that make src, an ISOSource tree, the bootable iso NAME.
func ISOBuildArgs(src, name string) []string {
	return []string{"iso", "build", src, name, "--boot", ISOBootImage, "--boot-catalog", ISOBootCatalog, "--boot-info-table"}
}

// StrataISO runs `strata --home HOME iso build` (ISOBuildArgs) with the
// strata binary given and returns the path of the image in HOME's pool.
func StrataISO(ctx context.Context, strata, home, src, name string) (string, error) {
	out, err := run.Output(ctx, append([]string{strata, "--home", home, "--output", "json"}, ISOBuildArgs(src, name)...)...)
	if err != nil {
		return "", err
	}
	var m struct {
		Path     string `json:"path"`
		Bootable bool   `json:"bootable"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("strata iso build: %w: %s", err, out)
	}
	if m.Path == "" || !m.Bootable {
		return "", fmt.Errorf("strata iso build made no bootable image: %s", out)
	}
	return m.Path, nil
}

// XorrisoISO writes a bootable ISO of mode to the file dst with xorriso,
// for callers without a strata home; the end-to-end test and the demo use
// strata's own `iso build` (StrataISO) instead.
func (k *Kit) XorrisoISO(ctx context.Context, mode, dst string, extra ...string) error {
	src, err := os.MkdirTemp(filepath.Dir(dst), ".iso-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := k.ISOSource(mode, src, extra...); err != nil {
		return err
	}
	_, err = run.Output(ctx, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-V", "STRATA_"+strings.ToUpper(mode),
		"-b", ISOBootImage, "-c", ISOBootCatalog, "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-o", dst, src)
	return err
}

// debPackage is a package as apt's lists describe its candidate version.
type debPackage struct {
	Pkg     string `json:"package"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// aptLists is where apt keeps the package lists it resolves from.
const aptLists = "/var/lib/apt/lists"

// resolvePackages names the kernel (KernelPackageEnv, else the cloud kernel
// of the highest ABI number apt's lists offer) and busybox-static with
// their candidate versions. Asking apt-cache costs about 2 s where apt
// keeps no binary cache (Debian's container images), so the answer is kept
// in cacheDir for as long as apt's lists are unchanged. With no lists (a
// fresh machine) it runs apt-get update once, as root.
func resolvePackages(ctx context.Context, cacheDir string) (kernel, busybox debPackage, agent []debPackage, err error) {
	pinned := os.Getenv(KernelPackageEnv)
	type resolved struct {
		Lists   string       `json:"lists"`
		Pinned  string       `json:"pinned"`
		Kernel  debPackage   `json:"kernel"`
		Busybox debPackage   `json:"busybox"`
		Agent   []debPackage `json:"agent"`
	}
	memo := filepath.Join(cacheDir, "apt-resolved.json")
	lists := aptListsFingerprint()
	var r resolved
	if b, err := os.ReadFile(memo); err == nil && json.Unmarshal(b, &r) == nil &&
		lists != "" && r.Lists == lists && r.Pinned == pinned && r.Kernel.Version != "" && r.Busybox.Version != "" && len(r.Agent) > 0 {
		return r.Kernel, r.Busybox, r.Agent, nil
	}
	for try := 0; ; try++ {
		kpkg := pinned
		if kpkg == "" {
			kpkg, err = newestCloudKernel(ctx)
		}
		var agentPkgs []string
		if err == nil {
			agentPkgs, err = aptDependsClosure(ctx, agentPackage, agentSkip)
		}
		var got map[string]debPackage
		if err == nil {
			got, err = aptCandidates(ctx, append([]string{kpkg, "busybox-static"}, agentPkgs...)...)
		}
		if err == nil {
			r = resolved{Lists: aptListsFingerprint(), Pinned: pinned, Kernel: got[kpkg], Busybox: got["busybox-static"]}
			for _, p := range agentPkgs {
				r.Agent = append(r.Agent, got[p])
			}
			if b, err := json.Marshal(r); err == nil {
				atomicfile.WriteFile(memo, b, atomicfile.Options{}) // a memo: a lost one is made again
			}
			return r.Kernel, r.Busybox, r.Agent, nil
		}
		if try > 0 || !updateAptLists(ctx) {
			return kernel, busybox, nil, fmt.Errorf("test guest: %w (the test guest is built from Debian 12 packages: run apt-get update)", err)
		}
	}
}

// aptDependsClosure returns pkg and everything it depends on (Depends and
// PreDepends, the first of alternatives), recursively, except the
// packages in skip and what they alone pull in; sorted, pkg first. One
// apt-cache call answers for the whole tree.
func aptDependsClosure(ctx context.Context, pkg string, skip map[string]bool) ([]string, error) {
	out, err := run.Output(ctx, "apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", pkg)
	if err != nil {
		return nil, err
	}
	deps := parseAptDepends(string(out))
	if _, ok := deps[pkg]; !ok {
		return nil, fmt.Errorf("apt knows no package %s", pkg)
	}
	seen := map[string]bool{pkg: true}
	queue := []string{pkg}
	var rest []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, d := range deps[p] {
			if seen[d] || skip[d] {
				continue
			}
			seen[d] = true
			rest = append(rest, d)
			queue = append(queue, d)
		}
	}
	sort.Strings(rest)
	return append([]string{pkg}, rest...), nil
}

// parseAptDepends reads `apt-cache depends --recurse` output: a package
// name at the start of a line, then its relations indented
// ("  Depends: libc6", " |Depends: a" for an alternative to the next
// line's, "<virtual>" for a virtual package). It keeps Depends and
// PreDepends, the first of alternatives, and no virtual packages.
func parseAptDepends(out string) map[string][]string {
	deps := map[string][]string{}
	cur, skipNext := "", false
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			cur, skipNext = strings.TrimSpace(line), false
			if _, ok := deps[cur]; !ok {
				deps[cur] = nil
			}
			continue
		}
		t := strings.TrimSpace(line)
		alt := strings.HasPrefix(t, "|")
		kind, dep, ok := strings.Cut(strings.TrimPrefix(t, "|"), ": ")
		skip := skipNext
		skipNext = alt && (skip || ok)
		if !ok || skip || (kind != "Depends" && kind != "PreDepends") || strings.HasPrefix(dep, "<") {
			continue
		}
		dep, _, _ = strings.Cut(dep, ":") // an architecture qualifier
		deps[cur] = append(deps[cur], dep)
	}
	return deps
}

// aptListsFingerprint names, sizes and times the files of apt's lists:
// it changes whenever apt-get update brings new ones. "" when there are
// none.
func aptListsFingerprint() string {
	ents, err := os.ReadDir(aptLists)
	if err != nil {
		return ""
	}
	h := sha256.New()
	n := 0
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && strings.Contains(e.Name(), "Packages") {
			fmt.Fprintf(h, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

func newestCloudKernel(ctx context.Context) (string, error) {
	out, err := run.Output(ctx, "apt-cache", "pkgnames", "linux-image-6.1.0-")
	if err != nil {
		return "", err
	}
	best, bestABI := "", -1
	for _, name := range strings.Fields(string(out)) {
		abi, ok := strings.CutSuffix(strings.TrimPrefix(name, "linux-image-6.1.0-"), "-cloud-amd64")
		if n, err := strconv.Atoi(abi); ok && err == nil && n > bestABI {
			best, bestABI = name, n
		}
	}
	if best == "" {
		return "", fmt.Errorf("apt offers no linux-image-6.1.0-*-cloud-amd64 (or set %s)", KernelPackageEnv)
	}
	return best, nil
}

// aptCandidates asks apt-cache for the candidate version of each package.
func aptCandidates(ctx context.Context, pkgs ...string) (map[string]debPackage, error) {
	out, err := run.Output(ctx, append([]string{"apt-cache", "show", "--no-all-versions"}, pkgs...)...)
	if err != nil {
		return nil, err
	}
	got := map[string]debPackage{}
	for _, stanza := range strings.Split(string(out), "\n\n") {
		var d debPackage
		for _, line := range strings.Split(stanza, "\n") {
			if v, ok := strings.CutPrefix(line, "Package: "); ok {
				d.Pkg = v
			} else if v, ok := strings.CutPrefix(line, "Version: "); ok {
				d.Version = v
			} else if v, ok := strings.CutPrefix(line, "SHA256: "); ok {
				d.SHA256 = v
			}
		}
		if _, seen := got[d.Pkg]; d.Pkg != "" && d.Version != "" && !seen {
			got[d.Pkg] = d
		}
	}
	for _, p := range pkgs {
		if _, ok := got[p]; !ok {
			return nil, fmt.Errorf("apt knows no package %s", p)
		}
	}
	return got, nil
}

var (
	aptUpdate    sync.Once
	aptUpdateRan bool
)

// updateAptLists runs apt-get update once per process where it can (as
// root); it reports whether it ran.
func updateAptLists(ctx context.Context) bool {
	aptUpdate.Do(func() {
		if os.Geteuid() == 0 {
			_, err := run.Output(ctx, "apt-get", "update", "-qq")
			aptUpdateRan = err == nil
		}
	})
	return aptUpdateRan
}

// aptDownload fetches pkg=version into dir. apt-get download writes where
// it runs, which storage/run cannot set, so it runs here with the same
// conventions (argv, C locale, killed with its parent) and run's error.
func aptDownload(ctx context.Context, dir string, d debPackage) (string, error) {
	argv := []string{"apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", d.Pkg + "=" + d.Version}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return "", &downloadError{d.Pkg, &run.Error{Argv: argv, ExitCode: code, Stderr: stderr.String(), Err: err}}
	}
	debs, _ := filepath.Glob(filepath.Join(dir, d.Pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("test guest: apt-get download %s left %d packages", d.Pkg, len(debs))
	}
	return debs[0], nil
}

// buildKit makes tmp/kit from the packages.
func buildKit(ctx context.Context, tmp string, kernel, busybox debPackage, agent []debPackage) (*Kit, error) {
	out := filepath.Join(tmp, "kit")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	trees, modDir, err := unpackKernel(ctx, tmp, out, kernel, busybox, "test guest")
	if err != nil {
		return nil, err
	}
	order, err := moduleLoadOrder(modDir, guestModules, optionalModules)
	if err != nil {
		return nil, err
	}
	k := &Kit{KernelPackage: kernel.Pkg, KernelVersion: kernel.Version, BusyboxVersion: busybox.Version}
	var a cpioArchive
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", "strata", "mnt"} {
		a.dir(d)
	}
	// The agent's part is a second archive, appended to the first for
	// AgentInitrd (the kernel unpacks concatenated archives in order).
	var ag cpioArchive
	if err := addAgent(ctx, tmp, &ag, k, agent); err != nil {
		return nil, err
	}
	// The kernel opens /dev/console before /init runs: without it /init
	// has no output.
	a.node("dev/console", syscall.S_IFCHR|0o600, 5, 1)
	if err := addBusybox(&a, trees[busybox.Pkg], busybox.Pkg, "test guest"); err != nil {
		return nil, err
	}
	a.file("init", 0o755, guestInit)
	a.file("strata/bootsector.bin", 0o644, MarkerBootSector())
	if k.Modules, err = addModules(&a, order); err != nil {
		return nil, err
	}
	base, err := gzipped(a.finish())
	if err != nil {
		return nil, err
	}
	withAgent, err := gzipped(ag.finish())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, "initrd.gz"), base, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, "initrd-agent.gz"), append(base, withAgent...), 0o644); err != nil {
		return nil, err
	}
	meta, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "kit.json"), append(meta, '\n'), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// unpackKernel downloads and unpacks the kernel and busybox packages
// under tmp and copies the kernel to out/vmlinuz; it returns the
// unpacked trees by package and the kernel's module tree. what names the
// kit in errors.
func unpackKernel(ctx context.Context, tmp, out string, kernel, busybox debPackage, what string) (map[string]string, string, error) {
	trees := map[string]string{}
	for _, d := range []debPackage{kernel, busybox} {
		deb, err := aptDownload(ctx, tmp, d)
		if err != nil {
			return nil, "", err
		}
		tree := filepath.Join(tmp, "x-"+d.Pkg)
		if _, err := run.Output(ctx, "dpkg-deb", "-x", deb, tree); err != nil {
			return nil, "", err
		}
		trees[d.Pkg] = tree
	}
	// A Glob error is a bad pattern, and these are constant: none.
	vmlinuz, _ := filepath.Glob(filepath.Join(trees[kernel.Pkg], "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(trees[kernel.Pkg], "lib", "modules", "*"))
	if len(vmlinuz) != 1 || len(mods) != 1 {
		return nil, "", fmt.Errorf("%s: %s holds %d kernels and %d module trees, want one of each", what, kernel.Pkg, len(vmlinuz), len(mods))
	}
	if err := copyFile(vmlinuz[0], filepath.Join(out, "vmlinuz")); err != nil {
		return nil, "", err
	}
	return trees, mods[0], nil
}

// addBusybox adds busybox from its unpacked package, and sh as a link
// to it.
func addBusybox(a *cpioArchive, tree, pkg, what string) error {
	bb, err := os.ReadFile(filepath.Join(tree, "bin", "busybox"))
	if err != nil {
		return fmt.Errorf("%s: %s: %w", what, pkg, err)
	}
	a.file("bin/busybox", 0o755, bb)
	a.symlink("bin/sh", "busybox")
	return nil
}

// addModules adds the kernel modules in load order, with the list /init
// loads them from (lib/modules/load); it returns their names.
func addModules(a *cpioArchive, order []string) ([]string, error) {
	var names []string
	var load strings.Builder
	for _, m := range order {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		a.file("lib/modules/"+filepath.Base(m), 0o644, b)
		fmt.Fprintln(&load, filepath.Base(m))
		names = append(names, filepath.Base(m))
	}
	a.file("lib/modules/load", 0o644, []byte(load.String()))
	return names, nil
}

func gzipped(b []byte) ([]byte, error) {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gz.Bytes(), nil
}

// moduleLoadOrder finds each wanted module in tree (lib/modules/VERSION)
// and returns the files of it and of everything it depends on (the
// "depends=" of each module's .modinfo, which is what depmod reads: the
// package ships no modules.dep), dependencies first. A wanted module that
// is built in (modules.builtin) needs no file; an optional one the kernel
// lacks is left out.
func moduleLoadOrder(tree string, wanted, optional []string) ([]string, error) {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	files := map[string]string{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".ko") {
			files[norm(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(tree, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[norm(strings.TrimSuffix(filepath.Base(l), ".ko"))] = true
		}
	}
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(m string, chain []string) error
	visit = func(m string, chain []string) error {
		m = norm(m)
		switch state[m] {
		case 1:
			return fmt.Errorf("test guest: module dependency cycle %s", strings.Join(append(chain, m), " -> "))
		case 2:
			return nil
		}
		p, ok := files[m]
		if !ok {
			if builtin[m] {
				state[m] = 2
				return nil
			}
			return fmt.Errorf("test guest: kernel module %s (needed by %s) is not in %s", m, strings.Join(chain, " -> "), tree)
		}
		state[m] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, m)); err != nil {
				return err
			}
		}
		state[m] = 2
		order = append(order, p)
		return nil
	}
	for _, m := range wanted {
		if err := visit(m, []string{"init"}); err != nil {
			return nil, err
		}
	}
	for _, m := range optional {
		if _, ok := files[norm(m)]; !ok {
			continue
		}
		if err := visit(m, []string{"init"}); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDepends reads "depends=a,b" from a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("test guest: module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("test guest: module %s has no .modinfo", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			deps = append(deps, strings.Split(string(v), ",")...)
		}
	}
	sort.Strings(deps)
	return deps, nil
}

// cpioArchive writes the "newc" cpio format the kernel unpacks as an
// initramfs: a 110-byte ASCII header per entry, the name and the data each
// padded to 4 bytes, a TRAILER!!! entry last. Times are 0 and owners root,
// so the same inputs give the same bytes.
type cpioArchive struct {
	buf bytes.Buffer
	ino int
}

func (a *cpioArchive) entry(name string, mode uint32, data []byte, rmajor, rminor int) {
	a.ino++
	nlink := 1
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	fmt.Fprintf(&a.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		a.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	a.buf.WriteString(name)
	a.buf.WriteByte(0)
	a.pad()
	a.buf.Write(data)
	a.pad()
}

func (a *cpioArchive) pad() {
	for a.buf.Len()%4 != 0 {
		a.buf.WriteByte(0)
	}
}

func (a *cpioArchive) dir(name string) { a.entry(name, syscall.S_IFDIR|0o755, nil, 0, 0) }
func (a *cpioArchive) file(name string, perm uint32, data []byte) {
	a.entry(name, syscall.S_IFREG|perm, data, 0, 0)
}
func (a *cpioArchive) symlink(name, target string) {
	a.entry(name, syscall.S_IFLNK|0o777, []byte(target), 0, 0)
}
func (a *cpioArchive) node(name string, mode uint32, major, minor int) {
	a.entry(name, mode, nil, major, minor)
}

func (a *cpioArchive) finish() []byte {
	a.ino = -1 // the trailer's inode is 0
	a.entry("TRAILER!!!", 0, nil, 0, 0)
	return a.buf.Bytes()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
