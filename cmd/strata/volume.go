package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/store"
)

func volumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "volume",
		Usage: "manage volumes: virtual disks (raw and qcow2 images, block devices)",
		Subcommands: []*cli.Command{
			flattenCommand(false),
			{
				Name: "create", Usage: "create an empty volume (raw images are sparse)", ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "size", Usage: "virtual size: bytes or with K/M/G/T (1024) or KB/MB/GB/TB (1000)", Required: true},
					&cli.StringFlag{Name: "format", Value: "raw", Usage: "raw or qcow2"},
					&cli.StringFlag{Name: "pool", Value: "default", Usage: "pool to create it in"},
					&cli.StringFlag{Name: "partition", Usage: "lay out a partition table: gpt or mbr (one partition over the disk)"},
					&cli.StringFlag{Name: "fs", Usage: "create a filesystem: fat32 (on the partition, or on the whole disk)"},
					&cli.StringFlag{Name: "label", Usage: "filesystem label (FAT: up to 11 characters)"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					size, err := storage.ParseSize(c.String("size"))
					if err != nil {
						return err
					}
					format, err := storage.ParseFormat(c.String("format"))
					if err != nil {
						return err
					}
					layout, err := image.ParseLayout(c.String("partition"), c.String("fs"), c.String("label"))
					if err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					v, err := st.CreateVolume(c.Context, store.CreateOptions{Name: c.Args().First(), Size: size, Format: format, Pool: c.String("pool"), Layout: layout})
					if err != nil {
						return err
					}
					return emitVolumes(c, v)
				},
			},
			{
				Name: "import", Usage: "register an existing image file or block device (in place, or --copy into a pool)", ArgsUsage: "PATH",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "volume name (default: the file name without extension)"},
					&cli.BoolFlag{Name: "copy", Usage: "copy the image into a pool (sparse: holes stay holes)"},
					&cli.StringFlag{Name: "pool", Usage: "pool to copy into (with --copy; default: default)"},
					&cli.StringFlag{Name: "format", Usage: "the image's format, raw or qcow2, as you know it (default: probed; a qcow2 image whose backing file lies outside strata's pools needs --format qcow2 --allow-backing)"},
					&cli.BoolFlag{Name: "allow-backing", Usage: "with --format qcow2: accept a backing file outside strata's pools"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "PATH"); err != nil {
						return err
					}
					if c.IsSet("pool") && !c.Bool("copy") {
						return storage.Errorf(storage.ErrInvalid, "--pool only applies with --copy: an image imported in place stays where it is")
					}
					var format storage.Format
					if c.IsSet("format") {
						var err error
						if format, err = storage.ParseFormat(c.String("format")); err != nil {
							return err
						}
					}
					if c.Bool("allow-backing") && format != storage.FormatQcow2 {
						return storage.Errorf(storage.ErrInvalid, "--allow-backing applies to an image you declare as qcow2: add --format qcow2")
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					v, err := st.ImportVolume(c.Context, store.ImportOptions{Path: c.Args().First(), Name: c.String("name"), Copy: c.Bool("copy"), Pool: c.String("pool"), Format: format, AllowBacking: c.Bool("allow-backing")}, progress())
					if err != nil {
						return err
					}
					return emitVolumes(c, v)
				},
			},
			{
				Name: "list", Usage: "list volumes",
				Action: func(c *cli.Context) error {
					if err := needArgs(c); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					vols, err := st.Volumes(c.Context)
					if err != nil {
						return err
					}
					return emitVolumes(c, vols)
				},
			},
			{
				Name: "info", Usage: "show a volume: format, sizes, backing file, partitions", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					v, err := st.Volume(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					return emitVolumes(c, v)
				},
			},
			{
				Name: "resize", Usage: "change a volume's virtual size (grow; shrink only with --shrink)", ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "size", Usage: "new virtual size", Required: true},
					&cli.BoolFlag{Name: "shrink", Usage: "allow making the volume smaller (data past the new end is lost)"},
				},
				Action: func(c *cli.Context) error {
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
					v, err := st.ResizeVolume(c.Context, c.Args().First(), size, c.Bool("shrink"))
					if err != nil {
						return err
					}
					return emitVolumes(c, v)
				},
			},
			{
				Name: "delete", Usage: "delete a volume (imported images are kept unless --purge)", ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "purge", Usage: "also remove the image file of an imported volume"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					return st.DeleteVolume(c.Context, c.Args().First(), c.Bool("purge"))
				},
			},
		},
	}
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
