package qemu

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/strata-vm/strata/hvm"
)

// The definition's lifecycle maps onto QEMU's set-action; what QEMU cannot
// do itself it pauses for, for the watcher to finish.
func TestLifecycleActions(t *testing.T) {
	for _, tc := range []struct {
		l    hvm.Lifecycle
		want actions
	}{
		{hvm.Lifecycle{}, actions{"poweroff", "reset", "shutdown"}},
		{hvm.Lifecycle{OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "destroy"}, actions{"poweroff", "reset", "shutdown"}},
		{hvm.Lifecycle{OnPoweroff: "destroy", OnReboot: "destroy", OnCrash: "destroy"}, actions{"poweroff", "shutdown", "shutdown"}},
		{hvm.Lifecycle{OnPoweroff: "restart", OnReboot: "restart", OnCrash: "restart"}, actions{"pause", "reset", "pause"}},
		{hvm.Lifecycle{OnPoweroff: "preserve", OnReboot: "coredump-destroy", OnCrash: "preserve"}, actions{"pause", "shutdown", "pause"}},
		{hvm.Lifecycle{OnPoweroff: "destroy", OnReboot: "preserve", OnCrash: "coredump-destroy"}, actions{"pause", "shutdown", "shutdown"}},
	} {
		if got := lifecycleActions(tc.l); got != tc.want {
			t.Errorf("%+v: %+v, want %+v", tc.l, got, tc.want)
		}
	}
}

func TestTailLines(t *testing.T) {
	p := t.TempDir() + "/log"
	var b bytes.Buffer
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&b, "line %d\r\n\r\n", i)
	}
	writeFile(t, p, b.Bytes())
	got := tailLines(p, 3)
	if len(got) != 3 || got[0] != "line 27" || got[2] != "line 29" {
		t.Fatalf("%q", got)
	}
	if tailLines(p+"-missing", 3) != nil {
		t.Fatal("lines of a missing file")
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
