package snapshot

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

func rawPoint(t *testing.T, p Point) []byte {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Doctor recovers the target of a point left creating or deleting and
// of a journal, not one whose points are all ready, and sets aside the
// records it cannot read (which then keep every orphan).
func TestDoctorPlansRecoveryOfAnInterruptedPoint(t *testing.T) {
	creating := Point{ID: 3, TargetKey: catalog.VolumeKey("00000000000000bb"), State: stateCreating}
	ready := Point{ID: 1, TargetKey: catalog.VolumeKey("00000000000000cc"), State: stateReady}
	deleting := Point{ID: 2, TargetKey: catalog.GuestKey("00000000000000dd"), State: stateDeleting}
	points := map[string][]byte{
		key(creating.TargetKey, 3):      rawPoint(t, creating),
		key(ready.TargetKey, 1):         rawPoint(t, ready),
		key(deleting.TargetKey, 2):      rawPoint(t, deleting),
		"v-00000000000000ee/0000000001": []byte("{not json"),
	}
	journals := []string{catalog.GuestKey("00000000000000aa").String(), "gold-00000000000000ff", catalog.VolumeKey("00000000000000bb").String()}
	rp := planRecovery(journals, points)
	var got []string
	for _, k := range rp.targets {
		got = append(got, k.String())
	}
	if want := "g-00000000000000aa g-00000000000000dd v-00000000000000bb"; strings.Join(got, " ") != want {
		t.Errorf("targets to recover: %v, want %s", got, want)
	}
	if len(rp.unreadable) != 2 || rp.unreadable["points/v-00000000000000ee/0000000001"] == nil || rp.unreadable["journal/gold-00000000000000ff"] == nil {
		t.Errorf("unreadable records: %v, want the bad point and the golden's journal key", rp.unreadable)
	}
	fs := unreadableFindings(rp.unreadable)
	if len(fs) != 2 || fs[0].Target != "journal/gold-00000000000000ff" || fs[0].Kind != "unreadable-record" {
		t.Errorf("findings of unreadable records: %+v", fs)
	}
	if keep, _ := orphanPolicy(true, catalog.Restored{}, false, "", "h1", "/home"); !strings.Contains(keep, "cannot read") {
		t.Errorf("an unreadable record does not keep the orphans: %q", keep)
	}
}

// Orphans stay while the catalog may lack their record (restored from a
// copy) or may be another home's (its ID is not the state home's).
func TestDoctorKeepsOrphansWhenTheCatalogMayLackTheirRecord(t *testing.T) {
	if keep, fs := orphanPolicy(false, catalog.Restored{}, false, "h1", "h1", "/home"); keep != "" || len(fs) != 0 {
		t.Errorf("a healthy home keeps orphans (%q) or reports %+v", keep, fs)
	}
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	if keep, _ := orphanPolicy(false, catalog.Restored{From: "/backup/catalog.db", At: at}, true, "h1", "h1", "/home"); !strings.Contains(keep, "restored from /backup/catalog.db on 2026-11-30 09:00") {
		t.Errorf("a restored catalog does not keep the orphans: %q", keep)
	}
	keep, fs := orphanPolicy(false, catalog.Restored{}, false, "h2", "h1", "/home")
	if !strings.Contains(keep, "disagree") || len(fs) != 1 || fs[0].Kind != "home-id-mismatch" || fs[0].Path != "/home/"+catalog.HomeIDFile {
		t.Errorf("another home's catalog: keep %q, findings %+v", keep, fs)
	}
}

// Doctor's scan covers the pools and the folders of volumes imported in
// place (never a network volume's), counts as referenced the volumes'
// images, point copies, memory files, golden images and media, and the
// restored copy of a journaled rollback; an internal snapshot is looked
// for inside its image, not as a file.
func TestDoctorPlanCountsWhatTheCatalogReferences(t *testing.T) {
	pooled := storage.Volume{ID: "00000000000000a1", Name: "sys", Path: "/pool/00000000000000a1.qcow2", Format: storage.FormatQcow2}
	imported := storage.Volume{ID: "00000000000000a2", Name: "data", Path: "/srv/data.img", Format: storage.FormatRaw}
	network := storage.Volume{ID: "00000000000000a3", Name: "net", Path: "rbd:pool/net"}
	g := catalog.GuestKey("00000000000000g1")
	internal := DiskPoint{VolumeID: pooled.ID, PointRef: storage.PointRef{Method: MethodQcow2, Ref: "strata-7"}}
	copied := DiskPoint{VolumeID: imported.ID, PointRef: storage.PointRef{Method: MethodCopy, Ref: "/srv/.strata-points/00000000000000a2-0123456789ab"}}
	recs := doctorRecords{
		vols:  []storage.Volume{pooled, imported, network},
		pools: []storage.Pool{{Name: "default", Path: "/pool/"}, {Name: "ceph", Driver: "rbd"}},
		extra: map[string]bool{"/pool/golden.raw": true},
		points: []Point{
			{ID: 1, TargetKey: g, State: stateReady, Disks: []DiskPoint{internal, copied}, Memory: &MemoryState{Path: "/pool/.strata-points/mem"}},
			{ID: 2, TargetKey: g, State: stateReady, Disks: []DiskPoint{copied}},
		},
		journal: map[catalog.TargetKey]journalEntry{g: {Op: "rollback", To: 2, Pre: 3}},
	}
	sp := planScan(recs, func(d DiskPoint) bool { return d.Method == MethodQcow2 })
	if want := "/pool /srv"; strings.Join(sp.dirList(), " ") != want {
		t.Errorf("directories scanned: %v, want %s", sp.dirList(), want)
	}
	if !sp.dirs["/pool"] || sp.dirs["/srv"] {
		t.Errorf("pool directories: %v, want /pool a pool's and /srv the admin's", sp.dirs)
	}
	for _, p := range []string{pooled.Path, imported.Path, copied.Ref, "/pool/.strata-points/mem", "/pool/golden.raw"} {
		if !sp.refs[p] {
			t.Errorf("%s is not referenced", p)
		}
	}
	if sp.refs["strata-7"] || !sp.snaps[pooled.Path]["strata-7"] {
		t.Errorf("the internal snapshot is not looked for in its image: refs %v, snaps %v", sp.refs, sp.snaps)
	}
	if !sp.journaled[imported.ID] || sp.journaled[pooled.ID] {
		t.Errorf("journaled volumes %v, want only the disk of point 2 (the rollback's target)", sp.journaled)
	}
	if !sp.referenced("/srv", "/srv/data.img.strata-rollback-0123456789ab") || sp.referenced("/pool", "/pool/00000000000000a1.qcow2.strata-rollback-0123456789ab") {
		t.Error("a journaled rollback's restored copy is an orphan, or another volume's is not")
	}
	if _, ok := sp.byPath["rbd:pool/net"]; ok || sp.dirs["."] {
		t.Error("a network volume is scanned as a file")
	}
	if !sp.inFolder["/srv"]["data.img"] || !sp.inFolder["/srv"][imported.ID] {
		t.Errorf("names tying files to volumes in /srv: %v", sp.inFolder["/srv"])
	}
}
