package main

import (
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/store"
)

// What a command works on, opened from its flags: the store, the
// restore-point manager, the guest registry, the lifecycle, the install
// media. Every one opens the state home through openManager, so every
// command has the same guards, drivers and hold on the home.

// opened checks a command's positional arguments (needArgs) and then
// opens what it works on with open: the first lines of most actions.
func opened[T any](c *cli.Context, open func(*cli.Context) (T, error), args ...string) (T, error) {
	if err := needArgs(c, args...); err != nil {
		var zero T
		return zero, err
	}
	return open(c)
}

// openStore opens the state home as every command does (openManager): a
// disk a guest runs on is in use, a running guest is not deleted.
func openStore(c *cli.Context) (*store.Store, error) {
	st, _, err := openManager(c)
	return st, err
}

// openPoints opens the restore-point manager (points, goldens, clones).
func openPoints(c *cli.Context) (*snapshot.Manager, error) {
	_, m, err := openManager(c)
	return m, err
}

// openManager opens the state home and the restore-point manager, and
// takes this process's shared hold on the home (once per run): every
// opener above goes through it.
func openManager(c *cli.Context) (*store.Store, *snapshot.Manager, error) {
	st, err := store.OpenWith(c.String("home"), c.Duration("lock-timeout"), catalogOptions(c))
	if err != nil {
		return nil, nil, err
	}
	st.AddDriver(lvm.Name, lvm.Driver{})
	st.AddDriver(rbd.Name, rbd.Driver{})
	a := appOf(c)
	a.catalog = st.Catalog
	if a.opLock == nil {
		if a.opLock, err = st.LockShared(); err != nil {
			return nil, nil, err
		}
	}
	m := snapshot.New(st, c.Duration("lock-timeout"))
	m.Progress = progress()
	// A running guest's points are taken live, through its driver.
	m.Drivers = drivers(c)
	// A live point of a guest no watcher of strata's watches (libvirt)
	// is guarded by this binary's hidden `snapshot __guard`.
	m.GuardArgv = guardArgv(st.Catalog.Home(), c.Duration("lock-timeout"))
	// A disk of a guest any driver runs is in use, named by driver and
	// guest; and a running guest cannot be deleted.
	st.InUse = inUseChecker(drivers(c))
	if st.Catalog.Shared() {
		st.InUse.Sources = append(st.InUse.Sources, remoteGuests{st})
	}
	home := st.Catalog.Home()
	st.Running = func(g storage.Guest) error {
		if running, driver := lifecycle.Running(home, g.ID); running {
			return storage.Errorf(storage.ErrInUse, "guest %q is running (driver %s): stop it first (strata guest stop %s)", g.Name, driver, g.Name)
		}
		return runningElsewhere(st, g)
	}
	return st, m, nil
}

// exclusiveStore opens the home holding it exclusively: no other strata
// process works while its catalog is replaced.
func exclusiveStore(c *cli.Context) (*store.Store, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	if err := lockExclusive(c, st); err != nil {
		return nil, err
	}
	return st, nil
}

// lockExclusive trades this process's shared hold on the home (see
// openManager) for an exclusive one: doctor --repair, catalog restores.
func lockExclusive(c *cli.Context, st *store.Store) (err error) {
	a := appOf(c)
	a.opLock.Release()
	a.opLock, err = st.LockExclusive()
	return err
}

// openRegistry opens the guest definitions.
func openRegistry(c *cli.Context) (*registry.Registry, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	return registry.New(st), nil
}

// openLifecycle opens the state home with the boot drivers attached.
func openLifecycle(c *cli.Context) (*lifecycle.Manager, error) {
	st, m, err := openManager(c)
	if err != nil {
		return nil, err
	}
	return &lifecycle.Manager{St: st, Reg: registry.New(st), Points: m, Drivers: drivers(c), LockTimeout: c.Duration("lock-timeout"), Owner: guestOwner(st)}, nil
}

// openMedia opens the install media (isos).
func openMedia(c *cli.Context) (*media.Manager, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	mg := media.New(st.Catalog)
	mg.Users = registry.MediaUsers // an iso a guest uses is not deleted
	return mg, nil
}
