package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/store"
)

func newVolumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "volume",
		Usage: "manage volumes: virtual disks (raw and qcow2 images, block devices)",
		Subcommands: []*cli.Command{
			newFlattenCommand(false),
			newVolumeCreateCommand(),
			newVolumeImportCommand(),
			newVolumeListCommand(),
			newVolumeInfoCommand(),
			newVolumeResizeCommand(),
			newVolumeDeleteCommand(),
		},
	}
}

func newVolumeCreateCommand() *cli.Command {
	return &cli.Command{
		Name: "create", Usage: "create an empty volume (raw images are sparse)", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Usage: "virtual size: bytes or with K/M/G/T (1024) or KB/MB/GB/TB (1000)", Required: true},
			&cli.StringFlag{Name: "format", Value: "raw", Usage: "raw or qcow2"},
			&cli.StringFlag{Name: "pool", Value: "default", Usage: "pool to create it in"},
			&cli.StringFlag{Name: "partition", Usage: "lay out a partition table: gpt or mbr (one partition over the disk)"},
			&cli.StringFlag{Name: "fs", Usage: "create a filesystem: fat32 (on the partition, or on the whole disk)"},
			&cli.StringFlag{Name: "label", Usage: "filesystem label (FAT: up to 11 characters)"},
		},
		Action: volumeCreateAction,
	}
}

func volumeCreateAction(c *cli.Context) error {
	o, err := volumeCreateOptions(c)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	return printResult(c, emitVolumes)(st.CreateVolume(c.Context, o))
}

// volumeCreateOptions reads volume create's NAME and flags.
func volumeCreateOptions(c *cli.Context) (o store.CreateOptions, err error) {
	if err := needArgs(c, "NAME"); err != nil {
		return o, err
	}
	o = store.CreateOptions{Name: c.Args().First(), Pool: c.String("pool")}
	if o.Size, err = storage.ParseSize(c.String("size")); err != nil {
		return o, err
	}
	if o.Format, err = storage.ParseFormat(c.String("format")); err != nil {
		return o, err
	}
	o.Layout, err = image.ParseLayout(c.String("partition"), c.String("fs"), c.String("label"))
	return o, err
}

func newVolumeImportCommand() *cli.Command {
	return &cli.Command{
		Name: "import", Usage: "register an existing image file or block device (in place, or --copy into a pool)", ArgsUsage: "PATH",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "volume name (default: the file name without extension)"},
			&cli.BoolFlag{Name: "copy", Usage: "copy the image into a pool (sparse: holes stay holes)"},
			&cli.StringFlag{Name: "pool", Usage: "pool to copy into (with --copy; default: default)"},
			&cli.StringFlag{Name: "format", Usage: "the image's format, raw or qcow2, as you know it (default: probed; a qcow2 image whose backing file lies outside strata's pools needs --format qcow2 --allow-backing)"},
			&cli.BoolFlag{Name: "allow-backing", Usage: "with --format qcow2: accept a backing file outside strata's pools"},
		},
		Action: volumeImportAction,
	}
}

func volumeImportAction(c *cli.Context) error {
	o, err := volumeImportOptions(c)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	return printResult(c, emitVolumes)(st.ImportVolume(c.Context, o, progress()))
}

// volumeImportOptions reads volume import's PATH and flags.
func volumeImportOptions(c *cli.Context) (store.ImportOptions, error) {
	o := store.ImportOptions{Path: c.Args().First(), Name: c.String("name"), Copy: c.Bool("copy"), Pool: c.String("pool"), AllowBacking: c.Bool("allow-backing")}
	if err := needArgs(c, "PATH"); err != nil {
		return o, err
	}
	if c.IsSet("pool") && !c.Bool("copy") {
		return o, storage.Errorf(storage.ErrInvalid, "--pool only applies with --copy: an image imported in place stays where it is")
	}
	if c.IsSet("format") {
		var err error
		if o.Format, err = storage.ParseFormat(c.String("format")); err != nil {
			return o, err
		}
	}
	if o.AllowBacking && o.Format != storage.FormatQcow2 {
		return o, storage.Errorf(storage.ErrInvalid, "--allow-backing applies to an image you declare as qcow2: add --format qcow2")
	}
	return o, nil
}

func newVolumeListCommand() *cli.Command {
	return &cli.Command{Name: "list", Usage: "list volumes", Action: volumeListAction}
}

func volumeListAction(c *cli.Context) error {
	st, err := opened(c, openStore)
	if err != nil {
		return err
	}
	return printResult(c, emitVolumes)(st.Volumes(c.Context))
}

func newVolumeInfoCommand() *cli.Command {
	return &cli.Command{Name: "info", Usage: "show a volume: format, sizes, backing file, partitions", ArgsUsage: "NAME", Action: volumeInfoAction}
}

func volumeInfoAction(c *cli.Context) error {
	st, err := opened(c, openStore, "NAME")
	if err != nil {
		return err
	}
	return printResult(c, emitVolumes)(st.Volume(c.Context, c.Args().First()))
}

func newVolumeResizeCommand() *cli.Command {
	return &cli.Command{
		Name: "resize", Usage: "change a volume's virtual size (grow; shrink only with --shrink)", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Usage: "new virtual size", Required: true},
			&cli.BoolFlag{Name: "shrink", Usage: "allow making the volume smaller (data past the new end is lost)"},
		},
		Action: volumeResizeAction,
	}
}

func volumeResizeAction(c *cli.Context) error {
	if err := needArgs(c, "NAME"); err != nil {
		return err
	}
	size, err := storage.ParseSize(c.String("size"))
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	return printResult(c, emitVolumes)(st.ResizeVolume(c.Context, c.Args().First(), size, c.Bool("shrink")))
}

func newVolumeDeleteCommand() *cli.Command {
	return &cli.Command{
		Name: "delete", Usage: "delete a volume (imported images are kept unless --purge)", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "purge", Usage: "also remove the image file of an imported volume"},
		},
		Action: volumeDeleteAction,
	}
}

func volumeDeleteAction(c *cli.Context) error {
	st, err := opened(c, openStore, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	var imported bool
	if err := st.Catalog.View(func(tx *catalog.Tx) error {
		v, err := tx.Volume(name)
		imported = err == nil && v.Imported
		return nil // DeleteVolume reports a missing volume
	}); err != nil {
		return err
	}
	err = st.DeleteVolume(c.Context, name, c.Bool("purge"))
	if imported && !c.Bool("purge") {
		return err // the driver said its data is kept
	}
	return reported(err, "volume deleted", "volume", name)
}

func emitVolumes(c *cli.Context, v any) error {
	return emitOneOrList(c, v, oneOrList[storage.VolumeInfo]{
		fields: func(w *tabwriter.Writer, one storage.VolumeInfo) {
			row(w, "name:", one.Name)
			row(w, "id:", one.ID)
			row(w, "pool:", one.Pool)
			row(w, "format:", one.Format)
			row(w, "path:", one.Path)
			row(w, "virtual size:", fmt.Sprintf("%s (%d bytes)", storage.FormatSize(one.VirtualSize), one.VirtualSize))
			row(w, "allocated:", storage.FormatSize(one.AllocatedBytes))
			backing := ""
			if one.RecordedBacking != nil {
				backing = *one.RecordedBacking
			}
			if one.ImageBacking != nil && one.RecordedBacking == nil {
				backing = *one.ImageBacking
			} else if one.ImageBacking == nil && one.RecordedBacking != nil {
				backing += " (the image is already independent: strata doctor --repair finishes the flatten)"
			}
			row(w, "backing:", backing)
			row(w, "imported:", one.Imported)
			row(w, "partition table:", one.PartitionTable)
			for _, p := range one.Partitions {
				row(w, "  partition:", p.Index, "start", p.Start, "size", storage.FormatSize(p.Size), "type", p.Type)
			}
		},
		header: []any{"NAME", "POOL", "FORMAT", "SIZE", "ALLOCATED", "PARTS", "PATH"},
		row: func(v storage.VolumeInfo) []any {
			return []any{v.Name, v.Pool, v.Format, storage.FormatSize(v.VirtualSize), storage.FormatSize(v.AllocatedBytes), v.PartitionTable, v.Path}
		},
	})
}
