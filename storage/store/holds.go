package store

import (
	"fmt"
	"sort"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// The delete guards read the catalog's holds (catalog.Hold): restore
// points and golden images are recorded as holders in the transaction
// that records them, so the store refuses to delete what they hold
// whichever packages the program links.

// checkVolumeHolds refuses to delete a volume that restore points hold.
func checkVolumeHolds(tx *catalog.Tx, v storage.Volume) error {
	holds, err := tx.Holds(catalog.HeldVolume, v.ID)
	if err != nil || len(holds) == 0 {
		return err
	}
	held := make([]string, len(holds))
	for i, h := range holds {
		held[i] = holderName(tx, h)
	}
	sort.Strings(held)
	return storage.Errorf(storage.ErrInUse, "volume %q is held by %d restore point(s) (%s): delete them first ('strata snapshot delete')", v.Name, len(held), strings.Join(held, ", "))
}

// checkGuestHolds refuses to delete a guest that has restore points.
func checkGuestHolds(tx *catalog.Tx, g storage.Guest) error {
	holds, err := tx.Holds(catalog.HeldGuest, g.ID)
	if err != nil || len(holds) == 0 {
		return err
	}
	return storage.Errorf(storage.ErrInUse, "guest %q has %d restore point(s): delete them with it ('strata guest delete %s --with-points') or first ('strata snapshot delete %s POINT...', or prune)", g.Name, len(holds), g.Name, g.Name)
}

// checkPoolHolds refuses to forget a pool that holds golden images.
func checkPoolHolds(tx *catalog.Tx, pool string) error {
	holds, err := tx.Holds(catalog.HeldPool, pool)
	if err != nil || len(holds) == 0 {
		return err
	}
	names := make([]string, len(holds))
	for i, h := range holds {
		names[i] = h.Name
	}
	sort.Strings(names)
	return storage.Errorf(storage.ErrInUse, "pool %q still holds golden images %s: delete them first ('strata golden delete')", pool, storage.QuoteList(names))
}

// holderName names a holder for a message: a point as TARGET#NUMBER by
// its target's current name, a golden image by its name.
func holderName(tx *catalog.Tx, h catalog.Hold) string {
	if h.Holder != catalog.HolderPoint {
		return "golden image " + h.Name
	}
	target := string(h.TargetKind) + ":" + h.TargetID
	switch h.TargetKind {
	case catalog.KindVolume:
		if v, err := tx.VolumeByID(h.TargetID); err == nil {
			target = "volume:" + v.Name
		}
	case catalog.KindGuest:
		if g, err := tx.GuestByID(h.TargetID); err == nil {
			target = "guest:" + g.Name
		}
	}
	return fmt.Sprintf("%s#%d", target, h.Point)
}
