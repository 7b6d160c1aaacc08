package main_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// isoTrees is `iso info --files` JSON: the extensions and every tree.
type isoTrees struct {
	Path       string   `json:"path"`
	Extensions []string `json:"extensions"`
	Files      []struct {
		Path string `json:"path"`
	} `json:"files"`
	Trees []struct {
		Extension string `json:"extension"`
		Files     []struct {
			Path, Type, Target string
			Size               int64
		} `json:"files"`
	} `json:"trees"`
}

func (e *isoEnv) trees(arg string) isoTrees {
	e.t.Helper()
	out := e.ok("-o", "json", "iso", "info", arg, "--files")
	var m isoTrees
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("iso info JSON: %v\n%s", err, out)
	}
	return m
}

// tree returns the paths of one tree of m, sorted.
func (m isoTrees) tree(t *testing.T, ext string) []string {
	t.Helper()
	for _, tr := range m.Trees {
		if tr.Extension == ext {
			var out []string
			for _, f := range tr.Files {
				out = append(out, f.Path)
			}
			sort.Strings(out)
			return out
		}
	}
	t.Fatalf("no %s tree in %+v", ext, m.Trees)
	return nil
}

// reader runs an independent ISO reader in a UTF-8 locale (under the C
// locale xorriso mangles every non-ASCII name it converts from Joliet's
// UCS-2) and fails on any complaint on stderr.
func reader(t *testing.T, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	if argv[0] == "bsdtar" && stderr.Len() > 0 {
		t.Fatalf("%s complained:\n%s", strings.Join(argv, " "), stderr.String())
	}
	return string(out)
}

// xorrisoPaths lists a tree as xorriso reads it: fs is "any" (Rock Ridge
// first) or "norock" (Joliet). -read_fs goes before -indev: xorriso runs
// its commands in order.
func xorrisoPaths(t *testing.T, fs, img string) []string {
	t.Helper()
	out := reader(t, "xorriso", "-read_fs", fs, "-indev", img, "-find", "/")
	var paths []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "'") && strings.HasSuffix(l, "'") && l != "'/'" {
			paths = append(paths, strings.Trim(l, "'"))
		}
	}
	sort.Strings(paths)
	return paths
}

// bsdtarPaths lists a tree as libarchive reads it, with options such as
// "iso9660:!rockridge" (then it reads Joliet).
func bsdtarPaths(t *testing.T, options, img string) []string {
	t.Helper()
	argv := []string{"bsdtar"}
	if options != "" {
		argv = append(argv, "--options", options)
	}
	out := reader(t, append(argv, "-tf", img)...)
	var paths []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && l != "." {
			paths = append(paths, "/"+strings.TrimSuffix(strings.TrimPrefix(l, "./"), "/"))
		}
	}
	sort.Strings(paths)
	return paths
}

func samePaths(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		var missing, extra []string
		for _, p := range want {
			if !slices.Contains(got, p) {
				missing = append(missing, p)
			}
		}
		for _, p := range got {
			if !slices.Contains(want, p) {
				extra = append(extra, p)
			}
		}
		t.Errorf("%s: missing %q, unexpected %q", what, missing, extra)
	}
}

// jolietSource is a folder that trips every Joliet mistake: subdirectories
// (the go-diskfs bug), a tree 11 levels deep, a name of exactly 64
// characters, Unicode names (accents, Cyrillic, CJK, all in UCS-2's range),
// names whose ISO9660 and Joliet orders differ, a directory of many long
// names (its Joliet extent spans several sectors) and a symlink (Rock
// Ridge only). It returns the folder and its paths, "/"-rooted, sorted.
func jolietSource(t *testing.T) (string, []string, []string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	name64 := strings.Repeat("x", 60) + ".txt"
	files := []string{
		"README.txt",
		"drivers/amd64/viostor.inf",
		"drivers/amd64/Über Treiber.sys",
		"drivers/x86/файл драйвера.cat",
		"drivers/x86/文件.txt",
		"a/b/c/d/e/f/g/h/i/j/k/deep.txt",
		"order/a b", "order/a-b", "order/a.b", "order/B", "order/b_x", "order/Zz",
		"long/" + name64,
	}
	for i := 0; i < 60; i++ {
		files = append(files, "many/"+strings.Repeat("n", 40)+string(rune('a'+i%26))+strings.Repeat("m", i%7)+"-"+string(rune('0'+i/26))+".dat")
	}
	for _, f := range files {
		p := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("content of "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("README.txt", filepath.Join(src, "readme")); err != nil {
		t.Fatal(err)
	}
	var all, noLinks []string
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		all = append(all, "/"+rel)
		if fi.Mode()&os.ModeSymlink == 0 {
			noLinks = append(noLinks, "/"+rel)
		}
		return nil
	})
	sort.Strings(all)
	sort.Strings(noLinks)
	return src, all, noLinks
}

// The default build has Rock Ridge and Joliet, and every reader sees the
// same names in each: strata, xorriso (Rock Ridge, and -read_fs norock for
// Joliet, what Windows reads) and libarchive's bsdtar (both trees). The
// Joliet tree holds the files' data: extracted through it, every file is
// the source's.
func TestISOBuildDefaultTreesAgreeAcrossReaders(t *testing.T) {
	needTool(t, "xorriso", "xorriso")
	needTool(t, "bsdtar", "libarchive-tools")
	e := newISOEnv(t)
	src, all, noLinks := jolietSource(t)
	e.ok("iso", "build", src, "drivers")
	m := e.trees("drivers")
	if !slices.Equal(m.Extensions, []string{"iso9660", "rock_ridge", "joliet"}) {
		t.Fatalf("extensions %v", m.Extensions)
	}
	if len(m.Files) != len(all) {
		t.Errorf("files (the Rock Ridge tree): %d entries, want %d", len(m.Files), len(all))
	}
	samePaths(t, "strata, Rock Ridge", m.tree(t, "rock_ridge"), all)
	samePaths(t, "strata, Joliet", m.tree(t, "joliet"), noLinks)
	if n := len(m.tree(t, "iso9660")); n != len(all) {
		t.Errorf("strata, ISO9660: %d entries, want %d", n, len(all))
	}
	samePaths(t, "xorriso, Rock Ridge", xorrisoPaths(t, "any", m.Path), all)
	samePaths(t, "xorriso -read_fs norock (Joliet)", xorrisoPaths(t, "norock", m.Path), noLinks)
	samePaths(t, "bsdtar", bsdtarPaths(t, "", m.Path), all)
	samePaths(t, "bsdtar without Rock Ridge (Joliet)", bsdtarPaths(t, "iso9660:!rockridge", m.Path), noLinks)

	out := filepath.Join(t.TempDir(), "out")
	reader(t, "xorriso", "-osirrox", "on", "-read_fs", "norock", "-indev", m.Path, "-extract", "/", out)
	for _, p := range noLinks {
		want, _ := os.ReadFile(filepath.Join(src, p))
		got, _ := os.ReadFile(filepath.Join(out, p))
		if string(got) != string(want) {
			t.Errorf("%s through Joliet: %q, want %q", p, got, want)
		}
	}
}

// A name longer than Joliet's 64 characters is refused before anything is
// written, naming the file; --joliet=false builds it (Rock Ridge only).
// Characters Windows cannot have in a name are refused the same way.
func TestISOBuildRefusesNamesJolietCannotHold(t *testing.T) {
	for _, name := range []string{strings.Repeat("y", 61) + ".txt", "a:b.txt"} {
		e := newISOEnv(t)
		src := filepath.Join(t.TempDir(), "src")
		os.MkdirAll(filepath.Join(src, "sub"), 0o755)
		if err := os.WriteFile(filepath.Join(src, "sub", name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := e.run("iso", "build", src, "long")
		if code != 2 || !strings.Contains(stderr, "sub/"+name) || !strings.Contains(stderr, "Joliet") || !strings.Contains(stderr, "--joliet=false") {
			t.Fatalf("build of %q: exit %d: %s", name, code, stderr)
		}
		if l := e.list(); len(l) != 0 {
			t.Fatalf("a refused build registered %+v", l)
		}
		pool := filepath.Join(e.home, "pools", "default")
		left, _ := os.ReadDir(pool)
		for _, f := range left {
			if strings.HasSuffix(f.Name(), ".iso") || strings.HasPrefix(f.Name(), ".strata-tmp") {
				t.Fatalf("a refused build left %s in the pool", f.Name())
			}
		}
		e.ok("iso", "build", src, "long", "--joliet=false")
		m := e.trees("long")
		if !slices.Equal(m.Extensions, []string{"iso9660", "rock_ridge"}) {
			t.Fatalf("extensions %v", m.Extensions)
		}
		samePaths(t, "Rock Ridge", m.tree(t, "rock_ridge"), []string{"/sub", "/sub/" + name})
	}
}

// --plain builds bare ISO9660: no Rock Ridge, no Joliet; upper-case 8.3
// names. --plain with --joliet or --rock-ridge contradicts itself.
func TestISOBuildPlainHasNoExtensions(t *testing.T) {
	needTool(t, "xorriso", "xorriso")
	e := newISOEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "readme.txt"), []byte("x"), 0o644)
	e.ok("iso", "build", src, "bare", "--plain")
	m := e.trees("bare")
	if !slices.Equal(m.Extensions, []string{"iso9660"}) || len(m.Trees) != 1 {
		t.Fatalf("extensions %v, trees %+v", m.Extensions, m.Trees)
	}
	samePaths(t, "strata", m.tree(t, "iso9660"), []string{"/SUB", "/SUB/README.TXT"})
	samePaths(t, "xorriso", xorrisoPaths(t, "ecma119", m.Path), []string{"/SUB", "/SUB/README.TXT"})
	for _, flag := range []string{"--joliet", "--rock-ridge"} {
		if _, stderr, code := e.run("iso", "build", src, "bad", "--plain", flag); code != 2 || !strings.Contains(stderr, "--plain") {
			t.Fatalf("--plain %s: exit %d: %s", flag, code, stderr)
		}
	}
}

// iso info names the extensions of images xorriso made, and reads the
// trees of another writer: Joliet names as xorriso wrote them.
func TestISOInfoReportsExtensions(t *testing.T) {
	needTool(t, "xorriso", "xorriso")
	e := newISOEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "Sub Dir"), 0o755)
	os.WriteFile(filepath.Join(src, "Sub Dir", "Ünïcødé name.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "boot.img"), bootImage(), 0o644)
	for _, c := range []struct {
		flags []string
		want  []string
	}{
		// xorriso's mkisofs writes Rock Ridge unless told --norock
		{[]string{"--norock"}, []string{"iso9660"}},
		{[]string{"-R"}, []string{"iso9660", "rock_ridge"}},
		{[]string{"--norock", "-J"}, []string{"iso9660", "joliet"}},
		{[]string{"-R", "-J", "-b", "boot.img", "-c", "boot.cat", "-no-emul-boot"}, []string{"iso9660", "rock_ridge", "joliet", "el_torito"}},
	} {
		iso := filepath.Join(t.TempDir(), "x.iso")
		reader(t, append(append([]string{"xorriso", "-as", "mkisofs", "-o", iso}, c.flags...), src)...)
		if m := e.info(iso); m.Size == 0 {
			t.Fatalf("info %+v", m)
		}
		m := e.trees(iso)
		if !slices.Equal(m.Extensions, c.want) {
			t.Errorf("xorriso -as mkisofs %v: extensions %v, want %v", c.flags, m.Extensions, c.want)
		}
		if slices.Contains(c.want, "joliet") {
			samePaths(t, "Joliet tree", m.tree(t, "joliet"), xorrisoPaths(t, "norock", iso))
			if !slices.Contains(m.tree(t, "joliet"), "/Sub Dir/Ünïcødé name.txt") {
				t.Errorf("Joliet tree %v", m.tree(t, "joliet"))
			}
		}
		out := e.ok("iso", "info", iso)
		if !strings.Contains(out, "extensions:") {
			t.Errorf("iso info:\n%s", out)
		}
	}
}

// A tree that cannot be read is an error (exit 2, naming the tree), never
// an empty list with exit 0; iso info without --files still answers.
func TestISOInfoFailsOnAnUnreadableTree(t *testing.T) {
	e := newISOEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f.txt"), []byte("x"), 0o644)
	e.ok("iso", "build", src, "good")
	good := e.trees("good")
	b, err := os.ReadFile(good.Path)
	if err != nil {
		t.Fatal(err)
	}
	// Point the Joliet root past the end of the volume.
	corrupted := false
	for s := 17; s < 24; s++ {
		vd := b[s*2048 : (s+1)*2048]
		if vd[0] == 2 && string(vd[1:6]) == "CD001" {
			binary.LittleEndian.PutUint32(vd[156+2:], 1<<30)
			binary.BigEndian.PutUint32(vd[156+6:], 1<<30)
			corrupted = true
		}
	}
	if !corrupted {
		t.Fatal("no Joliet descriptor in the image")
	}
	bad := filepath.Join(t.TempDir(), "bad.iso")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := e.run("iso", "info", bad, "--files")
	if code != 2 || !strings.Contains(stderr, "Joliet tree") || !strings.Contains(stderr, "unreadable") || stdout != "" {
		t.Fatalf("iso info --files of a corrupt Joliet tree: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	if m := e.info(bad); m.Size == 0 {
		t.Fatalf("iso info without --files: %+v", m)
	}
}
