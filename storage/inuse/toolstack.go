package inuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage/inuse/xllist"
	"github.com/strata-vm/strata/storage/run"
)

// matching returns the indexes of the images a toolstack's disk source
// names: by identity where it can be read, else by cleaned spelling.
func matching(src string, imgs []Image) []int {
	if src == "" || src == "-" {
		return nil
	}
	s, serr := os.Stat(src)
	var out []int
	for i, img := range imgs {
		if img.st == nil {
			continue
		}
		if (serr == nil && os.SameFile(s, img.st)) || (serr != nil && filepath.Clean(src) == filepath.Clean(img.Path)) {
			out = append(out, i)
		}
	}
	return out
}

func anyExists(imgs []Image) bool {
	for _, img := range imgs {
		if img.st != nil {
			return true
		}
	}
	return false
}

// XL finds running Xen domains whose disk the image is (`xl list -l`).
// On a host without Xen, xl is absent or fails at once; that is asked
// once per process.
type XL struct {
	once      sync.Once
	available bool
}

// NewXL returns the xl source.
func NewXL() *XL { return &XL{} }

// Holders implements Source.
func (x *XL) Holders(ctx context.Context, imgs []Image) ([][]Holder, error) {
	hs := make([][]Holder, len(imgs))
	x.once.Do(func() {
		_, err := exec.LookPath("xl")
		x.available = err == nil
	})
	if !x.available || !anyExists(imgs) {
		return hs, nil
	}
	out, err := run.Output(ctx, "xl", "list", "-l")
	if err != nil {
		// No hypervisor (xl installed on a host not running Xen): no
		// Xen domain can hold anything.
		x.available = false
		return hs, nil
	}
	doms, err := xllist.ParseLong(out)
	if err != nil {
		return hs, nil // an xl whose output this strata does not know
	}
	for _, d := range doms {
		for _, disk := range d.Disks {
			for _, i := range matching(disk.Path, imgs) {
				hs[i] = append(hs[i], Holder{Toolstack: "xl", Domain: d.Name, How: "a disk of the running Xen domain"})
			}
		}
	}
	return hs, nil
}

// Libvirt finds running libvirt domains whose disk the image is, through
// virsh: the connection is LIBVIRT_DEFAULT_URI if it names a driver on
// this host (no host part, no remote transport: a domain elsewhere holds
// no file here), else qemu:///system where its socket exists (no daemon,
// nothing to ask). Looked up on first use, not by commands that never
// check. A libvirtd that does not answer within Timeout is passed over
// with a warning: the QEMU it runs holds its images' locks all the same.
type Libvirt struct {
	Timeout time.Duration
	// Except is a URI another source answers for (strata's libvirt
	// driver asks qemu:///system in its own process): not asked again.
	Except string
	once   sync.Once
	uri    string
}

// NewLibvirt returns the libvirt source for this host.
func NewLibvirt() *Libvirt { return &Libvirt{Timeout: 10 * time.Second} }

// localURI tells whether a libvirt URI names a driver on this host:
// "qemu:///system", "xen:///", "test:///path"; not "qemu+ssh://h/system",
// "qemu://h/system" or "qemu+tcp:///system".
func localURI(uri string) bool {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || !strings.HasPrefix(rest, "/") {
		return false
	}
	_, transport, _ := strings.Cut(scheme, "+")
	return transport == "" || transport == "unix"
}

func libvirtURI() string {
	uri := os.Getenv("LIBVIRT_DEFAULT_URI")
	if uri != "" && !localURI(uri) {
		log.Debug().Str("uri", uri).Msg("LIBVIRT_DEFAULT_URI names another host: its domains hold no file here")
		uri = ""
	}
	if uri == "" {
		for _, s := range []string{"/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock"} {
			if _, err := os.Stat(s); err == nil {
				uri = "qemu:///system"
				break
			}
		}
	}
	if uri != "" {
		if _, err := exec.LookPath("virsh"); err != nil {
			uri = ""
		}
	}
	return uri
}

// Holders implements Source.
func (l *Libvirt) Holders(ctx context.Context, imgs []Image) ([][]Holder, error) {
	hs := make([][]Holder, len(imgs))
	l.once.Do(func() { l.uri = libvirtURI() })
	if l.uri == "" || l.uri == l.Except || !anyExists(imgs) {
		return hs, nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	out, err := run.Output(ctx, "virsh", "-c", l.uri, "-q", "list", "--name")
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, ctx.Err() // strata was interrupted: libvirt is not to blame
	}
	if ctx.Err() != nil {
		log.Warn().Str("uri", l.uri).Dur("timeout", l.Timeout).Msg("libvirt did not answer: its domains are not asked (the QEMU they run holds image locks, which strata checks)")
		return hs, nil
	}
	if err != nil {
		return hs, nil // libvirtd is not running: it runs no domain
	}
	for _, dom := range strings.Fields(string(out)) {
		blk, err := run.Output(ctx, "virsh", "-c", l.uri, "-q", "domblklist", "--details", dom)
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err()
		}
		if err != nil {
			continue // gone meanwhile
		}
		for _, line := range strings.Split(string(blk), "\n") {
			// Type Device Target Source: the source is the rest (a path
			// may hold spaces).
			src := line
			for range 3 {
				src = strings.TrimLeft(src, " \t")
				i := strings.IndexAny(src, " \t")
				if i < 0 {
					src = ""
					break
				}
				src = src[i:]
			}
			for _, i := range matching(strings.TrimSpace(src), imgs) {
				hs[i] = append(hs[i], Holder{Toolstack: "libvirt", Domain: dom, How: "a disk of the running libvirt domain"})
			}
		}
	}
	return hs, nil
}

// Domain is one running guest of a toolstack and the disks it has open.
type Domain struct {
	Name  string
	Disks []string // host paths: files or block devices
}

// Domains is a Source over a toolstack's own list of running guests: the
// guest drivers (hvm/boot) plug in through it, so a guest strata started
// is named as such even before its emulator takes an image lock.
type Domains struct {
	Toolstack string
	How       string // e.g. "a disk of the running guest"
	List      func(ctx context.Context) ([]Domain, error)
}

// Holders implements Source.
func (d Domains) Holders(ctx context.Context, imgs []Image) ([][]Holder, error) {
	hs := make([][]Holder, len(imgs))
	if !anyExists(imgs) {
		return hs, nil
	}
	doms, err := d.List(ctx)
	if errors.Is(err, context.Canceled) {
		return nil, err // interrupted: no toolstack to blame
	}
	if err != nil {
		return nil, fmt.Errorf("%s: cannot list running guests: %w", d.Toolstack, err)
	}
	how := d.How
	if how == "" {
		how = "a disk of the running guest"
	}
	for _, dom := range doms {
		for _, disk := range dom.Disks {
			for _, i := range matching(disk, imgs) {
				hs[i] = append(hs[i], Holder{Toolstack: d.Toolstack, Domain: dom.Name, How: how})
			}
		}
	}
	return hs, nil
}
