package media

import (
	"encoding/json"
	"fmt"

	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
)

// Checks of the media records in an export before a catalog import
// (catalog.RegisterRecords): a medium strata made lies in its pool (iso
// delete removes it), and its sizes are sizes.
func init() {
	catalog.RegisterRecords(bucketMedia, checkMediumRecord)
	catalog.RegisterRecords(bucketNames, func(e *catalog.Export, k string, raw json.RawMessage) error {
		var id string
		if err := catalog.DecodeValue("id", raw, &id); err != nil {
			return err
		}
		var m Medium
		ok, err := e.Record(bucketMedia, id, &m)
		if err == nil && !ok {
			err = catalog.FieldError("id", "iso %q is not in the export", id)
		}
		if err != nil {
			return err
		}
		return catalog.KeyIs("name", k, m.Name)
	})
}

func checkMediumRecord(e *catalog.Export, k string, raw json.RawMessage) error {
	var m Medium
	if err := catalog.DecodeRecord(raw, &m); err != nil {
		return err
	}
	if err := catalog.ValidID("id", m.ID); err != nil {
		return err
	}
	if err := catalog.KeyIs("id", k, m.ID); err != nil {
		return err
	}
	if err := catalog.ValidName("name", "iso", m.Name); err != nil {
		return err
	}
	if err := catalog.ValidPath("path", m.Path); err != nil {
		return err
	}
	if err := catalog.NotNegative("size", m.Size); err != nil {
		return err
	}
	for i, off := range m.BadSectors {
		if err := catalog.NotNegative(fmt.Sprintf("bad_sectors[%d]", i), off); err != nil {
			return err
		}
	}
	switch m.Origin {
	case OriginCapture, OriginBuild, OriginImport:
	default:
		return catalog.FieldError("origin", "%q is not capture, build or import", m.Origin)
	}
	if m.Pool == "" {
		if !m.Imported {
			return catalog.FieldError("pool", "an iso strata made is in a pool")
		}
		return nil
	}
	p, err := e.ExportPool("pool", m.Pool)
	if err != nil {
		return err
	}
	if p.Driver != dir.Name {
		return catalog.FieldError("pool", "pool %q uses driver %q, which cannot hold ISO images", p.Name, p.Driver)
	}
	if m.Imported {
		return nil
	}
	return catalog.InPool("path", m.Path, p, m.ID, "iso")
}
