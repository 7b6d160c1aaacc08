package catalog

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/strata-vm/strata/storage"
)

// ReplaceVolume rewrites the record of an existing volume, keeping its ID,
// name and path (flattening a linked clone clears its Backing).
func (t *Tx) ReplaceVolume(v storage.Volume) error {
	old, err := t.VolumeByID(v.ID)
	if err != nil {
		return err
	}
	if old.Name != v.Name || old.Path != v.Path {
		return storage.Errorf(storage.ErrInvalid, "volume %q: ReplaceVolume cannot rename or move a volume", old.Name)
	}
	return t.Put(string(bVolumes), v.ID, v)
}

// GoldensBucket holds the golden image records (package snapshot owns
// their format; the catalog knows of them only what every layer must see,
// GoldenDefinitions).
const GoldensBucket = "goldens"

// GoldenDefinition is what every layer must see of a golden image: the
// guest definition it keeps (its UUID and MAC addresses stay taken: a
// clone of it gets fresh ones) and what it was frozen from.
type GoldenDefinition struct {
	Name       string
	Definition string
	// SourceKind ("guest" or "volume") and SourceID: the catalog ID of
	// what the golden was frozen from.
	SourceKind, SourceID string
}

// GoldenDefinitions calls fn for every golden image frozen with a guest
// definition.
func (t *Tx) GoldenDefinitions(fn func(GoldenDefinition) error) error {
	return t.Scan(GoldensBucket, "", func(key string, raw []byte) error {
		var g struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
			Source     struct {
				Kind string `json:"kind"`
				ID   string `json:"id"`
			} `json:"source"`
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			return fmt.Errorf("golden record %q: %w", key, err)
		}
		if strings.TrimSpace(g.Definition) == "" {
			return nil
		}
		return fn(GoldenDefinition{Name: g.Name, Definition: g.Definition, SourceKind: g.Source.Kind, SourceID: g.Source.ID})
	})
}
