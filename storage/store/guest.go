package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
)

// GuestView is a guest record for printing: with its disks' names and
// without its definition, which may hold a console password.
type GuestView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Disks     []string  `json:"disks"`
	DiskNames []string  `json:"disk_names"`
	Created   time.Time `json:"created"`
}

func viewOf(tx *catalog.Tx, g storage.Guest) GuestView {
	gv := GuestView{ID: g.ID, Name: g.Name, Disks: g.Disks, Created: g.Created, DiskNames: []string{}}
	for _, id := range g.Disks {
		name := "(deleted volume " + id + ")"
		if v, err := tx.VolumeByID(id); err == nil {
			name = v.Name
		}
		gv.DiskNames = append(gv.DiskNames, name)
	}
	return gv
}

// Guest returns one guest.
func (s *Store) Guest(ctx context.Context, name string) (GuestView, error) {
	var gv GuestView
	err := s.Catalog.View(func(tx *catalog.Tx) error {
		g, err := tx.Guest(name)
		gv = viewOf(tx, g)
		return err
	})
	return gv, err
}

// Guests lists every guest.
func (s *Store) Guests(ctx context.Context) ([]GuestView, error) {
	out := []GuestView{}
	err := s.Catalog.View(func(tx *catalog.Tx) error {
		gs, err := tx.Guests()
		for _, g := range gs {
			out = append(out, viewOf(tx, g))
		}
		return err
	})
	return out, err
}

// DeleteGuest forgets a guest and deletes the named volumes (its disks,
// with guest delete --with-disks) in one transaction: if any of them is
// still needed, nothing changes. Guests with restore points are refused by
// the users registered with AddGuestUser.
func (s *Store) DeleteGuest(ctx context.Context, name string, volumes []string) error {
	// The guest's lock, then its volumes' in key order (as restore point
	// operations take them): nothing is deleted under one of them.
	unlock, id, err := s.LockGuest(name)
	if err != nil {
		return err
	}
	defer unlock()
	var vols []storage.Volume
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		for _, n := range volumes {
			v, err := tx.Volume(n)
			if err != nil {
				return err
			}
			vols = append(vols, v)
		}
		return nil
	}); err != nil {
		return err
	}
	slices.SortFunc(vols, func(a, b storage.Volume) int { return strings.Compare(a.ID, b.ID) })
	for _, v := range vols {
		release, err := s.lockVolume(v)
		if err != nil {
			return err
		}
		defer release()
	}
	var gone []storage.Volume
	err = s.Catalog.Update(func(tx *catalog.Tx) error {
		gone = gone[:0] // a shared catalog runs a transaction again after a conflict
		g, err := tx.Guest(name)
		if err != nil {
			return err
		}
		if err := SameGuest(g, id); err != nil {
			return err
		}
		for _, user := range s.guestUsers {
			if err := user(tx, g); err != nil {
				return err
			}
		}
		if err := tx.RemoveGuest(g); err != nil {
			return err
		}
		// Its volumes go in the same transaction: all or nothing.
		for _, n := range volumes {
			v, err := s.removeVolume(tx, n, false)
			if err != nil {
				return fmt.Errorf("guest %q was not deleted: %w", name, err)
			}
			gone = append(gone, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, v := range gone {
		if err := image.VerifyImage(v); err != nil {
			log.Warn().Err(err).Msg("the volume is deleted from the catalog; what is at its image's path now is left alone")
			continue
		}
		if err := image.Discard("volume", v.Name, v.Path, v.Imported, false); err != nil {
			return err
		}
	}
	return nil
}

// AddVolumeUser registers a check that refuses to delete a volume something
// still needs (restore points, golden images); it returns an error of kind
// storage.ErrInUse saying what.
func (s *Store) AddVolumeUser(check func(tx *catalog.Tx, v storage.Volume) error) {
	s.volumeUsers = append(s.volumeUsers, check)
}

// AddGuestUser is AddVolumeUser for guests.
func (s *Store) AddGuestUser(check func(tx *catalog.Tx, g storage.Guest) error) {
	s.guestUsers = append(s.guestUsers, check)
}

// AddPoolUser registers a check that refuses to remove a pool something
// still keeps files in (golden images).
func (s *Store) AddPoolUser(check func(tx *catalog.Tx, pool string) error) {
	s.poolUsers = append(s.poolUsers, check)
}
