package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage/catalog"
)

// sharedCatalogFlags choose where the catalog lives: the bbolt file in the
// home (default), or etcd shared by hosts.
func sharedCatalogFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "catalog", Usage: "the catalog: the file in the home (default), or etcd shared by hosts: etcd://HOST:2379[,HOST:2379...]/PREFIX (etcds:// for TLS; ?lease=10s: how long a dead host's locks last)", EnvVars: []string{"STRATA_CATALOG"}},
		&cli.StringFlag{Name: "catalog-cacert", Usage: "with an etcds:// catalog: the CA certificate that signed etcd's (PEM; default the system's)", EnvVars: []string{"STRATA_CATALOG_CACERT"}},
		&cli.StringFlag{Name: "catalog-cert", Usage: "with an etcds:// catalog: this host's client certificate (PEM)", EnvVars: []string{"STRATA_CATALOG_CERT"}},
		&cli.StringFlag{Name: "catalog-key", Usage: "with an etcds:// catalog: the client certificate's key (PEM)", EnvVars: []string{"STRATA_CATALOG_KEY"}},
		&cli.StringFlag{Name: "host", Usage: "this host's name in a shared catalog's locks and guest owners (default: the host name)", EnvVars: []string{"STRATA_HOST"}},
	}
}

func catalogOptions(c *cli.Context) catalog.Options {
	return catalog.Options{URL: c.String("catalog"), CACert: c.String("catalog-cacert"), Cert: c.String("catalog-cert"), Key: c.String("catalog-key"), Host: c.String("host")}
}

// setupSharedCatalog passes the catalog flags on to the strata processes
// this one starts (a guest's keeper, ...) through the environment, and
// makes a process that lost its etcd lease end at once (fencing).
func setupSharedCatalog(c *cli.Context) {
	for flag, env := range map[string]string{"catalog": "STRATA_CATALOG", "catalog-cacert": "STRATA_CATALOG_CACERT", "catalog-cert": "STRATA_CATALOG_CERT", "catalog-key": "STRATA_CATALOG_KEY", "host": "STRATA_HOST"} {
		if c.IsSet(flag) {
			os.Setenv(env, c.String(flag))
		}
	}
	catalog.OnLeaseLost = func(err error) {
		// Not an interrupt: undoing a step is writing, and what this
		// process was doing may be another host's by now. Its journal lets
		// any host finish or undo it, as after a crash.
		fmt.Fprintf(os.Stderr, "strata: %v\n", err)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
}

// catalogMoveCommands are `catalog export` and `catalog import`: the whole
// catalog as one JSON document, to move it between the file and etcd.
func catalogMoveCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "export", Usage: "write the whole catalog as one JSON document (to move it between the file and etcd)", ArgsUsage: "FILE|-",
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace FILE if it exists"}},
			Action: catalogExportAction,
		},
		{
			Name: "import", Usage: "put an exported catalog in place of this one (an etcd catalog must be empty, a file catalog missing or damaged, unless --force)", ArgsUsage: "FILE|-",
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace the records there are (a file catalog is kept in HOME/backups)"}},
			Action: catalogImportAction,
		},
	}
}

func catalogExportAction(c *cli.Context) error {
	st, err := opened(c, openStore, "FILE")
	if err != nil {
		return err
	}
	file := c.Args().First()
	err = st.Catalog.ExportFile(file, c.Bool("force"))
	if file == "-" {
		return err
	}
	return reported(err, "catalog exported", "file", file)
}

func catalogImportAction(c *cli.Context) error {
	st, err := opened(c, exclusiveStore, "FILE")
	if err != nil {
		return err
	}
	res, err := st.Catalog.Import(c.Args().First(), c.Bool("force"))
	if err == nil && res.Backup != "" {
		fmt.Fprintf(os.Stderr, "the catalog it replaced is kept in %s\n", res.Backup)
	}
	return thenSay(err, fmt.Sprintf("%d records imported into %s; run 'strata doctor': files the catalog does not know are reported and kept. When every one is accounted for, run 'strata catalog accept'", res.Records, st.Catalog.Where()))
}
