package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/store"
)

// ImportOptions describe an import of an existing guest config.
type ImportOptions struct {
	Name       string // overrides the config's name
	AdoptDisks bool   // register the disk images it names as volumes, in place
	// AllowBacking accepts adopted disks declared qcow2 whose backing
	// file lies outside strata's pools (store.ImportOptions).
	AllowBacking bool
	Libvirt      bool // data is libvirt domain XML, not xl/xm
	// Replace updates the existing guest (Name, else the config's name)
	// from the config instead of defining a new one (see Replace).
	Replace bool
	// DryRun, with Replace, computes and checks the change without
	// storing it.
	DryRun bool
}

// Import parses an xl/xm config (never executing it) or libvirt XML and
// defines the guest. With AdoptDisks the images and devices it names are
// registered as volumes in place (named GUEST-VDEV), so restore points work
// on an existing Xen guest at once; if the define fails they are
// unregistered again.
func (r *Registry) Import(ctx context.Context, file string, data []byte, o ImportOptions) (*hvm.Guest, []lint.Finding, error) {
	if o.Replace {
		g, _, fs, err := r.Replace(ctx, file, data, o)
		return g, fs, err
	}
	g, findings, err := parseConfig(file, data, o.Libvirt)
	if err != nil {
		return nil, nil, err
	}
	if o.Name != "" {
		g.Name = o.Name
	}
	if err := storage.ValidateName("guest", g.Name); err != nil {
		return nil, nil, storage.Errorf(storage.ErrInvalid, "%s: the guest's name %q cannot be a strata name: give one with --name (%v)", file, g.Name, err)
	}
	if _, _, err := r.Get(ctx, g.Name); err == nil {
		return nil, nil, storage.Errorf(storage.ErrExists, "guest %q already exists: import under another name with --name, or update it from this config with --replace", g.Name)
	}
	if err := r.mediaByPath(g); err != nil {
		return nil, nil, err
	}
	if g.OS == "" {
		// Windows checks (HAL, activation) are for Windows guests: a
		// config without Windows hints is not held to them.
		g.OS = hvm.GuessOS(g)
		f := lint.Finding{ID: lint.IDOSGuessed, Severity: lint.Info, Field: "os", Fix: fmt.Sprintf("strata guest set %s os=OS (winxp, win2003, windows, linux, other) if that is wrong", g.Name)}
		if strings.HasPrefix(g.OS, "win") {
			f.Message = fmt.Sprintf("the config looks like a Windows guest (viridian, localtime or its names): os set to %s, and lint checks its HAL and activation", g.OS)
		} else {
			f.Message = fmt.Sprintf("the config has no Windows hints (viridian, localtime, a Windows name): os set to %s, and lint makes no Windows checks", g.OS)
		}
		findings = append(findings, f)
	}
	findings = append(findings, missingDisks(file, g)...)
	var adopted []string
	if o.AdoptDisks {
		var err error
		if adopted, err = r.adopt(ctx, g, o.AllowBacking); err != nil {
			r.unadopt(ctx, adopted)
			return nil, nil, err
		}
	}
	g, more, err := r.Define(ctx, g)
	if err != nil {
		r.unadopt(ctx, adopted)
		return nil, nil, err
	}
	return g, append(findings, more...), nil
}

// parseConfig reads an xl/xm config (never executing it) or libvirt XML,
// logging what was skipped; findings are the xl warnings as lint has them.
func parseConfig(file string, data []byte, isLibvirt bool) (*hvm.Guest, []lint.Finding, error) {
	var g *hvm.Guest
	var findings []lint.Finding
	if isLibvirt {
		var warnings []string
		var err error
		if g, warnings, err = libvirt.ParseXML(file, data); err != nil {
			return nil, nil, err
		}
		for _, w := range warnings {
			log.Warn().Str("file", file).Msg(w)
		}
	} else {
		var warnings []xlcfg.Warning
		var err error
		if g, warnings, err = xlcfg.Parse(file, data); err != nil {
			return nil, nil, err
		}
		for _, w := range warnings {
			log.Warn().Str("file", w.File).Int("line", w.Line).Str("code", w.Code).Msg(w.Message)
		}
		findings = lint.FromWarnings(warnings)
	}
	return g, findings, nil
}

// mediaByPath turns CD-ROM paths of registered isos into media names.
func (r *Registry) mediaByPath(g *hvm.Guest) error {
	return r.st.Catalog.View(func(tx *catalog.Tx) error {
		isos, err := media.All(tx)
		if err != nil {
			return err
		}
		for i := range g.Disks {
			d := &g.Disks[i]
			for _, m := range isos {
				if d.CDROM && d.Path != "" && d.Path == m.Path {
					d.Media, d.Path = m.Name, ""
				}
			}
		}
		return nil
	})
}

// adopt registers each writable disk image or device as a volume (or
// reuses the volume already registered at that path), in the format the
// config declares (format=raw is raw, whatever a guest wrote at the start
// of the disk); a disk without one is probed, under the rules of
// store.ImportVolume.
func (r *Registry) adopt(ctx context.Context, g *hvm.Guest, allowBacking bool) ([]string, error) {
	var adopted []string
	vols, err := r.st.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	byPath := map[string]string{}
	for _, v := range vols {
		byPath[v.Path] = v.Name
	}
	for i := range g.Disks {
		d := &g.Disks[i]
		kind, path := d.Source()
		if d.CDROM || (kind != hvm.SourcePath && kind != hvm.SourceDevice) {
			continue
		}
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real // volumes are recorded by their resolved path
		}
		if name, ok := byPath[path]; ok {
			d.Volume, d.Path, d.Device = name, "", ""
			continue
		}
		name := g.Name + "-" + d.Vdev
		o := store.ImportOptions{Path: path, Name: name, AllowBacking: allowBacking}
		if d.Format != "" {
			f, err := storage.ParseFormat(d.Format)
			if err != nil {
				return adopted, storage.Errorf(storage.ErrNotSupported, "adopt disk %s of guest %q: it is declared %s, and strata adopts raw and qcow2 images: convert it (qemu-img convert -O qcow2) and import again", d.Vdev, g.Name, d.Format)
			}
			o.Format = f
		}
		v, err := r.st.ImportVolume(ctx, o, storage.NoProgress{})
		if err != nil {
			return adopted, fmt.Errorf("adopt disk %s of guest %q: %w", d.Vdev, g.Name, err)
		}
		adopted = append(adopted, v.Name)
		d.Volume, d.Path, d.Device = v.Name, "", ""
		if d.Format == "" || d.Format != string(v.Format) {
			d.Format = string(v.Format)
		}
	}
	return adopted, nil
}

func (r *Registry) unadopt(ctx context.Context, names []string) {
	for _, n := range names {
		if err := r.st.DeleteVolume(context.WithoutCancel(ctx), n, false); err != nil {
			log.Error().Err(err).Str("volume", n).Msg("could not unregister an adopted disk")
		}
	}
}

// missingDisks reports the disks of an imported config whose file or
// device does not exist here, as warnings: the import goes on (the
// config may be brought here before its images), but rendering a
// writable one is refused until it exists.
func missingDisks(file string, g *hvm.Guest) []lint.Finding {
	var fs []lint.Finding
	for i, d := range g.Disks {
		kind, src := d.Source()
		if kind != hvm.SourcePath && kind != hvm.SourceDevice || !strings.HasPrefix(src, "/") || d.Script != "" {
			continue
		}
		if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		what := "a writable disk: guest render and start refuse it until it exists"
		if d.ReadOnly() {
			what = "read-only: the guest sees an empty drive"
		}
		f := lint.Finding{ID: lint.IDDiskMissing, Severity: lint.Warning, Field: fmt.Sprintf("disks[%d]", i),
			Message: fmt.Sprintf("%s: disk %s: %s does not exist (%s)", file, d.Vdev, src, what),
			Fix:     "copy the image there, or change the disk with strata guest set " + g.Name}
		log.Warn().Str("file", file).Str("disk", d.Vdev).Msg(f.Message)
		fs = append(fs, f)
	}
	return fs
}
