package boottest

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/strata-vm/strata/storage/run"
)

// The test guest's QEMU guest agent: Debian's qemu-guest-agent (the real
// qemu-ga) with the shared libraries it loads, from the packages its
// dependencies name (aptDependsClosure), for ModeAgent.

// multiarch is Debian's library directory name on amd64.
const multiarch = "x86_64-linux-gnu"

// agentBinary is qemu-ga's path, in the package and in the initramfs.
const agentBinary = "usr/sbin/qemu-ga"

// addAgent downloads and unpacks the agent's packages into tmp and adds
// qemu-ga, its dynamic loader, the libraries it needs and the freeze
// hook to the archive a, which is unpacked after the kit's own.
func addAgent(ctx context.Context, tmp string, a *cpioArchive, k *Kit, pkgs []debPackage) error {
	tree := filepath.Join(tmp, "x-agent")
	for _, d := range pkgs {
		deb, err := aptDownload(ctx, tmp, d)
		if err != nil {
			return err
		}
		if _, err := run.Output(ctx, "dpkg-deb", "-x", deb, tree); err != nil {
			return err
		}
		if d.Pkg == agentPackage {
			k.AgentVersion = d.Version
		}
	}
	bin := filepath.Join(tree, agentBinary)
	interp, libs, err := elfClosure(tree, bin)
	if err != nil {
		return err
	}
	// glibc loads libgcc_s when a thread is cancelled or exits early.
	if p, err := findLib(tree, "libgcc_s.so.1"); err == nil {
		libs["libgcc_s.so.1"] = p
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	for _, d := range []string{"lib64", "lib/" + multiarch} {
		a.dir(d)
	}
	a.file(agentBinary, 0o755, b)
	if k.AgentLibs, err = addLibs(a, libs, interp); err != nil {
		return err
	}
	a.file("strata/fsfreeze-hook", 0o755, []byte(fsfreezeHook))
	return nil
}

// addLibs puts shared libraries (soname → file) into the archive's
// multiarch library directory, in name order, and returns their sonames.
// The loader a program names (/lib64/ld-linux-x86-64.so.2) becomes a link
// to its copy among them.
func addLibs(a *cpioArchive, libs map[string]string, interp string) ([]string, error) {
	names := make([]string, 0, len(libs))
	for n := range libs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(libs[n])
		if err != nil {
			return nil, err
		}
		a.file("lib/"+multiarch+"/"+n, 0o755, b)
	}
	if interp != "" && filepath.Dir(interp) != "/lib/"+multiarch {
		a.symlink(strings.TrimPrefix(interp, "/"), "/lib/"+multiarch+"/"+filepath.Base(interp))
	}
	return names, nil
}

// elfClosure returns the program interpreter of the ELF file bin and the
// shared libraries it needs, recursively (DT_NEEDED), found in tree's
// library directories: soname -> file. The interpreter is among them.
func elfClosure(tree, bin string) (string, map[string]string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", nil, fmt.Errorf("test guest: %w", err)
	}
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				f.Close()
				return "", nil, err
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	f.Close()
	if interp == "" {
		return "", nil, fmt.Errorf("test guest: %s has no program interpreter", bin)
	}
	libs := map[string]string{}
	queue := []string{bin}
	if p, err := findLib(tree, filepath.Base(interp)); err == nil {
		libs[filepath.Base(interp)] = p
	} else {
		return "", nil, err
	}
	for len(queue) > 0 {
		f, err := elf.Open(queue[0])
		if err != nil {
			return "", nil, fmt.Errorf("test guest: %w", err)
		}
		needed, err := f.ImportedLibraries()
		f.Close()
		if err != nil {
			return "", nil, fmt.Errorf("test guest: %s: %w", queue[0], err)
		}
		queue = queue[1:]
		for _, n := range needed {
			if _, ok := libs[n]; ok {
				continue
			}
			p, err := findLib(tree, n)
			if err != nil {
				return "", nil, err
			}
			libs[n] = p
			queue = append(queue, p)
		}
	}
	return interp, libs, nil
}

// findLib returns the file a library name resolves to in tree's library
// directories, following symlinks inside tree (an absolute link is read
// as relative to tree).
func findLib(tree, name string) (string, error) {
	for _, d := range []string{"lib/" + multiarch, "usr/lib/" + multiarch, "lib64", "lib", "usr/lib"} {
		p := filepath.Join(tree, d, name)
		for hops := 0; hops < 10; hops++ {
			st, err := os.Lstat(p)
			if err != nil {
				break
			}
			if st.Mode().IsRegular() {
				return p, nil
			}
			if st.Mode()&os.ModeSymlink == 0 {
				break
			}
			t, err := os.Readlink(p)
			if err != nil {
				break
			}
			if filepath.IsAbs(t) {
				p = filepath.Join(tree, t)
			} else {
				p = filepath.Join(filepath.Dir(p), t)
			}
		}
	}
	return "", errors.New("test guest: the guest agent needs " + name + ", which none of its packages holds")
}
