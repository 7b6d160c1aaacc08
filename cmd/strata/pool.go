package main

import (
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
)

func poolCommand() *cli.Command {
	return &cli.Command{
		Name:  "pool",
		Usage: "manage pools: places where volumes live",
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "register a directory (or a Ceph pool: --driver rbd --pool) as a pool", ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "driver", Value: "dir", Usage: "pool driver (dir, rbd)"},
					&cli.StringFlag{Name: "path", Usage: "the pool's directory (created if missing; dir pools)"},
					&cli.StringFlag{Name: "pool", Usage: "the Ceph pool (rbd pools; initialised with rbd pool init)"},
					&cli.StringFlag{Name: "namespace", Usage: "an RBD namespace in the Ceph pool (rbd pools; optional)"},
					&cli.StringFlag{Name: "ceph-conf", Usage: "the cluster's ceph.conf; it names the keyring (rbd pools; default /etc/ceph/ceph.conf)"},
					&cli.StringFlag{Name: "id", Usage: "the Ceph client ID, without client. (rbd pools; default admin)"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					spec := storage.Pool{Name: c.Args().First(), Driver: c.String("driver"), Path: c.String("path")}
					if c.IsSet("pool") || c.IsSet("namespace") || c.IsSet("ceph-conf") || c.IsSet("id") {
						spec.RBD = &storage.RBDPool{Pool: c.String("pool"), Namespace: c.String("namespace"), CephConf: c.String("ceph-conf"), ID: c.String("id")}
					}
					p, err := st.AddPool(c.Context, spec)
					if err != nil {
						return err
					}
					return emitPools(c, p, false)
				},
			},
			{
				Name: "list", Usage: "list pools with space and capabilities",
				Action: func(c *cli.Context) error {
					if err := needArgs(c); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					pools, err := st.Pools(c.Context)
					if err != nil {
						return err
					}
					return emitPools(c, pools, true)
				},
			},
			{
				Name: "info", Usage: "show a pool: filesystem, space, capabilities", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					p, err := st.Pool(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					return emitPools(c, p, false)
				},
			},
			{
				Name: "remove", Usage: "forget a pool that holds no volumes (its directory is kept)", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					return st.RemovePool(c.Context, c.Args().First())
				},
			},
		},
	}
}

func emitPools(c *cli.Context, v any, list bool) error {
	pools, _ := v.([]storage.PoolStatus)
	if p, ok := v.(storage.PoolStatus); ok {
		pools = []storage.PoolStatus{p}
	}
	return emit(c, v, func(w *tabwriter.Writer) {
		if !list && len(pools) == 1 {
			p := pools[0]
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
			return
		}
		row(w, "NAME", "DRIVER", "FS", "SIZE", "FREE", "VOLUMES", "REFLINK", "SPARSE", "PATH")
		for _, p := range pools {
			where := p.Path
			if r := p.RBD; r != nil && where == "" {
				where = "rbd:" + r.Pool
				if r.Namespace != "" {
					where += "/" + r.Namespace
				}
			}
			row(w, p.Name, p.Driver, p.Filesystem, storage.FormatSize(int64(p.TotalBytes)), storage.FormatSize(int64(p.FreeBytes)), p.Volumes, p.Capabilities.Reflink, p.Capabilities.Sparse, where)
		}
	})
}
