package store

import (
	"context"
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
	err = s.Catalog.Update(func(tx *catalog.Tx) error {
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
