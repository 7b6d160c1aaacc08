package storagetest

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// Drive is one disk of a QEMU started by RunningQEMU.
type Drive struct{ Path, Format string }

// RunningQEMU starts a real QEMU (TCG, stopped before its first
// instruction: what a guest started by hand from a rendered config holds)
// named name, with drives as virtio disks, and returns once QMP answers a
// command: by then the machine is set up and its disks are open with a
// running guest's permissions (and image locks). It is killed when the
// test ends.
func RunningQEMU(t testing.TB, name string, drives ...Drive) *exec.Cmd {
	t.Helper()
	NeedTool(t, "qemu-system-x86_64")
	args := []string{"-accel", "tcg", "-display", "none", "-nodefaults", "-S", "-name", name, "-qmp", "stdio"}
	for _, d := range drives {
		args = append(args, "-drive", "file="+d.Path+",format="+d.Format+",if=virtio")
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // kept open: QEMU ends with its monitor
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); stdin.Close() })
	r := bufio.NewReader(stdout)
	_, _ = io.WriteString(stdin, `{"execute":"qmp_capabilities"}`+"\n"+`{"execute":"query-status"}`+"\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("qemu did not start: %v", err)
		}
		if strings.Contains(line, `"status"`) {
			return cmd
		}
	}
}
