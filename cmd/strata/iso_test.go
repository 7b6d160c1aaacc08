package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// isoEnv is a state home for one test.
type isoEnv struct {
	t    *testing.T
	home string
}

func newISOEnv(t *testing.T) *isoEnv {
	return &isoEnv{t: t, home: filepath.Join(t.TempDir(), "home")}
}

// run runs strata and returns stdout, stderr and the exit code.
func (e *isoEnv) run(args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// strataBinary (harness_test.go) builds the real binary once per run.
	cmd := exec.CommandContext(ctx, strataBinary(e.t), append([]string{"--home", e.home}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// ok runs strata and fails the test unless it succeeds.
func (e *isoEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("strata %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// isoJSON is the JSON of an iso as the README documents it.
type isoJSON struct {
	Name        string  `json:"name"`
	Path        string  `json:"path"`
	Pool        string  `json:"pool"`
	Label       string  `json:"label"`
	Size        int64   `json:"size"`
	SHA256      string  `json:"sha256"`
	Bootable    bool    `json:"bootable"`
	BadSectors  []int64 `json:"bad_sectors"`
	Created     string  `json:"created"`
	Source      string  `json:"source"`
	BootEntries []struct {
		Platform    string `json:"platform"`
		Emulation   string `json:"emulation"`
		Bootable    bool   `json:"bootable"`
		SectorCount int    `json:"sector_count"`
		Offset      int64  `json:"offset"`
		File        string `json:"file"`
	} `json:"boot_entries"`
	Files []struct {
		Path string `json:"path"`
		Type string `json:"type"`
		Size int64  `json:"size"`
	} `json:"files"`
}

func (e *isoEnv) info(arg string, extra ...string) isoJSON {
	e.t.Helper()
	out := e.ok(append([]string{"-o", "json", "iso", "info", arg}, extra...)...)
	var m isoJSON
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("iso info JSON: %v\n%s", err, out)
	}
	if m.BadSectors == nil || m.BootEntries == nil {
		e.t.Fatalf("bad_sectors and boot_entries must be arrays, never null:\n%s", out)
	}
	return m
}

func (e *isoEnv) list() []isoJSON {
	e.t.Helper()
	var l []isoJSON
	out := e.ok("-o", "json", "iso", "list")
	if err := json.Unmarshal([]byte(out), &l); err != nil || l == nil {
		e.t.Fatalf("iso list JSON (must be an array): %v\n%s", err, out)
	}
	return l
}

func needTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s is not installed (apt-get install -y %s)", tool, pkg)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
}

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// tree maps each entry under root to what must match: type, size,
// content hash, link target. withMeta adds mode and mtime (to prove the
// source is unchanged).
func tree(t *testing.T, root string, withMeta bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		v := fi.Mode().Type().String()
		switch {
		case fi.Mode().IsRegular():
			v += fmt.Sprintf(" %d %s", fi.Size(), fileSHA(t, p))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		}
		if withMeta {
			v += " " + fi.Mode().String() + " " + fi.ModTime().String()
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q is %q, want %q", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %q", what, k)
		}
	}
}

// sourceTree makes a folder with long mixed-case names, a dotfile, a
// symlink and nested directories.
func sourceTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{
		"README.txt":                            "install me\n",
		".disk-info":                            "strata test disc\n",
		"isolinux/isolinux.cfg":                 "SERIAL 0 115200\n",
		"pool/main/s/strata/Long File Name.deb": strings.Repeat("deb", 40000),
		"a/b/c/d/e/f/g/h/i/deep.txt":            "deep\n",
	}
	for name, content := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("README.txt", filepath.Join(src, "readme")); err != nil {
		t.Fatal(err)
	}
	return src
}

// Build with strata, read back with xorriso (an independent reader): same
// files, same contents, right label; the source is unchanged.
func TestISOBuildReadByXorriso(t *testing.T) {
	needTool(t, "xorriso", "xorriso")
	e := newISOEnv(t)
	src := sourceTree(t)
	before := tree(t, src, true)
	e.ok("iso", "build", src, "inst", "--rock-ridge", "--joliet", "--label", "STRATA_INST 1.0")
	sameTree(t, "source after build", tree(t, src, true), before)

	m := e.info("inst")
	if m.Label != "STRATA_INST 1.0" || m.Bootable || m.Pool != "default" || m.Source != src {
		t.Fatalf("info %+v", m)
	}
	if fileSHA(t, m.Path) != m.SHA256 {
		t.Fatal("recorded SHA-256 is not the image's")
	}
	if st, err := os.Stat(m.Path); err != nil || st.Size() != m.Size || st.Size()%2048 != 0 {
		t.Fatalf("image size %v, recorded %d", st, m.Size)
	}
	pvd := sh(t, "xorriso", "-indev", m.Path, "-pvd_info")
	if !strings.Contains(pvd, "Volume Id    : STRATA_INST 1.0\n") {
		t.Fatalf("xorriso -pvd_info:\n%s", pvd)
	}
	found := sh(t, "xorriso", "-indev", m.Path, "-find", "/", "-type", "f")
	if !strings.Contains(found, "'/pool/main/s/strata/Long File Name.deb'") || !strings.Contains(found, "'/.disk-info'") {
		t.Fatalf("xorriso -find:\n%s", found)
	}
	out := filepath.Join(t.TempDir(), "out")
	sh(t, "xorriso", "-osirrox", "on", "-indev", m.Path, "-extract", "/", out)
	sameTree(t, "extracted image", tree(t, out, false), tree(t, src, false))
}

// The boot image: real-mode code that writes a marker to COM1 and leaves
// QEMU through isa-debug-exit. Bytes 8-63 are left free for the boot
// information table.
func bootImage() []byte {
	const marker = "STRATA-BOOT-OK\r\n"
	b := []byte{0xeb, 0x3e} // jmp short 0x40: over the boot information table
	b = append(b, make([]byte, 0x40-len(b))...)
	b = append(b,
		0xfa,             // cli
		0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1 data register)
	)
	for _, c := range []byte(marker) {
		b = append(b, 0xb0, c, 0xee) // mov al, c; out dx, al
	}
	b = append(b,
		0xba, 0xf4, 0x00, // mov dx, 0xf4 (isa-debug-exit)
		0xb0, 0x10, // mov al, 0x10: QEMU exits with (0x10<<1)|1 = 33
		0xee,       // out dx, al
		0xf4,       // hlt
		0xeb, 0xfd, // jmp short back to hlt
	)
	return append(b, make([]byte, 2048-len(b))...)
}

// A strata-built El Torito image boots under QEMU (TCG). With --joliet too,
// which go-diskfs alone makes unbootable (boot record not at sector 17).
func TestISOBootsUnderQEMU(t *testing.T) {
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	e := newISOEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "boot"), 0o755)
	img := bootImage()
	if err := os.WriteFile(filepath.Join(src, "boot", "boot.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "README"), []byte("bootable\n"), 0o644)
	e.ok("iso", "build", src, "bootme", "--rock-ridge", "--joliet", "--boot", "boot/boot.img", "--boot-catalog", "boot/boot.cat", "--boot-info-table")
	if b, _ := os.ReadFile(filepath.Join(src, "boot", "boot.img")); !bytes.Equal(b, img) {
		t.Fatal("the boot image in the source was changed")
	}
	m := e.info("bootme", "--files")
	if !m.Bootable || len(m.BootEntries) != 1 {
		t.Fatalf("info %+v", m)
	}
	be := m.BootEntries[0]
	if be.Platform != "bios" || be.Emulation != "none" || !be.Bootable || be.File != "/boot/boot.img" || be.SectorCount != 4 {
		t.Fatalf("boot entry %+v", be)
	}
	hasCat := false
	for _, f := range m.Files {
		hasCat = hasCat || f.Path == "/boot/boot.cat"
	}
	if !hasCat {
		t.Fatalf("no /boot/boot.cat in %+v", m.Files)
	}
	// The boot information table: PVD sector, boot image sector, length.
	iso, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	table := iso[be.Offset+8 : be.Offset+20]
	le := binary.LittleEndian
	if le.Uint32(table[0:]) != 16 || int64(le.Uint32(table[4:]))*2048 != be.Offset || le.Uint32(table[8:]) != 2048 {
		t.Fatalf("boot information table % x", table)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "64",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-cdrom", m.Path, "-boot", "d", "-no-reboot",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !strings.Contains(string(out), "STRATA-BOOT-OK") || !errors.As(err, &ee) || ee.ExitCode() != 33 {
		t.Fatalf("QEMU: %v\n%s", err, out)
	}
}

// iso info reads images made by xorriso: label, files, SHA-256; import
// registers them in place.
func TestISOInfoOfXorrisoImage(t *testing.T) {
	needTool(t, "xorriso", "xorriso")
	e := newISOEnv(t)
	src := sourceTree(t)
	iso := filepath.Join(t.TempDir(), "made-by-xorriso.iso")
	sh(t, "xorriso", "-as", "mkisofs", "-R", "-J", "-V", "XORRISO_LABEL", "-o", iso, src)
	m := e.info(iso, "--files")
	if m.Label != "XORRISO_LABEL" || m.SHA256 != fileSHA(t, iso) || m.Name != "" {
		t.Fatalf("info %+v", m)
	}
	got := map[string]string{}
	for _, f := range m.Files {
		got[f.Path] = fmt.Sprintf("%s %d", f.Type, f.Size)
	}
	for p, want := range map[string]string{
		"/README.txt":                            "file 11",
		"/pool/main/s/strata/Long File Name.deb": "file 120000",
		"/a/b/c/d/e/f/g/h/i/deep.txt":            "file 5",
		"/a/b/c":                                 "dir 0",
		"/readme":                                "symlink 0",
	} {
		if got[p] != want {
			t.Errorf("%s: %q, want %q", p, got[p], want)
		}
	}
	e.ok("iso", "import", iso, "--name", "xo")
	l := e.list()
	if len(l) != 1 || l[0].Name != "xo" || l[0].Path != iso || l[0].Pool != "" || l[0].SHA256 != m.SHA256 {
		t.Fatalf("list %+v", l)
	}
	if r := e.info(iso); r.Name != "xo" {
		t.Fatalf("info by path of a registered image: %+v", r)
	}
	e.ok("iso", "delete", "xo")
	if _, err := os.Stat(iso); err != nil {
		t.Fatal("delete removed an imported image")
	}
}

// Capture from a real block device whose size is larger than the image:
// the capture is exactly the filesystem.
func TestISOCaptureFromLoopDevice(t *testing.T) {
	needRoot(t)
	needTool(t, "xorriso", "xorriso")
	e := newISOEnv(t)
	dir := t.TempDir()
	iso := filepath.Join(dir, "orig.iso")
	sh(t, "xorriso", "-as", "mkisofs", "-R", "-V", "LOOPED", "-o", iso, sourceTree(t))
	want := fileSHA(t, iso)
	st, _ := os.Stat(iso)
	padded := filepath.Join(dir, "padded.img")
	data, _ := os.ReadFile(iso)
	os.WriteFile(padded, append(data, make([]byte, 1<<20)...), 0o600)
	dev := strings.TrimSpace(sh(t, "losetup", "-r", "-f", "--show", padded))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	e.ok("iso", "capture", dev, "fromloop", "--verify")
	m := e.info("fromloop")
	if m.Size != st.Size() || m.SHA256 != want || m.Source != dev || m.Label != "LOOPED" {
		t.Fatalf("captured %+v; want size %d sha %s", m, st.Size(), want)
	}
	if got, _ := os.Stat(m.Path); got.Size() != st.Size() || fileSHA(t, m.Path) != want {
		t.Fatal("the captured file is not the original image")
	}
}

// A source larger than the pool's free space is refused before anything
// is written.
func TestISOCaptureNoSpace(t *testing.T) {
	needRoot(t)
	needTool(t, "xorriso", "xorriso")
	needTool(t, "mkfs.ext4", "e2fsprogs")
	e := newISOEnv(t)
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	sh(t, "truncate", "-s", "20M", img)
	sh(t, "mkfs.ext4", "-q", img)
	sh(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	big := make([]byte, 30<<20)
	for i := range big {
		big[i] = byte(i * 7919 >> 8)
	}
	os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644)
	iso := filepath.Join(dir, "big.iso")
	sh(t, "xorriso", "-as", "mkisofs", "-V", "BIG", "-o", iso, src)

	e.ok("pool", "add", "small", "--path", mnt)
	_, stderr, code := e.run("iso", "capture", iso, "big", "--pool", "small")
	if code != 7 || !strings.Contains(stderr, `pool "small" has`) || !strings.Contains(stderr, "free space or use another pool") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ents, _ := os.ReadDir(mnt)
	for _, ent := range ents {
		if ent.Name() != "lost+found" && ent.Name() != ".strata-pool" { // the pool's owner marker stays
			t.Errorf("left in the pool: %s", ent.Name())
		}
	}
	if l := e.list(); len(l) != 0 {
		t.Fatalf("registered: %+v", l)
	}
}

// Bad input: clear errors, the documented exit codes, nothing changed.
func TestISOBadInput(t *testing.T) {
	e := newISOEnv(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "f.txt"), []byte("x"), 0o644)
	notDir := filepath.Join(dir, "file.txt")
	os.WriteFile(notDir, []byte("not a directory"), 0o644)
	notISO := filepath.Join(dir, "disk.img")
	os.WriteFile(notISO, bytes.Repeat([]byte{1}, 100_000), 0o644)
	huge := filepath.Join(dir, "huge")
	os.Mkdir(huge, 0o755)
	if f, err := os.Create(filepath.Join(huge, "dvd.img")); err == nil {
		f.Truncate(5 << 30) // sparse
		f.Close()
	}
	e.ok("iso", "build", src, "keep")

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"iso", "info", "nosuch"}, 3, `iso "nosuch" not found: see 'strata iso list'`},
		{[]string{"iso", "delete", "nosuch"}, 3, `iso "nosuch" not found`},
		{[]string{"iso", "build", src, "bad/name"}, 2, `invalid iso name "bad/name"`},
		{[]string{"iso", "build", src, ".dot"}, 2, `invalid iso name ".dot"`},
		{[]string{"iso", "build", notDir, "x"}, 2, "is not a directory"},
		{[]string{"iso", "build", filepath.Join(dir, "missing"), "x"}, 3, "does not exist"},
		{[]string{"iso", "build", src, "keep"}, 4, `iso "keep" already exists`},
		{[]string{"iso", "build", huge, "x"}, 8, "larger than one ISO9660 extent holds"},
		{[]string{"iso", "build", src, "x", "--boot", "nope.bin"}, 3, `boot image "nope.bin" not found`},
		{[]string{"iso", "build", src, "x", "--boot", "../f.txt"}, 2, "without '..'"},
		{[]string{"iso", "build", src, "x", "--boot-info-table"}, 2, "give --boot FILE too"},
		{[]string{"iso", "build", src, "x", "--label", "bad/label"}, 2, `invalid label "bad/label"`},
		{[]string{"iso", "build", src, "x", "--pool", "nopool"}, 3, `pool "nopool" not found`},
		{[]string{"iso", "capture", filepath.Join(dir, "missing"), "x"}, 3, "does not exist: give a block device"},
		{[]string{"iso", "capture", notISO, "x"}, 2, "has no ISO9660 filesystem"},
		{[]string{"iso", "capture", src, "x"}, 2, "neither a block device nor a regular file"},
		{[]string{"iso", "capture", notISO, "x", "--retries", "-1"}, 2, "invalid --retries"},
		{[]string{"iso", "capture", notISO}, 2, "takes 2 argument(s)"},
		{[]string{"iso", "import", notISO}, 2, "has no ISO9660 filesystem"},
		{[]string{"iso", "import", filepath.Join(dir, "missing.iso")}, 3, "does not exist"},
		{[]string{"iso", "info", filepath.Join(dir, "missing.iso")}, 3, "does not exist"},
	} {
		_, stderr, code := e.run(c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("strata %s: exit %d, %q; want exit %d and %q", strings.Join(c.args, " "), code, stderr, c.code, c.msg)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("strata %s: want one line of error, got %q", strings.Join(c.args, " "), stderr)
		}
	}
	if l := e.list(); len(l) != 1 || l[0].Name != "keep" {
		t.Fatalf("list after bad input: %+v", l)
	}
	pool := filepath.Join(e.home, "pools", "default")
	ents, _ := os.ReadDir(pool)
	if len(ents) != 2 { // and the pool's owner marker
		t.Fatalf("pool holds %d entries, want the one image", len(ents))
	}
}

// 3. iso import in place must refuse a file strata manages (a volume's image).
func TestISOImportRefusesVolumeImage(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "volume", "import", smallISO(t), "--copy", "--name", "isovol")
	var v struct{ Path string }
	jsonOf(t, h, &v, "volume", "info", "isovol")
	fails(t, h, 2, []string{"strata"}, "iso", "import", v.Path, "--name", "stolen")
	runIn(t, h, nil, "iso", "delete", "stolen", "--purge")
	if _, err := os.Stat(v.Path); err != nil {
		t.Fatalf("volume isovol lost its image: %v", err)
	}
}

// 4. A FIFO given to iso capture/import/info is refused, not opened.
func TestISOFifoRefused(t *testing.T) {
	h := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"iso", "capture", fifo, "c"}, {"iso", "import", fifo, "--name", "c"}, {"iso", "info", fifo}} {
		cmd := exec.Command(strataBinary(t), append([]string{"--home", h}, args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if ee, _ := err.(*exec.ExitError); ee == nil || ee.ExitCode() != 2 {
				t.Errorf("%v: %v, want exit 2", args, err)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%v: still blocked on the FIFO after 5s", args)
		}
	}
}

// 5. iso delete is refused while a guest's CD-ROM names the iso's image by path.
func TestISODeleteInUseByPath(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "iso", "import", smallISO(t), "--pool", "default", "--name", "inst")
	var m struct{ Path string }
	jsonOf(t, h, &m, "iso", "info", "inst")
	ok(t, h, "guest", "define", "g", "--cdrom", m.Path)
	fails(t, h, 5, []string{"inst"}, "iso", "delete", "inst")
	if _, err := os.Stat(m.Path); err != nil {
		t.Fatalf("guest g's CD-ROM image was deleted: %v", err)
	}
}

// Registering the same bytes twice is allowed, and said: the second iso's
// capture or import names the first.
func TestISOWithTheSameBytesAsAnotherNamesIt(t *testing.T) {
	h := t.TempDir()
	iso := smallISO(t)
	ok(t, h, "iso", "import", iso, "--name", "first")
	r := runIn(t, h, nil, "iso", "capture", iso, "second")
	if r.code != 0 || !strings.Contains(r.stderr, `same bytes (SHA-256) as iso "first"`) {
		t.Fatalf("capture of the same image: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runIn(t, h, nil, "iso", "import", iso, "--pool", "default", "--name", "third")
	if r.code != 0 || !strings.Contains(r.stderr, `as iso "first"`) {
		t.Fatalf("import of the same image: stderr %q", r.stderr)
	}
}
