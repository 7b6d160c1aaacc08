package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/store"
)

// guestOwner is the lifecycle's claim on a guest when hosts share the
// catalog (see storage/catalog: guest ownership): the claim is taken before
// the guest starts, and once it runs handed to a keeper process (`strata
// guest __own`) that renews it while the guest runs on this host.
func guestOwner(st *store.Store) func(ctx context.Context, id, name string) (func(bool), error) {
	if !st.Catalog.Shared() {
		return nil
	}
	return func(_ context.Context, id, name string) (func(bool), error) {
		lease, err := st.Catalog.ClaimGuest(id, name)
		if err != nil {
			return nil, err
		}
		return func(started bool) {
			if !started {
				st.Catalog.ReleaseGuest(lease)
				return
			}
			if err := startKeeper(st.Catalog.Home(), id, lease); err != nil {
				log.Warn().Err(err).Str("guest", name).Msg("the claim on the guest is not kept: another host may start it once its lease expires")
			}
		}, nil
	}
}

// startKeeper starts `strata guest __own ID LEASE` detached from this
// command (its own session; the catalog flags reach it through the
// environment, see setupSharedCatalog).
func startKeeper(home, id string, lease int64) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(home, "run", id, "owner.log")
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		// The keeper runs without a log: it keeps the claim all the same.
		log.Debug().Err(err).Msg("the guest's keeper starts without its log")
		out = nil
	}
	cmd := exec.Command(exe, "--home", home, "guest", "__own", id, strconv.FormatInt(lease, 10))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	if out != nil {
		out.Close()
	}
	if err != nil {
		return err
	}
	return cmd.Process.Release()
}

// newGuestOwnCommand is the keeper of a running guest's claim.
func newGuestOwnCommand() *cli.Command {
	return hiddenCommand("guest", "__own", "ID LEASE",
		"keep this host's claim on a running guest in a shared catalog (started by guest start)",
		"a guest ID and a lease", guestOwnAction)
}

func guestOwnAction(c *cli.Context, args []string) error {
	id := args[0]
	lease, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return storage.Errorf(storage.ErrInvalid, "invalid lease %q", args[1])
	}
	cat, err := catalog.OpenWith(c.String("home"), c.Duration("lock-timeout"), catalogOptions(c))
	if err != nil {
		return err
	}
	return cat.KeepGuest(c.Context, lease, func() bool {
		running, _ := lifecycle.Running(cat.Home(), id) // the driver does not matter here
		return running
	})
}

// newGuestMoveCommand hands a stopped guest over to another host.
func newGuestMoveCommand() *cli.Command {
	return &cli.Command{
		Name: "move", Usage: "hand a stopped guest over to another host sharing the catalog (--catalog etcd://...)", ArgsUsage: "NAME",
		Flags:  []cli.Flag{&cli.StringFlag{Name: "to", Usage: "the host that may start it from now on (its --host name)", Required: true}},
		Action: guestMoveAction,
	}
}

func guestMoveAction(c *cli.Context) error {
	st, err := opened(c, openStore, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	var g storage.Guest
	if err := st.Catalog.View(func(tx *catalog.Tx) (err error) { g, err = tx.Guest(name); return err }); err != nil {
		return err
	}
	if running, driver := lifecycle.Running(st.Catalog.Home(), g.ID); running {
		return storage.Errorf(storage.ErrInUse, "guest %q runs here (driver %s): stop it first (strata guest stop %s)", name, driver, name)
	}
	if err := st.Catalog.MoveGuest(g.ID, name, c.String("to")); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "guest %q belongs to host %s now\n", name, c.String("to"))
	return nil
}

// runningElsewhere refuses a change to a guest another host runs.
func runningElsewhere(st *store.Store, g storage.Guest) error {
	if !st.Catalog.Shared() {
		return nil
	}
	h, ok, err := st.Catalog.GuestOwner(g.ID)
	if err != nil {
		return err
	}
	if ok && h.Host != st.Catalog.Host() {
		return storage.Errorf(storage.ErrInUse, "guest %q runs on %s: stop it there first", g.Name, h)
	}
	return nil
}

// remoteGuests is the in-use check's source for a shared catalog: an
// image that is a disk of a guest another host runs is held by that guest
// (the host's own process scan cannot see it).
type remoteGuests struct{ st *store.Store }

func (r remoteGuests) Holders(_ context.Context, imgs []inuse.Image) ([][]inuse.Holder, error) {
	out := make([][]inuse.Holder, len(imgs))
	guests := make([][]storage.Guest, len(imgs))
	if err := r.st.Catalog.View(func(tx *catalog.Tx) error {
		for i, img := range imgs {
			// An image the catalog does not know (or whose record it cannot
			// read) is no strata guest's disk here: the host's own sources
			// still check it. The same for a guest record it cannot read.
			var id string
			if ok, err := tx.Get("volume_paths", img.Path, &id); err != nil || !ok {
				continue
			}
			names, err := tx.GuestsUsing(id)
			if err != nil {
				return err
			}
			for _, n := range names {
				if g, err := tx.Guest(n); err == nil {
					guests[i] = append(guests[i], g)
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for i, gs := range guests {
		for _, g := range gs {
			h, ok, err := r.st.Catalog.GuestOwner(g.ID)
			if err != nil {
				return nil, err
			}
			if ok && h.Host != r.st.Catalog.Host() {
				out[i] = append(out[i], inuse.Holder{Toolstack: "strata on host " + h.Host + ",", Domain: g.Name, How: "the guest runs there"})
			}
		}
	}
	return out, nil
}

// runningOn names the other host running the guest with id in a shared
// catalog; "" if none (or the catalog is the file). An owner it cannot
// read gives "": guest list then shows the state this host sees.
func runningOn(st *store.Store, id string) string {
	if !st.Catalog.Shared() {
		return ""
	}
	h, ok, err := st.Catalog.GuestOwner(id)
	if err != nil || !ok || h.Host == st.Catalog.Host() {
		return ""
	}
	return h.Host
}

// elsewhereStatus is guest status of a guest another host runs.
type elsewhereStatus struct {
	Guest string     `json:"guest"`
	State boot.State `json:"state"`
	Host  string     `json:"host"`
	Since time.Time  `json:"started"`
}

// runningElsewhereStatus is the status to show for a guest this host does
// not run and another host sharing the catalog does. A guest or owner it
// cannot read gives false: guest status then shows this host's status.
func runningElsewhereStatus(st *store.Store, name string, local boot.Status) (elsewhereStatus, bool) {
	if !st.Catalog.Shared() || local.State.Live() {
		return elsewhereStatus{}, false
	}
	var g storage.Guest
	if err := st.Catalog.View(func(tx *catalog.Tx) (err error) { g, err = tx.Guest(name); return err }); err != nil {
		return elsewhereStatus{}, false
	}
	h, ok, err := st.Catalog.GuestOwner(g.ID)
	if err != nil || !ok || h.Host == st.Catalog.Host() {
		return elsewhereStatus{}, false
	}
	return elsewhereStatus{Guest: name, State: boot.Running, Host: h.Host, Since: h.Since}, true
}
