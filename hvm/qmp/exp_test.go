package qmp_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
	"strings"

	"github.com/strata-vm/strata/hvm/qmp"
)

func TestExpMigrate4(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "d.raw")
	os.WriteFile(disk, make([]byte, 64<<20), 0o600)
	tgt := filepath.Join(dir, "t.raw")
	os.WriteFile(tgt, nil, 0o600); os.Truncate(tgt, 64<<20)
	sock := filepath.Join(dir, "q.sock")
	cmd := exec.Command("qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "64", "-S", "-display", "none", "-monitor", "none", "-serial", "none", "-nodefaults",
		"-drive", "file="+disk+",format=raw,if=ide,index=0", "-qmp", "unix:"+sock+",server=on,wait=off")
	var se strings.Builder
	cmd.Stderr = &se
	cmd.Start()
	defer func() { cmd.Process.Kill(); cmd.Wait(); t.Log(se.String()) }()
	for i := 0; i < 500; i++ { if _, err := os.Stat(sock); err == nil { break }; time.Sleep(10*time.Millisecond) }
	ctx := context.Background()
	c, err := qmp.Dial(ctx, sock)
	if err != nil { t.Fatal(err) }
	ex := func(cmd string, a any) string { r, err := c.Execute(ctx, cmd, a); t.Logf("%s: %s %v", cmd, r, err); return string(r) }
	ex("cont", nil)
	ex("stop", nil)
	ex("blockdev-add", map[string]any{"driver": "raw", "node-name": "bk", "file": map[string]any{"driver": "file", "filename": tgt}})
	ex("transaction", map[string]any{"actions": []any{map[string]any{"type": "blockdev-backup", "data": map[string]any{"job-id": "j", "device": "ide0-hd0", "target": "bk", "sync": "full", "auto-dismiss": false}}}})
	f, _ := os.OpenFile(filepath.Join(dir, "state"), os.O_CREATE|os.O_WRONLY, 0o600)
	r, err := c.ExecuteFile(ctx, "getfd", map[string]any{"fdname": "st"}, f)
	t.Log("getfd", string(r), err)
	ex("migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40, "downtime-limit": 100000})
	start := time.Now()
	ex("migrate", map[string]any{"uri": "fd:st"})
	for i := 0; i < 200; i++ {
		s := ex("query-migrate", nil)
		if strings.Contains(s, "completed") || strings.Contains(s, "failed") { break }
		time.Sleep(20*time.Millisecond)
	}
	t.Log("migrate took", time.Since(start))
	ex("query-status", nil)
	ex("query-jobs", nil)
	ex("cont", nil)
	ex("query-status", nil)
	time.Sleep(200*time.Millisecond)
	ex("query-jobs", nil)
	time.Sleep(100*time.Millisecond)
	for { select { case ev := <-c.Events(): t.Logf("event %s %s", ev.Name, ev.Time.Format("15:04:05.000000")); continue; default: }; break }
	st, _ := os.Stat(filepath.Join(dir, "state"))
	t.Log("size", st.Size())
}
