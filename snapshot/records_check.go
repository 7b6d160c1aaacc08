package snapshot

// Checks of this package's records in an export before a catalog import
// (catalog.RegisterRecords): what a crafted record could make strata do
// with it — a point copy's path outside its volume's pool, which a
// rollback copies over the live image and a prune removes; a golden
// image's outside its pool, which a golden delete removes — is refused
// as the commands would never write it.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	dirdriver "github.com/strata-vm/strata/storage/dir"
)

func init() {
	catalog.RegisterRecords(bGoldens, checkGoldenRecord) // points may be of goldens
	catalog.RegisterRecords(bPoints, checkPointRecord)
	catalog.RegisterRecords(bPointNames, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var n int
		if err := catalog.DecodeValue("number", raw, &n); err != nil {
			return err
		}
		t, name, _ := strings.Cut(k, "/")
		p, err := exportPoint(e, t, n)
		if err != nil {
			return err
		}
		return catalog.KeyIs("name", name, p.Name)
	})
	catalog.RegisterRecords(bPointPending, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var state string
		if err := catalog.DecodeValue("state", raw, &state); err != nil {
			return err
		}
		t, n, _ := strings.Cut(k, "/")
		id, err := strconv.Atoi(n)
		if err != nil {
			return catalog.FieldError("key", "%q is not TARGETKEY/NUMBER", k)
		}
		_, err = exportPoint(e, t, id)
		return err
	})
	catalog.RegisterRecords(bPointVolumes, func(_ *catalog.Export, _ string, raw json.RawMessage) error {
		var n int64
		if err := catalog.DecodeValue("count", raw, &n); err != nil {
			return err
		}
		return catalog.NotNegative("count", n)
	})
	catalog.RegisterRecords(bJournal, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var j journalEntry
		if err := catalog.DecodeRecord(raw, &j); err != nil {
			return err
		}
		if err := exportTarget(e, "key", k); err != nil {
			return err
		}
		if err := catalog.NotNegative("to", int64(j.To)); err != nil {
			return err
		}
		return catalog.NotNegative("pre", int64(j.Pre))
	})
	catalog.RegisterRecords(bPolicies, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var p Policy
		if err := catalog.DecodeRecord(raw, &p); err != nil {
			return err
		}
		if err := exportTarget(e, "key", k); err != nil {
			return err
		}
		for f, n := range map[string]int64{"keep_last": int64(p.KeepLast), "keep_hourly": int64(p.KeepHourly), "keep_daily": int64(p.KeepDaily),
			"keep_weekly": int64(p.KeepWeekly), "keep_monthly": int64(p.KeepMonthly), "keep_within": int64(p.KeepWithin)} {
			if err := catalog.NotNegative(f, n); err != nil {
				return err
			}
		}
		if p.KeepPreRollback != nil {
			return catalog.NotNegative("keep_pre_rollback", int64(*p.KeepPreRollback))
		}
		return nil
	})
	catalog.RegisterRecords(bGoldenNames, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var id string
		if err := catalog.DecodeValue("id", raw, &id); err != nil {
			return err
		}
		g, err := exportGolden(e, "id", id)
		if err != nil {
			return err
		}
		return catalog.KeyIs("name", k, g.Name)
	})
	catalog.RegisterRecords(bGoldenClones, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var l cloneLink
		if err := catalog.DecodeRecord(raw, &l); err != nil {
			return err
		}
		if _, err := exportGolden(e, "golden", l.Golden); err != nil {
			return err
		}
		if err := catalog.KeyIs("volume_id", k, l.Golden+"/"+l.VolumeID); err != nil {
			return err
		}
		return catalog.NotNegative("disk", int64(l.Disk))
	})
	catalog.RegisterRecords(bCloneJournal, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var j cloneJournal
		if err := catalog.DecodeRecord(raw, &j); err != nil {
			return err
		}
		if _, err := exportGolden(e, "key", k); err != nil {
			return err
		}
		if len(j.Pools) != 0 && len(j.Pools) != len(j.Paths) {
			return catalog.FieldError("pools", "%d pools for %d paths", len(j.Pools), len(j.Paths))
		}
		return checkImages(e, "paths", j.Paths, j.Pools, false)
	})
}

// exportTarget checks a target key (field) of a record: a guest, volume
// or golden image the export has.
func exportTarget(e *catalog.Export, field, s string) error {
	k, err := catalog.ParseTargetKey(s)
	if err != nil {
		return catalog.FieldError(field, "%v", err)
	}
	switch k.Kind() {
	case catalog.KindGuest:
		_, err = e.ExportGuest(field, k.ID())
	case catalog.KindVolume:
		_, err = e.ExportVolume(field, k.ID())
	case catalog.KindGolden:
		_, err = exportGolden(e, field, k.ID())
	}
	return err
}

func exportGolden(e *catalog.Export, field, id string) (goldenRecord, error) {
	var g goldenRecord
	ok, err := e.Record(bGoldens, id, &g)
	if err == nil && !ok {
		err = catalog.FieldError(field, "golden image %q is not in the export", id)
	}
	return g, err
}

func exportPoint(e *catalog.Export, target string, id int) (Point, error) {
	var p Point
	tk, err := catalog.ParseTargetKey(target)
	if err != nil {
		return p, catalog.FieldError("key", "%v", err)
	}
	ok, err := e.Record(bPoints, key(tk, id), &p)
	if err == nil && !ok {
		err = catalog.FieldError("key", "restore point %d of %s is not in the export", id, target)
	}
	return p, err
}

func checkPointRecord(e *catalog.Export, k string, raw json.RawMessage) error {
	var p Point
	if err := catalog.DecodeRecord(raw, &p); err != nil {
		return err
	}
	if p.ID < 1 {
		return catalog.FieldError("id", "%d is not a point number (1 or more)", p.ID)
	}
	if p.TargetKey.IsZero() {
		return catalog.FieldError("target_key", "missing")
	}
	if err := catalog.KeyIs("target_key", k, key(p.TargetKey, p.ID)); err != nil {
		return err
	}
	if err := exportTarget(e, "target_key", p.TargetKey.String()); err != nil {
		return err
	}
	if p.Name != "" {
		if err := catalog.ValidName("name", "restore point", p.Name); err != nil {
			return err
		}
	}
	if p.Bytes != nil {
		if err := catalog.NotNegative("bytes", *p.Bytes); err != nil {
			return err
		}
	}
	if p.Memory != nil {
		if err := catalog.ValidPath("memory.path", p.Memory.Path); err != nil {
			return err
		}
		if err := catalog.NotNegative("memory.bytes", p.Memory.Bytes); err != nil {
			return err
		}
		// Beside one of its disks' volumes, in its .strata-points, named
		// VOLID-UID.state (planMemory): never another point's file,
		// which deleting this point would remove.
		beside := false
		for i, d := range p.Disks {
			v, err := e.ExportVolume(fmt.Sprintf("disks[%d].volume_id", i), d.VolumeID)
			if err != nil {
				return err
			}
			beside = beside || p.Memory.Path == filepath.Join(filepath.Dir(v.Path), dirdriver.PointsDir, v.ID+"-"+p.UID+".state")
		}
		if !beside {
			return catalog.FieldError("memory.path", "%q is not VOLUMEID-%s.state in the %s of one of the point's volumes", p.Memory.Path, p.UID, dirdriver.PointsDir)
		}
	}
	for i, d := range p.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		v, err := e.ExportVolume(f+".volume_id", d.VolumeID)
		if err != nil {
			return err
		}
		if err := catalog.ValidFormat(f+".format", d.Format); err != nil {
			return err
		}
		if d.Method == "" {
			return catalog.FieldError(f+".method", "missing")
		}
		if d.Bytes != nil {
			if err := catalog.NotNegative(f+".bytes", *d.Bytes); err != nil {
				return err
			}
		}
		// A file beside the volume: in its folder's .strata-points.
		if d.Method == dirdriver.MethodReflink || d.Method == dirdriver.MethodCopy {
			if err := catalog.ValidPath(f+".ref", d.Ref); err != nil {
				return err
			}
			if want := filepath.Join(filepath.Dir(v.Path), dirdriver.PointsDir); filepath.Dir(d.Ref) != want {
				return catalog.FieldError(f+".ref", "%q is not in its volume's %s", d.Ref, want)
			}
			// Named VOLID-UID[.EXT] (the dir driver's plan): never
			// another point's copy, which deleting this point removes.
			base := filepath.Base(d.Ref)
			if strings.TrimSuffix(base, filepath.Ext(base)) != v.ID+"-"+p.UID {
				return catalog.FieldError(f+".ref", "%q is not this point's copy of its volume (%s-%s)", base, v.ID, p.UID)
			}
		}
	}
	return nil
}

func checkGoldenRecord(e *catalog.Export, k string, raw json.RawMessage) error {
	var g goldenRecord
	if err := catalog.DecodeRecord(raw, &g); err != nil {
		return err
	}
	if err := catalog.ValidID("id", g.ID); err != nil {
		return err
	}
	if err := catalog.KeyIs("id", k, g.ID); err != nil {
		return err
	}
	if err := catalog.ValidName("name", "golden image", g.Name); err != nil {
		return err
	}
	paths := make([]string, len(g.Disks))
	pools := make([]string, len(g.Disks))
	for i, d := range g.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		if d.Format != storage.FormatRaw && d.Format != storage.FormatQcow2 {
			return catalog.FieldError(f+".format", "%q is not a format golden images hold (raw or qcow2)", d.Format)
		}
		if err := catalog.NotNegative(f+".virtual_size", d.VirtualSize); err != nil {
			return err
		}
		if err := catalog.NotNegative(f+".allocated_bytes", d.Bytes); err != nil {
			return err
		}
		paths[i], pools[i] = d.Path, d.Pool
	}
	return checkImages(e, "disks", paths, pools, true)
}

// checkImages checks the images of a golden or a clone under way: each
// path in its pool (pools[i]; none given: only the path's form), named
// as strata names images there; a golden's is no volume's image.
func checkImages(e *catalog.Export, field string, paths, pools []string, golden bool) error {
	for i, path := range paths {
		f := fmt.Sprintf("%s[%d]", field, i)
		if i >= len(pools) {
			// A journal from before pools were journaled: its images
			// were the dir driver's, in a dir pool (recovery removes
			// them).
			if err := catalog.ValidPath(f, path); err != nil {
				return err
			}
			p, ok := e.DirPoolAt(filepath.Dir(path))
			if !ok {
				return catalog.FieldError(f, "%q is in no dir pool of the export", path)
			}
			if err := catalog.InPool(f, path, p, "", "img", "qcow2"); err != nil {
				return err
			}
			continue
		}
		p, err := e.ExportPool(f+".pool", pools[i])
		if err != nil {
			return err
		}
		if p.Driver != dirdriver.Name {
			continue // a device or network image (its driver's name)
		}
		if err := catalog.ValidPath(f+".path", path); err != nil {
			return err
		}
		if err := catalog.InPool(f+".path", path, p, "", "img", "qcow2"); err != nil {
			return err
		}
		// A golden's image is its own (golden delete removes it); a
		// clone journal's are the clones' (volumes once recorded).
		if ids := e.VolumesAt(path); golden && len(ids) > 0 {
			return catalog.FieldError(f+".path", "%q is the image of volume %s", path, ids[0])
		}
	}
	return nil
}
