package boottest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// A run's arguments and environment travel one a line in the
// initramfs: a newline in one, or an environment entry without '=', is
// refused before anything boots; so are extra files with a guest path
// that is not relative and clean, or no file on the host. (The runs themselves are proven by
// storage/lvm's TestRealLVMInAGuest, which boots the LVM kit once.)
func TestRunRefusesArgumentsItCannotPass(t *testing.T) {
	k := &boottest.RunKit{Kernel: "/nonexistent", Initrd: "/nonexistent"}
	prog := filepath.Join(t.TempDir(), "prog")
	os.WriteFile(prog, []byte("x"), 0o755)
	for _, o := range []boottest.RunOptions{
		{Program: prog, Args: []string{"a\nb"}},
		{Program: prog, Env: []string{"A=1\nB=2"}},
		{Program: prog, Env: []string{"NOEQUALS"}},
		{Program: prog, Env: []string{"=x"}},
		{Program: prog, Files: map[string]string{"/abs": prog}},
		{Program: prog, Files: map[string]string{"../up": prog}},
		{Program: prog, Files: map[string]string{"a/missing": prog + ".missing"}},
	} {
		res, err := k.Run(context.Background(), o)
		if err == nil || res != nil || !strings.Contains(err.Error(), "run kit") {
			t.Errorf("%+v: %v %v", o, res, err)
		}
	}
}
