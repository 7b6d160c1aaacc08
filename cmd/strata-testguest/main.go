// Command strata-testguest builds the tiny real guest that make demo, make
// bench and the end-to-end tests boot (hvm/boot/boottest, LinuxKit): a
// Debian cloud kernel and a busybox initramfs, cached, and for each mode a
// CD source directory for `strata iso build --boot`, or with -strata the
// bootable ISO that the strata binary builds from it.
//
//	go run ./cmd/strata-testguest -out DIR [-cache DIR] [-modes install,patch] [-strata BIN [-home HOME]]
//
// It writes DIR/MODE/ (isolinux, kernel, initrd) for each mode; with
// -strata, DIR/MODE.iso too (built in a throwaway home), or, with -home,
// the isos testguest-MODE registered in that home. stdout is one JSON
// object saying where everything is; progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

type result struct {
	Kernel        string            `json:"kernel"`
	Initrd        string            `json:"initrd"`
	KernelPackage string            `json:"kernel_package"`
	KernelVersion string            `json:"kernel_version"`
	Built         bool              `json:"built"`
	Sources       map[string]string `json:"sources"`
	ISOs          map[string]string `json:"isos,omitempty"`
	Append        map[string]string `json:"append"`
}

func main() {
	cache := flag.String("cache", boottest.DefaultCacheDir(), "cache directory for the kernel and initramfs")
	out := flag.String("out", "", "directory for the CD sources (and ISO files)")
	modes := flag.String("modes", boottest.ModeInstall+","+boottest.ModePatch, "comma-separated guest modes: install, patch, check, wait")
	strata := flag.String("strata", "", "strata binary: also build each CD with `strata iso build --boot`")
	home := flag.String("home", "", "with -strata: register the isos as testguest-MODE in this state home instead of writing OUT/MODE.iso")
	installReboots := flag.Bool("install-reboots", false, "the install CD ends with a reboot, as an installer's text mode does (else it powers off)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: strata-testguest -out DIR [-cache DIR] [-modes install,patch] [-strata BIN [-home HOME]]")
		os.Exit(2)
	}
	if *home != "" && *strata == "" {
		fmt.Fprintln(os.Stderr, "strata-testguest: -home needs -strata")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := build(ctx, *cache, *out, strings.Split(*modes, ","), *strata, *home, *installReboots)
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata-testguest:", err)
		os.Exit(1)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(b))
}

func build(ctx context.Context, cache, out string, modes []string, strata, home string, installReboots bool) (*result, error) {
	for _, m := range modes {
		switch m {
		case boottest.ModeInstall, boottest.ModePatch, boottest.ModeCheck, boottest.ModeWait:
		default:
			return nil, fmt.Errorf("unknown mode %q: use install, patch, check or wait", m)
		}
	}
	start := time.Now()
	k, err := boottest.LinuxKit(ctx, cache)
	if err != nil {
		return nil, err
	}
	how := "cached"
	if k.Built {
		how = "built"
	}
	fmt.Fprintf(os.Stderr, "test guest: %s %s, busybox %s (%s in %v)\n", k.KernelPackage, k.KernelVersion, k.BusyboxVersion, how, time.Since(start).Round(time.Millisecond))
	if strata != "" {
		if strata, err = filepath.Abs(strata); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	r := result{Kernel: k.Kernel, Initrd: k.Initrd, KernelPackage: k.KernelPackage, KernelVersion: k.KernelVersion, Built: k.Built,
		Sources: map[string]string{}, Append: map[string]string{}}
	scratch := ""
	if strata != "" && home == "" {
		// A throwaway home inside out, so that its images move to
		// out/MODE.iso by a rename.
		if scratch, err = os.MkdirTemp(out, ".strata-home-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(scratch)
	}
	for _, m := range modes {
		src := filepath.Join(out, m)
		if err := os.RemoveAll(src); err != nil {
			return nil, err
		}
		var extra []string
		if m == boottest.ModeInstall && installReboots {
			extra = append(extra, boottest.EndWithReboot)
		}
		if err := k.ISOSource(m, src, extra...); err != nil {
			return nil, err
		}
		r.Sources[m], r.Append[m] = src, k.Append(m, extra...)
		if strata == "" {
			continue
		}
		if r.ISOs == nil {
			r.ISOs = map[string]string{}
		}
		h, name := home, "testguest-"+m
		if home == "" {
			h = scratch
		}
		t := time.Now()
		iso, err := boottest.StrataISO(ctx, strata, h, src, name)
		if err != nil {
			return nil, err
		}
		if home == "" {
			dst := filepath.Join(out, m+".iso")
			if err := os.Rename(iso, dst); err != nil {
				return nil, err
			}
			iso = dst
		}
		fmt.Fprintf(os.Stderr, "%s: strata iso build in %v\n", iso, time.Since(t).Round(time.Millisecond))
		r.ISOs[m] = iso
	}
	return &r, nil
}
