package store

import (
	"context"
	"encoding/json"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// checkNetworkPoolOwner refuses a new pool of a driver whose pools hold
// orphans doctor removes (storage.OrphanFinder: RBD) when another home
// owns it (its owner marker says so), or when it has no marker but holds
// images strata names as its own: another home (from before markers)
// may use it, and this home's doctor would take its images for orphans.
// claim marks it as this home's once it is recorded.
func (s *Store) checkNetworkPoolOwner(ctx context.Context, d storage.PoolAdder, p storage.Pool) (claim func(), err error) {
	f, ok := d.(storage.OrphanFinder)
	if !ok {
		return func() {}, nil
	}
	homeID, err := s.Catalog.HomeID()
	if err != nil {
		return nil, err
	}
	raw, marked, err := f.PoolOwner(ctx, p)
	if err != nil {
		return nil, err
	}
	if marked {
		var m catalog.Marker
		if err := json.Unmarshal(raw, &m); err != nil || m.HomeID == "" {
			return nil, storage.Errorf(storage.ErrPrecondition, "pool %q: its owner marker is unreadable: remove it if no other strata state home uses the pool", p.Name)
		}
		if mine, whose := s.Catalog.Owner(m, homeID); !mine {
			return nil, storage.Errorf(storage.ErrInUse, "pool %q is a pool of %s: two homes sharing a pool would remove each other's images; give this home a pool or namespace of its own", p.Name, whose)
		}
		return func() {}, nil
	}
	found, err := f.Orphans(ctx, p, nil)
	if err != nil {
		return nil, err
	}
	if len(found) > 0 {
		return nil, storage.Errorf(storage.ErrInUse, "pool %q holds images strata names as its own (%s) but no owner marker: it may be a pool of another strata state home; give this home a pool or namespace of its own", p.Name, found[0])
	}
	return func() {
		raw, _ := json.Marshal(catalog.Marker{HomeID: homeID, Home: s.Catalog.Home()})
		if err := f.ClaimPool(ctx, p, raw); err != nil {
			// doctor --repair claims it while it holds nothing unknown.
			log.Warn().Err(err).Str("pool", p.Name).Msg("pool not marked as this home's")
		}
	}, nil
}
