package inuse

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/strata-vm/strata/storage/run"
)

// sameFile tells whether a toolstack's disk source names the image at path
// (st): by identity where it can be read, else by cleaned spelling.
func sameFile(src, path string, st os.FileInfo) bool {
	if src == "" {
		return false
	}
	if s, err := os.Stat(src); err == nil {
		return os.SameFile(s, st)
	}
	return filepath.Clean(src) == filepath.Clean(path)
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
func (x *XL) Holders(ctx context.Context, path string, st os.FileInfo) ([]Holder, error) {
	x.once.Do(func() {
		_, err := exec.LookPath("xl")
		x.available = err == nil
	})
	if !x.available {
		return nil, nil
	}
	out, err := run.Output(ctx, "xl", "list", "-l")
	if err != nil {
		// No hypervisor (xl installed on a host not running Xen): no
		// Xen domain can hold anything.
		x.available = false
		return nil, nil
	}
	var doms []struct {
		DomID  int `json:"domid"`
		Config struct {
			CInfo struct {
				Name string `json:"name"`
			} `json:"c_info"`
			Disks []struct {
				PdevPath string `json:"pdev_path"`
				Target   string `json:"target"`
			} `json:"disks"`
		} `json:"config"`
	}
	if err := json.Unmarshal(out, &doms); err != nil {
		return nil, nil // an xl whose output this strata does not know
	}
	var hs []Holder
	for _, d := range doms {
		for _, disk := range d.Config.Disks {
			src := disk.PdevPath
			if src == "" {
				src = disk.Target
			}
			if sameFile(src, path, st) {
				hs = append(hs, Holder{Toolstack: "xl", Domain: d.Config.CInfo.Name, How: "a disk of the running Xen domain"})
				break
			}
		}
	}
	return hs, nil
}

// Libvirt finds running libvirt domains whose disk the image is, through
// virsh: the connection is LIBVIRT_DEFAULT_URI if set, else qemu:///system
// where its socket exists (no daemon, nothing to ask).
type Libvirt struct {
	uri string
}

// NewLibvirt returns the libvirt source for this host.
func NewLibvirt() *Libvirt {
	uri := os.Getenv("LIBVIRT_DEFAULT_URI")
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
	return &Libvirt{uri: uri}
}

// Holders implements Source.
func (l *Libvirt) Holders(ctx context.Context, path string, st os.FileInfo) ([]Holder, error) {
	if l.uri == "" {
		return nil, nil
	}
	out, err := run.Output(ctx, "virsh", "-c", l.uri, "-q", "list", "--name")
	if err != nil {
		return nil, nil // libvirtd is not answering: it runs no domain
	}
	var hs []Holder
	for _, dom := range strings.Fields(string(out)) {
		blk, err := run.Output(ctx, "virsh", "-c", l.uri, "-q", "domblklist", "--details", dom)
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
			if src = strings.TrimSpace(src); src != "-" && sameFile(src, path, st) {
				hs = append(hs, Holder{Toolstack: "libvirt", Domain: dom, How: "a disk of the running libvirt domain"})
				break
			}
		}
	}
	return hs, nil
}
