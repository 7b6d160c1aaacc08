package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// catalog import takes an export strata wrote, with guests, points,
// golden images, clones and isos, and refuses one whose records no
// command would write (exit 2, naming the record and the field), with
// nothing changed: an iso of negative size, a point copy outside its
// volume's pool (a rollback would copy it over the live image) or naming
// another point's copy (deleting the point would remove it), a golden
// image outside its pool (golden delete removes it) or that is a
// volume's image, a clone journal naming a file outside every pool
// (recovering the clone removes it), an iso not named after its ID, a
// point name with a
// '/', a pool of a driver strata does not have.
func TestCatalogImportRefusesCraftedRecords(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "--size", "8M", "sys")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "web", "--method", "copy", "--name", "first")
	ok(t, home, "golden", "create", "--from", "web", "gold")
	ok(t, home, "clone", "gold", "web2")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "iso", "build", src, "disc")
	// Volumes of every kind an export may hold: an iso image copied in as
	// a volume, an image registered in place.
	var disc struct{ Path string }
	jsonOf(t, home, &disc, "iso", "info", "disc")
	isoFile := filepath.Join(t.TempDir(), "disc.iso")
	if raw, err := os.ReadFile(disc.Path); err != nil || os.WriteFile(isoFile, raw, 0o600) != nil {
		t.Fatal(err)
	}
	ok(t, home, "volume", "import", "--copy", "--name", "isovol", isoFile)
	outside := filepath.Join(t.TempDir(), "outside.img")
	if err := os.WriteFile(outside, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "volume", "import", "--format", "raw", outside)
	file := filepath.Join(t.TempDir(), "cat.json")
	ok(t, home, "catalog", "export", file)
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// One record of a bucket (the only one whose key starts with
	// prefix), as a map to edit.
	only := func(b map[string]map[string]any, bucket, prefix string) (string, map[string]any) {
		for k, v := range b[bucket] {
			if strings.HasPrefix(k, prefix) {
				if m, isMap := v.(map[string]any); isMap {
					return k, m
				}
			}
		}
		t.Fatalf("no record %s/%s* in the export", bucket, prefix)
		return "", nil
	}
	victim := filepath.Join(t.TempDir(), "victim.img") // never /etc/passwd: a regression would remove it
	cases := []struct {
		name, bucket, field string
		fn                  func(b map[string]map[string]any) string // returns the record's key
	}{
		{"iso of negative size", "media", `"size"`, func(b map[string]map[string]any) string {
			k, m := only(b, "media", "")
			m["size"] = -1
			return k
		}},
		{"iso size of the wrong type", "media", `"size"`, func(b map[string]map[string]any) string {
			k, m := only(b, "media", "")
			m["size"] = "big"
			return k
		}},
		{"point copy outside its pool", "points", `"disks[0].ref"`, func(b map[string]map[string]any) string {
			k, m := only(b, "points", "g-")
			m["disks"].([]any)[0].(map[string]any)["ref"] = "/etc/passwd"
			return k
		}},
		{"point copy naming another point's file", "points", `"disks[0].ref"`, func(b map[string]map[string]any) string {
			k, m := only(b, "points", "g-")
			d := m["disks"].([]any)[0].(map[string]any)
			d["ref"] = filepath.Join(filepath.Dir(d["ref"].(string)), d["volume_id"].(string)+"-000000000000.img")
			return k
		}},
		{"point name with a slash", "points", `"name"`, func(b map[string]map[string]any) string {
			k, m := only(b, "points", "g-")
			m["name"] = "a/b"
			return k
		}},
		{"golden image outside its pool", "goldens", `"disks[0].path"`, func(b map[string]map[string]any) string {
			k, m := only(b, "goldens", "")
			m["disks"].([]any)[0].(map[string]any)["path"] = "/var/lib/important.img"
			return k
		}},
		{"golden image that is a volume's", "goldens", `"disks[0].path"`, func(b map[string]map[string]any) string {
			var sys string
			for _, v := range b["volumes"] {
				if v.(map[string]any)["name"] == "sys" {
					sys = v.(map[string]any)["path"].(string)
				}
			}
			k, m := only(b, "goldens", "")
			m["disks"].([]any)[0].(map[string]any)["path"] = sys
			return k
		}},
		{"clone journal naming a file outside every pool", "golden_journal", `"paths[0]"`, func(b map[string]map[string]any) string {
			k, _ := only(b, "goldens", "")
			b["golden_journal"] = map[string]any{k: map[string]any{"op": "clone", "paths": []string{victim}, "started": "2026-11-30T20:00:00Z"}}
			return k
		}},
		{"iso not named after its ID", "media", `"path"`, func(b map[string]map[string]any) string {
			k, m := only(b, "media", "")
			m["path"] = filepath.Join(filepath.Dir(m["path"].(string)), "0123456789abcdef.iso")
			return k
		}},
		{"pool of an unknown driver", "pools", `"driver"`, func(b map[string]map[string]any) string {
			b["pools"]["default"].(map[string]any)["driver"] = "zfs"
			return "default"
		}},
	}
	before := snapshotState(t, home)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e map[string]any
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatal(err)
			}
			b := map[string]map[string]any{}
			for name, recs := range e["buckets"].(map[string]any) {
				b[name] = recs.(map[string]any)
			}
			k := c.fn(b)
			e["buckets"] = b // with any bucket c.fn added
			crafted, _ := json.Marshal(e)
			path := filepath.Join(t.TempDir(), "crafted.json")
			if err := os.WriteFile(path, crafted, 0o600); err != nil {
				t.Fatal(err)
			}
			fails(t, home, 2, []string{"record " + c.bucket + "/" + k + " ", "field " + c.field, "nothing was imported"}, "catalog", "import", "--force", path)
			if after := snapshotState(t, home); after != before {
				t.Errorf("a refused import changed the home:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	// The export itself goes in.
	ok(t, home, "catalog", "import", "--force", file)
}

// catalog import refuses an lvm or rbd pool whose names its driver would
// refuse (exit 2, naming the record and the field), nothing imported.
func TestCatalogImportRefusesPoolNamesTheDriverRefuses(t *testing.T) {
	home := t.TempDir()
	file := filepath.Join(t.TempDir(), "cat.json")
	ok(t, home, "catalog", "export", file)
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		pool  map[string]any
	}{
		{`"lvm.vg"`, map[string]any{"name": "bad", "driver": "lvm", "lvm": map[string]any{"vg": "vg0 --yes"}}},
		{`"lvm.thin_pool"`, map[string]any{"name": "bad", "driver": "lvm", "lvm": map[string]any{"vg": "vg0", "thin_pool": "../tp"}}},
		{`"rbd.namespace"`, map[string]any{"name": "bad", "driver": "rbd", "rbd": map[string]any{"pool": "rbd", "namespace": "ns/x"}}},
		{`"rbd.pool"`, map[string]any{"name": "bad", "driver": "rbd", "rbd": map[string]any{"pool": "rbd:id=admin"}}},
	} {
		var e map[string]any
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		e["buckets"].(map[string]any)["pools"].(map[string]any)["bad"] = c.pool
		out, _ := json.Marshal(e)
		path := filepath.Join(t.TempDir(), "crafted.json")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		fails(t, home, 2, []string{"record pools/bad ", "field " + c.field, "nothing was imported"}, "catalog", "import", "--force", path)
	}
}
