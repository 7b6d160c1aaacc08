package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/inuse"
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

// CheckDisksFree refuses, as DeleteVolume does, volumes whose image a
// process writes (a QEMU started by hand, a tool): their images are about
// to be removed. A guest strata runs is refused by Running first, with
// its own message.
func (s *Store) CheckDisksFree(ctx context.Context, name string, volumes []string) error {
	if len(volumes) == 0 {
		return nil
	}
	var imgs []inuse.Image
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		g, err := tx.Guest(name)
		if err != nil {
			return err
		}
		if s.Running != nil {
			if err := s.Running(g); err != nil {
				return err
			}
		}
		for _, n := range volumes {
			v, err := tx.Volume(n)
			if err != nil {
				return err
			}
			imgs = append(imgs, s.imagesOf(v)...)
		}
		return nil
	}); err != nil {
		return err
	}
	return s.InUse.CheckAll(ctx, imgs)
}

// DeleteGuest forgets a guest and deletes the named volumes (its disks,
// with guest delete --with-disks) in one transaction: if any of them is
// still needed, nothing changes. A running guest (Running) and a guest with
// restore points (its holds) are refused.
func (s *Store) DeleteGuest(ctx context.Context, name string, volumes []string) error {
	return s.DeleteGuestThen(ctx, name, volumes, nil)
}

// errTried ends the transaction that tries a delete's checks.
var errTried = errors.New("the delete's checks passed")

// DeleteGuestThen deletes as DeleteGuest does, and runs then (if not nil)
// once every check that can refuse the delete has passed, right before
// the delete is committed: the locks are held, the disks are free, and
// the transaction's own checks (points, goldens, a running guest, each
// volume still needed) were tried in a transaction rolled back. The
// caller undoes there what keeps the guest outside the catalog (a libvirt
// definition) only when strata will not refuse the delete; a failure of
// then changes nothing here. The commit itself may still fail (the
// catalog unreachable, something changed that the locks do not cover):
// the caller says what to do then.
func (s *Store) DeleteGuestThen(ctx context.Context, name string, volumes []string, then func() error) error {
	// The guest's lock and its volumes', as restore point operations take
	// them (LockSet): nothing is deleted under one of them.
	var id string
	unlock, err := LockSet(s.Catalog.Home(), s.lockTimeout, func() ([]Lock, error) {
		var locks []Lock
		err := s.Catalog.View(func(tx *catalog.Tx) error {
			g, err := tx.Guest(name)
			if err != nil {
				return err
			}
			id = g.ID
			locks = append(locks, Lock{Key: catalog.GuestKey(g.ID).String(), What: "guest:" + g.Name})
			for _, n := range volumes {
				v, err := tx.Volume(n)
				if err != nil {
					return err
				}
				locks = append(locks, Lock{Key: catalog.VolumeKey(v.ID).String(), What: "volume:" + v.Name})
			}
			return nil
		})
		return locks, err
	})
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.CheckDisksFree(ctx, name, volumes); err != nil {
		return err
	}
	var gone []storage.Volume
	remove := func(tx *catalog.Tx) error {
		gone = gone[:0] // a shared catalog runs a transaction again after a conflict
		g, err := tx.Guest(name)
		if err != nil {
			return err
		}
		if err := SameGuest(g, id); err != nil {
			return err
		}
		if err := checkGuestHolds(tx, g); err != nil {
			return err
		}
		if s.Running != nil {
			if err := s.Running(g); err != nil {
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
	}
	if then != nil {
		err := s.Catalog.Update(func(tx *catalog.Tx) error {
			if err := remove(tx); err != nil {
				return err
			}
			return errTried
		})
		if !errors.Is(err, errTried) {
			return err
		}
		if err := then(); err != nil {
			return err
		}
	}
	if err := s.Catalog.Update(remove); err != nil {
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
