package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
)

func newPoolCommand() *cli.Command {
	return &cli.Command{
		Name:  "pool",
		Usage: "manage pools: places where volumes live",
		Subcommands: []*cli.Command{
			newPoolAddCommand(),
			newPoolListCommand(),
			newPoolInfoCommand(),
			newPoolRemoveCommand(),
		},
	}
}

func newPoolAddCommand() *cli.Command {
	return &cli.Command{
		Name: "add", Usage: "register a directory, an LVM volume group (--driver lvm --vg) or a Ceph pool (--driver rbd --pool) as a pool", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "driver", Value: "dir", Usage: "pool driver (dir, lvm, rbd)"},
			&cli.StringFlag{Name: "path", Usage: "the pool's directory (created if missing; dir pools)"},
			&cli.StringFlag{Name: "vg", Usage: "the LVM volume group (lvm pools)"},
			&cli.StringFlag{Name: "thinpool", Usage: "a thin pool in the volume group: thin volumes and O(1) points (lvm pools; else thick)"},
			&cli.StringFlag{Name: "snapshot-size", Usage: "a thick point's size, percent of its volume, e.g. 50% (lvm pools; default 100%: never overflows)"},
			&cli.BoolFlag{Name: "errorwhenfull", Usage: "make the thin pool fail writes at once when full instead of hanging guests (lvchange --errorwhenfull y)"},
			&cli.Float64Flag{Name: "data-limit", Usage: "thin pool data usage (percent) past which new volumes and points are refused", DefaultText: "85"},
			&cli.Float64Flag{Name: "metadata-limit", Usage: "thin pool metadata usage (percent) past which new volumes and points are refused", DefaultText: "75"},
			&cli.StringFlag{Name: "pool", Usage: "the Ceph pool (rbd pools; initialised with rbd pool init)"},
			&cli.StringFlag{Name: "namespace", Usage: "an RBD namespace in the Ceph pool (rbd pools; optional)"},
			&cli.StringFlag{Name: "ceph-conf", Usage: "the cluster's ceph.conf; it names the keyring (rbd pools; default /etc/ceph/ceph.conf)"},
			&cli.StringFlag{Name: "id", Usage: "the Ceph client ID, without client. (rbd pools; default admin)"},
		},
		Action: poolAddAction,
	}
}

func poolAddAction(c *cli.Context) error {
	st, err := opened(c, openStore, "NAME")
	if err != nil {
		return err
	}
	spec := storage.Pool{Name: c.Args().First(), Driver: c.String("driver"), Path: c.String("path")}
	if spec.LVM, err = lvmFlags(c); err != nil {
		return err
	}
	if c.IsSet("pool") || c.IsSet("namespace") || c.IsSet("ceph-conf") || c.IsSet("id") {
		spec.RBD = &storage.RBDPool{Pool: c.String("pool"), Namespace: c.String("namespace"), CephConf: c.String("ceph-conf"), ID: c.String("id")}
	}
	return printResult(c, emitPools)(st.AddPool(c.Context, spec))
}

func newPoolListCommand() *cli.Command {
	return &cli.Command{Name: "list", Usage: "list pools with space and capabilities", Action: poolListAction}
}

func poolListAction(c *cli.Context) error {
	st, err := opened(c, openStore)
	if err != nil {
		return err
	}
	return printResult(c, emitPools)(st.Pools(c.Context))
}

func newPoolInfoCommand() *cli.Command {
	return &cli.Command{Name: "info", Usage: "show a pool: filesystem, space, capabilities", ArgsUsage: "NAME", Action: poolInfoAction}
}

func poolInfoAction(c *cli.Context) error {
	st, err := opened(c, openStore, "NAME")
	if err != nil {
		return err
	}
	return printResult(c, emitPools)(st.Pool(c.Context, c.Args().First()))
}

func newPoolRemoveCommand() *cli.Command {
	return &cli.Command{Name: "remove", Usage: "forget a pool that holds no volumes (its directory is kept)", ArgsUsage: "NAME", Action: poolRemoveAction}
}

func poolRemoveAction(c *cli.Context) error {
	st, err := opened(c, openStore, "NAME")
	if err != nil {
		return err
	}
	return st.RemovePool(c.Context, c.Args().First())
}

// emitPools prints a pool (its fields) or a list of them (a row each).
func emitPools(c *cli.Context, v any) error {
	return emitOneOrList(c, v, oneOrList[storage.PoolStatus]{
		fields: poolFields,
		header: []any{"NAME", "DRIVER", "FS", "SIZE", "FREE", "VOLUMES", "REFLINK", "SPARSE", "PATH"},
		row: func(p storage.PoolStatus) []any {
			where := p.Path
			if r := p.RBD; r != nil && where == "" {
				where = "rbd:" + r.Pool
				if r.Namespace != "" {
					where += "/" + r.Namespace
				}
			}
			return []any{p.Name, p.Driver, p.Filesystem, storage.FormatSize(int64(p.TotalBytes)), storage.FormatSize(int64(p.FreeBytes)), p.Volumes, p.Capabilities.Reflink, p.Capabilities.Sparse, where}
		},
	})
}

// poolFields are pool add's and pool info's lines.
func poolFields(w *tabwriter.Writer, p storage.PoolStatus) {
	row(w, "name:", p.Name)
	row(w, "driver:", p.Driver)
	row(w, "path:", p.Path)
	if r := p.RBD; r != nil {
		row(w, "ceph pool:", r.Pool)
		row(w, "namespace:", r.Namespace)
		row(w, "ceph conf:", r.CephConf)
		row(w, "ceph id:", r.ID)
	}
	row(w, "filesystem:", p.Filesystem)
	row(w, "size:", storage.FormatSize(int64(p.TotalBytes)))
	row(w, "free:", storage.FormatSize(int64(p.FreeBytes)))
	row(w, "volumes:", p.Volumes)
	row(w, "reflink:", p.Capabilities.Reflink)
	row(w, "sparse:", p.Capabilities.Sparse)
	row(w, "o1_snapshots:", p.Capabilities.O1Snapshots)
	if p.LVM != nil {
		lvmRows(w, p)
	}
}

// lvmFlags reads pool add's LVM flags (nil when none is given).
func lvmFlags(c *cli.Context) (*storage.LVMPool, error) {
	lp := &storage.LVMPool{VG: c.String("vg"), ThinPool: c.String("thinpool"), ErrorWhenFull: c.Bool("errorwhenfull"),
		DataLimit: c.Float64("data-limit"), MetadataLimit: c.Float64("metadata-limit")}
	if s := c.String("snapshot-size"); s != "" {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
		if err != nil || !strings.HasSuffix(s, "%") || n < 1 || n > 100 {
			return nil, storage.Errorf(storage.ErrInvalid, "invalid --snapshot-size %q: give a percentage of each volume from 1%% to 100%%", s)
		}
		lp.SnapshotPercent = n
	}
	if *lp == (storage.LVMPool{}) {
		return nil, nil
	}
	if c.String("driver") != lvm.Name {
		return nil, storage.Errorf(storage.ErrInvalid, "--vg, --thinpool, --snapshot-size, --errorwhenfull and the limits are for lvm pools: give --driver lvm")
	}
	return lp, nil
}

// lvmRows are pool info's lines for an lvm pool.
func lvmRows(w *tabwriter.Writer, p storage.PoolStatus) {
	row(w, "vg:", p.LVM.VG)
	if s := p.LVMStatus; s != nil {
		row(w, "vg_size:", storage.FormatSize(s.VGSize))
		row(w, "vg_free:", storage.FormatSize(s.VGFree))
	}
	if p.LVM.ThinPool == "" {
		pct := p.LVM.SnapshotPercent
		if pct == 0 {
			pct = lvm.DefaultSnapshotPercent
		}
		row(w, "snapshot_size:", fmt.Sprintf("%d%%", pct))
		return
	}
	row(w, "thin_pool:", p.LVM.ThinPool)
	if s := p.LVMStatus; s != nil {
		row(w, "thin_data:", fmt.Sprintf("%.2f%% (limit %g%%)", s.DataPercent, s.DataLimit))
		row(w, "thin_metadata:", fmt.Sprintf("%.2f%% (limit %g%%)", s.MetadataPercent, s.MetadataLimit))
		row(w, "when_full:", s.WhenFull)
	}
}
