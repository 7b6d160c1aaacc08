package rbd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/run"
)

// recorded is a real rbd's answer from testdata/rbd (record.sh).
func recorded(t *testing.T, name string) (out []byte, err error) {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "rbd")
	out, rerr := os.ReadFile(filepath.Join(dir, name+".out"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	stderr, _ := os.ReadFile(filepath.Join(dir, name+".err"))
	rcRaw, _ := os.ReadFile(filepath.Join(dir, name+".rc"))
	rc, _ := strconv.Atoi(strings.TrimSpace(string(rcRaw)))
	if rc != 0 {
		return out, &run.Error{Argv: []string{"rbd"}, ExitCode: rc, Stderr: string(stderr), Err: errors.New("exit status " + strconv.Itoa(rc))}
	}
	return out, nil
}

// replay is a Client answering every command with one recording, and
// counting the runs.
func replay(t *testing.T, name string, runs *int) *rbd.Client {
	return &rbd.Client{Exec: func(_ context.Context, _ []string, _ bool) ([]byte, error) {
		*runs++
		return recorded(t, name)
	}}
}

var spec = rbd.Spec{Pool: "rbd", Image: "rec-img"}

func TestRecordedReportsParse(t *testing.T) {
	var n int
	ctx := context.Background()
	img, err := replay(t, "info", &n).Info(ctx, spec)
	if err != nil || img.ID == "" || img.Size != 4<<20 || img.Snaps != 2 || img.Parent != nil || !slices.Contains(img.Features, "deep-flatten") {
		t.Fatalf("info: %+v %v", img, err)
	}
	clone, err := replay(t, "info-clone", &n).Info(ctx, spec)
	if err != nil || clone.Parent == nil || clone.Parent.Image != "rec-img" || clone.Parent.Snapshot != rbd.GoldenSnap {
		t.Fatalf("info of a clone: %+v %v", clone, err)
	}
	snaps, err := replay(t, "snap-ls", &n).Snapshots(ctx, spec)
	if err != nil || len(snaps) != 2 || snaps[0].Name != "strata-000000000001" || snaps[0].Protected || !snaps[1].Protected {
		t.Fatalf("snap ls: %+v %v", snaps, err)
	}
	kids, err := replay(t, "children", &n).Children(ctx, spec, rbd.GoldenSnap)
	if err != nil || len(kids) != 1 || kids[0].Image != "rec-clone" {
		t.Fatalf("children: %+v %v", kids, err)
	}
	du, err := replay(t, "du", &n).DU(ctx, spec)
	if err != nil || len(du) != 3 || du[2].Snapshot != "" || du[0].Snapshot == "" || du[0].Used != 4<<20 {
		t.Fatalf("du: %+v %v", du, err)
	}
	w, err := replay(t, "status", &n).Watchers(ctx, spec)
	if err != nil || len(w) != 0 {
		t.Fatalf("status: %v %v", w, err)
	}
	// An image never rolled back has no restore generation: no object
	// yet in its pool, or no key for it (rados exits 1 for both).
	for _, none := range []string{"gen-no-object", "gen-no-key"} {
		if g, err := replay(t, none, &n).Generation(ctx, spec); err != nil || g != "" {
			t.Fatalf("%s: %q %v", none, g, err)
		}
	}
	if g, err := replay(t, "gen", &n).Generation(ctx, spec); err != nil || g != "0123456789abcdef" {
		t.Fatalf("generation: %q %v", g, err)
	}
	if g, err := replay(t, "unreachable", &n).Generation(ctx, spec); err == nil {
		t.Fatalf("generation from an unreachable cluster: %q, want an error", g)
	}
	st, err := replay(t, "pool-stats", &n).PoolStats(ctx, spec)
	if err != nil || st.Images < 2 {
		t.Fatalf("pool stats: %+v %v", st, err)
	}
}

// TestRecordedFailuresClassify: each errno rbd exits with becomes its
// storage error kind, with rbd's own message and not its debug lines.
func TestRecordedFailuresClassify(t *testing.T) {
	for _, c := range []struct {
		name string
		kind error
		says string
	}{
		{"info-missing", storage.ErrNotFound, "no such file or directory"},
		{"create-exists", storage.ErrExists, "file exists"},
		{"rm-with-snaps", storage.ErrPrecondition, "image has snapshots"},
		{"snap-rm-protected", storage.ErrInUse, "is protected from removal"},
		{"unprotect-children", storage.ErrInUse, "clones depend on it"},
		{"clone-unprotected", storage.ErrInvalid, "clone error"},
		{"unreachable", storage.ErrBusy, "does not answer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rbd.BusyWait = 0
			var n int
			err := replay(t, c.name, &n).Create(context.Background(), spec, 1)
			if !errors.Is(err, c.kind) {
				t.Fatalf("%v: want kind %v", err, c.kind)
			}
			msg := strings.ToLower(err.Error())
			if !strings.Contains(msg, c.says) || strings.Contains(msg, "+0000") || strings.Contains(msg, "% complete") {
				t.Fatalf("message %q: want %q, without librbd's log lines", err, c.says)
			}
			var re *run.Error
			if !errors.As(err, &re) {
				t.Fatal("the command's error is not wrapped")
			}
			want := 1
			if re.ExitCode == 16 {
				want = 1 + rbd.BusyRetries // EBUSY is retried, boundedly
			}
			if n != want {
				t.Fatalf("ran %d times, want %d", n, want)
			}
		})
	}
}

func TestArgvCarriesConfAndIDNeverAKey(t *testing.T) {
	s := rbd.Spec{Conn: rbd.Conn{Conf: "/etc/ceph/x.conf", ID: "strata"}, Pool: "p", Namespace: "ns", Image: "strata-0123456789abcdef"}
	for _, argv := range [][]string{rbd.InfoArgs(s), rbd.CreateArgs(s, 4096), rbd.CloneArgs(s, rbd.GoldenSnap, s.WithImage("c")), rbd.PoolsArgs(s.Conn)} {
		line := strings.Join(argv, " ")
		if !strings.Contains(line, "--conf /etc/ceph/x.conf") || !strings.Contains(line, "--id strata") || !strings.Contains(line, "--client-mount-timeout") {
			t.Fatalf("%q: want the pool's conf, id and a mount timeout", line)
		}
		if strings.Contains(line, "--key ") || strings.Contains(line, "--key=") {
			t.Fatalf("%q carries a key", line)
		}
	}
	if got := strings.Join(rbd.CreateArgs(s, 4096), " "); !strings.HasSuffix(got, "create --size 4096B --image-feature "+rbd.Features+" p/ns/strata-0123456789abcdef") {
		t.Fatalf("create: %q", got)
	}
	if got := strings.Join(rbd.CopyArgs(s, "snap", s.WithImage("d")), " "); !strings.HasSuffix(got, "cp --no-progress p/ns/strata-0123456789abcdef@snap p/ns/d") {
		t.Fatalf("copy: %q", got)
	}
}

func TestPathRoundTripsAndNamesMapBack(t *testing.T) {
	s := rbd.Spec{Conn: rbd.Conn{Conf: "/etc/ceph/a:b.conf", ID: "strata"}, Pool: "p", Namespace: "ns", Image: rbd.ImageName("0123456789abcdef")}
	p := rbd.Path(s)
	if p != `rbd:p/ns/strata-0123456789abcdef:id=strata:conf=/etc/ceph/a\:b.conf` {
		t.Fatalf("path %q", p)
	}
	back, err := rbd.ParsePath(p)
	if err != nil || back != s {
		t.Fatalf("parsed back %+v %v, want %+v", back, err, s)
	}
	if plain, err := rbd.ParsePath("rbd:pool/img"); err != nil || plain.Pool != "pool" || plain.Image != "img" || plain.Namespace != "" {
		t.Fatalf("plain: %+v %v", plain, err)
	}
	for _, bad := range []string{"/var/lib/x.img", "rbd:", "rbd:pool", "rbd:a/b/c/d", "rbd:pool/img@snap"} {
		if _, err := rbd.ParsePath(bad); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("ParsePath(%q): %v, want invalid", bad, err)
		}
	}
	if id, applying, ok := rbd.ParseImageName("strata-0123456789abcdef.strata-applying"); !ok || !applying || id != "0123456789abcdef" {
		t.Fatalf("applying name: %q %v %v", id, applying, ok)
	}
	for _, foreign := range []string{"vm-100-disk-0", "strata-", "strata-a.b"} {
		if _, _, ok := rbd.ParseImageName(foreign); ok {
			t.Fatalf("%q taken for strata's", foreign)
		}
	}
}
