//go:build strata_bench

package snapshot

import (
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// Built only into the benchmark (tag strata_bench, make bench), never
// into strata: no production entry point writes points without data.

// PutSyntheticPoints records n ready points without data for a target, in
// one transaction: for benchmarks of the catalog (listing among many
// points), never for real use.
func PutSyntheticPoints(tx *catalog.Tx, t Target, n int, created time.Time) error {
	var guest *storage.Guest
	if t.Kind() == catalog.KindGuest { // a guest's points carry its record, definition included
		g, err := tx.GuestByID(t.Key.ID())
		if err != nil {
			return err
		}
		guest = &g
	}
	for i := 0; i < n; i++ {
		id, err := tx.NextSeq(seqOf(t))
		if err != nil {
			return err
		}
		p := Point{ID: int(id), Target: t.String(), TargetKey: t.Key, Created: created.Add(time.Duration(i) * time.Minute),
			Kind: KindSingle, Method: MethodQcow2, State: stateReady, UID: newUID(), Tags: map[string]string{}, Guest: guest}
		if err := putPoint(tx, p); err != nil {
			return err
		}
	}
	return nil
}
