package lifecycle

import (
	"errors"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
)

// An install that failed by an error keeps that error's kind (exit
// code); one that failed by how the guest ended is a failed
// precondition; the serial tail is quoted.
func TestInstallFailureKeepsTheCauseKind(t *testing.T) {
	rec := &InstallRecord{Guest: "w"}
	stop := &boot.StopRecord{SerialTail: []string{"setup", "halt"}}
	busy := storage.Errorf(storage.ErrBusy, "the console is held")
	err := installFailure(rec, 1, "did not start", stop, busy)
	if !errors.Is(err, storage.ErrBusy) || !strings.Contains(err.Error(), "setup | halt") {
		t.Errorf("with a cause: %v", err)
	}
	err = installFailure(rec, 2, "ended by crash", nil, nil)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "phase 2 ended by crash") {
		t.Errorf("without a cause: %v", err)
	}
}
