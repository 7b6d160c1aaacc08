package storage_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// A full quota (EDQUOT) is the same to the user as a full filesystem
// (ENOSPC): a failed precondition (exit 7), the cause kept. Other errors
// pass unchanged. (A real EDQUOT needs a kernel with quota support; the
// CLI test TestFullPoolSameExitCodeForEveryCommand makes one where it can.)
func TestNoSpaceErrorMapsQuotaAndFullFilesystemAlike(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOSPC, unix.EDQUOT} {
		cause := fmt.Errorf("copy: %w", &os.PathError{Op: "write", Path: "/pool/x", Err: errno})
		err := storage.NoSpaceError(cause, "pool %q ran out of space", "p")
		if !errors.Is(err, storage.ErrPrecondition) || !errors.Is(err, errno) || err.Error() != `pool "p" ran out of space` {
			t.Errorf("%v: %v (precondition %v)", errno, err, errors.Is(err, storage.ErrPrecondition))
		}
	}
	other := &os.PathError{Op: "write", Path: "/pool/x", Err: unix.EIO}
	if err := storage.NoSpaceError(other, "no"); err != error(other) {
		t.Errorf("EIO became %v", err)
	}
}
