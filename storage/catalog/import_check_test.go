package catalog_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// An import checks every record as the command that writes it would,
// before anything is replaced: a record of the wrong type, a name no
// command accepts, a pool driver this program does not have, a path
// outside its pool, an index naming what is not there. The error names
// the record and the field, and the catalog stays as it was, on either
// backend.
func TestImportRefusesRecordsNoCommandWouldWrite(t *testing.T) {
	const vid = "00000000000000b1"
	src := backends[0].open(t, t.TempDir(), "")
	if err := src.Update(func(tx *catalog.Tx) error {
		if err := addVolume(tx, vid, "disk"); err != nil {
			return err
		}
		if err := tx.AddPool(storage.Pool{Name: "more", Driver: "dir", Path: filepath.Join(t.TempDir(), "more")}); err != nil {
			return err
		}
		return tx.PutGuest(storage.Guest{ID: "00000000000000c1", Name: "vm", Disks: []string{vid}})
	}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "src.json")
	if err := src.ExportFile(file, false); err != nil {
		t.Fatal(err)
	}
	edit := func(t *testing.T, fn func(b map[string]map[string]any)) string {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]any
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		b := map[string]map[string]any{}
		for name, recs := range e["buckets"].(map[string]any) {
			b[name] = recs.(map[string]any)
		}
		fn(b)
		e["buckets"] = b
		raw, _ = json.Marshal(e)
		out := filepath.Join(t.TempDir(), "crafted.json")
		if err := os.WriteFile(out, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return out
	}
	vol := func(b map[string]map[string]any) map[string]any { return b["volumes"][vid].(map[string]any) }
	cases := []struct {
		name, record, field string
		fn                  func(b map[string]map[string]any)
	}{
		{"volume name with a slash", "volumes/" + vid, `"name"`, func(b map[string]map[string]any) {
			vol(b)["name"] = "../etc"
			b["volume_names"]["../etc"] = vid
			delete(b["volume_names"], "disk")
		}},
		{"volume pool of the wrong type", "volumes/" + vid, `"pool"`, func(b map[string]map[string]any) { vol(b)["pool"] = 7 }},
		{"volume of an unknown format", "volumes/" + vid, `"format"`, func(b map[string]map[string]any) { vol(b)["format"] = "vmdk" }},
		{"volume outside its pool", "volumes/" + vid, `"path"`, func(b map[string]map[string]any) {
			vol(b)["path"] = "/etc/shadow"
			b["volume_paths"]["/etc/shadow"] = vid
		}},
		{"volume path not clean", "volumes/" + vid, `"path"`, func(b map[string]map[string]any) {
			p := vol(b)["path"].(string)
			vol(b)["path"] = filepath.Dir(p) + "/../" + filepath.Base(filepath.Dir(p)) + "/" + filepath.Base(p)
		}},
		{"volume image not named after its ID", "volumes/" + vid, `"path"`, func(b map[string]map[string]any) {
			p := filepath.Join(filepath.Dir(vol(b)["path"].(string)), "catalog.db")
			delete(b["volume_paths"], vol(b)["path"].(string))
			vol(b)["path"] = p
			b["volume_paths"][p] = vid
		}},
		{"volume image named after another ID", "volumes/" + vid, `"path"`, func(b map[string]map[string]any) {
			vol(b)["path"] = filepath.Join(filepath.Dir(vol(b)["path"].(string)), "00000000000000aa.img")
		}},
		{"volume of a missing pool", "volumes/" + vid, `"pool"`, func(b map[string]map[string]any) { vol(b)["pool"] = "nowhere" }},
		{"pool of an unknown driver", "pools/more", `"driver"`, func(b map[string]map[string]any) {
			b["pools"]["more"].(map[string]any)["driver"] = "zfs"
		}},
		{"pool with a relative path", "pools/more", `"path"`, func(b map[string]map[string]any) {
			b["pools"]["more"].(map[string]any)["path"] = "more"
		}},
		{"name index naming another volume", "volume_names/other", `"name"`, func(b map[string]map[string]any) { b["volume_names"]["other"] = vid }},
		{"guest disk that is not there", "guests/00000000000000c1", `"disks[0]"`, func(b map[string]map[string]any) {
			b["guests"]["00000000000000c1"].(map[string]any)["disks"] = []string{"00000000000000ff"}
		}},
		{"hold of nothing strata holds", "holds/x/" + vid + "/point:v", `"key"`, func(b map[string]map[string]any) {
			b["holds"] = map[string]any{"x/" + vid + "/point:v": map[string]any{"holder": "point"}}
		}},
		{"home ID that is not one", "meta/home_id", `"home_id"`, func(b map[string]map[string]any) { b["meta"]["home_id"] = 12 }},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			dst := be.open(t, t.TempDir(), be.url(t))
			dst.PoolDriver = func(name string) bool { return name == "dir" || name == "lvm" }
			if err := dst.Update(func(tx *catalog.Tx) error { return addVolume(tx, "00000000000000aa", "old") }); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					_, err := dst.Import(edit(t, c.fn), true)
					if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "record "+c.record+" ") || !strings.Contains(err.Error(), "field "+c.field) {
						t.Errorf("import: %v\nwant invalid, naming record %s and field %s", err, c.record, c.field)
					}
					if got := volumeNames(t, dst); len(got) != 1 || got[0] != "old" {
						t.Errorf("after a refused import the catalog holds %v, want [old]", got)
					}
				})
			}
			// The export as it was goes in.
			if _, err := dst.Import(file, true); err != nil {
				t.Fatalf("import of the export itself: %v", err)
			}
			if got := volumeNames(t, dst); len(got) != 1 || got[0] != "disk" {
				t.Errorf("after the import the catalog holds %v, want [disk]", got)
			}
		})
	}
}

// An import refuses a dir pool where pool add refuses one, in the home it
// imports into: the root directory, the home itself (a volume there named
// catalog.db was deleted with it), one inside the home other than
// HOME/pools/NAME, or a link to one of them. A pool holding the home (a
// shared catalog's pool of another host) goes in.
func TestImportRefusesAPoolWherePoolAddRefusesOne(t *testing.T) {
	src := backends[0].open(t, t.TempDir(), "")
	file := filepath.Join(t.TempDir(), "src.json")
	if err := src.ExportFile(file, false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			home := t.TempDir()
			dst := be.open(t, home, be.url(t))
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(home, link); err != nil {
				t.Fatal(err)
			}
			for _, at := range []string{"/", home, filepath.Join(home, "backups"), filepath.Join(home, "pools"), link} {
				var e map[string]any
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatal(err)
				}
				e["buckets"].(map[string]any)["pools"].(map[string]any)["evil"] = map[string]any{"name": "evil", "driver": "dir", "path": at}
				crafted, _ := json.Marshal(e)
				path := filepath.Join(t.TempDir(), "crafted.json")
				if err := os.WriteFile(path, crafted, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := dst.Import(path, true); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "record pools/evil ") || !strings.Contains(err.Error(), `field "path"`) {
					t.Errorf("import of a pool at %s: %v\nwant invalid, naming pools/evil and its path", at, err)
				}
			}
			// A pool of its own in HOME/pools goes in, and one holding the home.
			var e map[string]any
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatal(err)
			}
			e["buckets"].(map[string]any)["pools"].(map[string]any)["more"] = map[string]any{"name": "more", "driver": "dir", "path": filepath.Join(home, "pools", "more")}
			e["buckets"].(map[string]any)["pools"].(map[string]any)["above"] = map[string]any{"name": "above", "driver": "dir", "path": filepath.Dir(home)}
			crafted, _ := json.Marshal(e)
			path := filepath.Join(t.TempDir(), "good.json")
			if err := os.WriteFile(path, crafted, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := dst.Import(path, true); err != nil {
				t.Errorf("import of a pool in HOME/pools: %v", err)
			}
		})
	}
}
