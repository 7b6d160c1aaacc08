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

// An import checks an lvm or rbd pool's fields as the drivers that use
// them would: a volume group or thin pool name lvm refuses, a Ceph pool,
// namespace or client ID that would break an image spec or QEMU's rbd:
// filename, a ceph.conf that is not an absolute path. The error names the
// record and the field, nothing is replaced, on either backend; the
// pools as pool add records them go in.
func TestImportRefusesPoolFieldsTheirDriverRefuses(t *testing.T) {
	src := backends[0].open(t, t.TempDir(), "")
	if err := src.Update(func(tx *catalog.Tx) error {
		if err := tx.AddPool(storage.Pool{Name: "thin", Driver: "lvm", LVM: &storage.LVMPool{VG: "vg0", ThinPool: "tp_1.a+b"}}); err != nil {
			return err
		}
		return tx.AddPool(storage.Pool{Name: "ceph", Driver: "rbd", RBD: &storage.RBDPool{Pool: "rbd", Namespace: "ns-1", ID: "strata", CephConf: "/etc/ceph/ceph.conf"}})
	}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "src.json")
	if err := src.ExportFile(file, false); err != nil {
		t.Fatal(err)
	}
	craft := func(t *testing.T, pool, field, value string) string {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]any
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		p := e["buckets"].(map[string]any)["pools"].(map[string]any)[pool].(map[string]any)
		sub, key, _ := strings.Cut(field, ".")
		p[sub].(map[string]any)[key] = value
		raw, _ = json.Marshal(e)
		out := filepath.Join(t.TempDir(), "crafted.json")
		if err := os.WriteFile(out, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return out
	}
	cases := []struct{ pool, field, value string }{
		{"thin", "lvm.vg", "vg 0"},
		{"thin", "lvm.vg", "-vg"},
		{"thin", "lvm.vg", ".."},
		{"thin", "lvm.vg", "vg/other"},
		{"thin", "lvm.vg", strings.Repeat("v", 200)},
		{"thin", "lvm.thin_pool", "tp/x"},
		{"thin", "lvm.thin_pool", "--force"},
		{"thin", "lvm.thin_pool", "tp$"},
		{"ceph", "rbd.pool", "rbd/other"},
		{"ceph", "rbd.pool", "rbd@snap"},
		{"ceph", "rbd.namespace", "ns:conf=/tmp/evil"},
		{"ceph", "rbd.namespace", "a b"},
		{"ceph", "rbd.id", "admin\\"},
		{"ceph", "rbd.ceph_conf", "ceph.conf"},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			dst := be.open(t, t.TempDir(), be.url(t))
			dst.PoolDriver = func(name string) bool { return name == "dir" || name == "lvm" || name == "rbd" }
			if err := dst.Update(func(tx *catalog.Tx) error { return addVolume(tx, "00000000000000aa", "old") }); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				t.Run(c.field+"="+c.value, func(t *testing.T) {
					_, err := dst.Import(craft(t, c.pool, c.field, c.value), true)
					if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "record pools/"+c.pool+" ") || !strings.Contains(err.Error(), `field "`+c.field+`"`) {
						t.Errorf("import: %v\nwant invalid, naming record pools/%s and field %q", err, c.pool, c.field)
					}
					if got := volumeNames(t, dst); len(got) != 1 || got[0] != "old" {
						t.Errorf("after a refused import the catalog holds %v, want [old]", got)
					}
				})
			}
			if _, err := dst.Import(file, true); err != nil {
				t.Fatalf("import of the export itself: %v", err)
			}
		})
	}
}
