package storagetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// rbdHelperName is rbd.HelperName (not imported: storage/image's tests
// use storagetest, and storage/rbd imports storage/image).
const rbdHelperName = "strata-rbd"

// BuildRBDHelper builds cmd/strata-rbd into dir (as dir/strata-rbd, the
// name strata looks for beside itself) the way make builds it
// (CGO_ENABLED=0: purego needs no C compiler), and returns its path. The
// tests of cmd/strata put it beside the strata they build; storage/rbd's
// run it alone.
func BuildRBDHelper(dir string) (string, error) {
	bin := filepath.Join(dir, rbdHelperName)
	build := exec.Command("go", "build", "-o", bin, "github.com/strata-vm/strata/cmd/strata-rbd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w: %s", rbdHelperName, err, out)
	}
	return bin, nil
}
