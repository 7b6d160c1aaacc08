package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/media"
)

func newISOCommand() *cli.Command {
	return &cli.Command{
		Name:  "iso",
		Usage: "manage install media: ISO images captured from discs, built from directories or imported",
		Subcommands: []*cli.Command{
			newISOCaptureCommand(),
			newISOBuildCommand(),
			newISOImportCommand(),
			newISOListCommand(),
			newISOInfoCommand(),
			newISODeleteCommand(),
		},
	}
}

func newISOCaptureCommand() *cli.Command {
	return &cli.Command{
		Name: "capture", Usage: "copy an ISO from a drive, loop device or image file into a pool", ArgsUsage: "SOURCE NAME",
		Description: "Copies exactly the image (the ISO9660 volume size, plus partitions a hybrid image appends),\n" +
			"never the padding a drive adds, computing its SHA-256 on the way.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pool", Value: "default", Usage: "pool to keep the image in"},
			&cli.BoolFlag{Name: "verify", Usage: "read the source a second time and compare SHA-256s"},
			&cli.IntFlag{Name: "retries", Value: media.DefaultRetries, Usage: "how often to re-read an unreadable sector"},
			&cli.BoolFlag{Name: "allow-bad-sectors", Usage: "zero-fill sectors that stay unreadable (recorded on the iso) instead of failing"},
			&cli.BoolFlag{Name: "raw", Usage: "copy the whole source, for sources without an ISO9660 filesystem"},
		},
		Action: isoCaptureAction,
	}
}

func isoCaptureAction(c *cli.Context) error {
	mg, err := opened(c, openMedia, "SOURCE", "NAME")
	if err != nil {
		return err
	}
	return printResult(c, emitMedia)(mg.Capture(c.Context, media.CaptureOptions{
		Source: c.Args().Get(0), Name: c.Args().Get(1), Pool: c.String("pool"),
		Verify: c.Bool("verify"), Retries: c.Int("retries"), AllowBadSectors: c.Bool("allow-bad-sectors"), Raw: c.Bool("raw"),
	}, progress()))
}

func newISOBuildCommand() *cli.Command {
	return &cli.Command{
		Name: "build", Usage: "build an ISO9660 image from a directory (the directory is only read)", ArgsUsage: "DIR NAME",
		Description: "Builds with Rock Ridge and Joliet by default (as genisoimage -R -J): Linux and Windows guests\n" +
			"both see the long names. A name Joliet cannot hold (over 64 characters, or with * / : ; ? \\)\n" +
			"is refused, naming the file: rename it, or build with --joliet=false.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pool", Value: "default", Usage: "pool to keep the image in"},
			&cli.StringFlag{Name: "label", Usage: "volume label, up to 32 characters (default: NAME)"},
			&cli.BoolFlag{Name: "rock-ridge", Value: true, Usage: "Rock Ridge: POSIX names, modes, symlinks, deep trees; what Linux reads (Joliet needs it: drop both with --plain)"},
			&cli.BoolFlag{Name: "joliet", Value: true, Usage: "Joliet: long Unicode names (up to 64 characters) for Windows (--joliet=false drops it)"},
			&cli.BoolFlag{Name: "plain", Usage: "bare ISO9660 (8.3 upper-case names), without Rock Ridge and Joliet"},
			&cli.StringFlag{Name: "boot", Usage: "make it bootable (BIOS, El Torito no emulation) with this boot image, a path inside DIR, e.g. isolinux/isolinux.bin"},
			&cli.StringFlag{Name: "boot-catalog", Usage: "path of the boot catalog in the image (default: boot.catalog, BOOT.CAT with --plain)"},
			&cli.BoolFlag{Name: "boot-info-table", Usage: "patch a boot information table into the boot image (isolinux needs it)"},
		},
		Action: isoBuildAction,
	}
}

func isoBuildAction(c *cli.Context) error {
	mg, err := opened(c, openMedia, "DIR", "NAME")
	if err != nil {
		return err
	}
	o := media.BuildOptions{
		Dir: c.Args().Get(0), Name: c.Args().Get(1), Pool: c.String("pool"), Label: c.String("label"),
		Joliet: c.Bool("joliet"), RockRidge: c.Bool("rock-ridge"),
		Boot: c.String("boot"), BootCatalog: c.String("boot-catalog"), BootInfoTable: c.Bool("boot-info-table"),
	}
	if c.Bool("plain") {
		if (c.IsSet("rock-ridge") && o.RockRidge) || (c.IsSet("joliet") && o.Joliet) {
			return storage.Errorf(storage.ErrInvalid, "--plain builds without Rock Ridge and Joliet: drop --rock-ridge and --joliet, or --plain")
		}
		o.RockRidge, o.Joliet = false, false
	}
	return printResult(c, emitMedia)(mg.Build(c.Context, o, progress()))
}

func newISOImportCommand() *cli.Command {
	return &cli.Command{
		Name: "import", Usage: "register an existing ISO image file (in place, or copied with --pool)", ArgsUsage: "PATH",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "iso name (default: the file name without extension)"},
			&cli.StringFlag{Name: "pool", Usage: "copy the file, byte for byte, into this pool instead of registering it in place"},
		},
		Action: isoImportAction,
	}
}

func isoImportAction(c *cli.Context) error {
	mg, err := opened(c, openMedia, "PATH")
	if err != nil {
		return err
	}
	return printResult(c, emitMedia)(mg.Import(c.Context, media.ImportOptions{Path: c.Args().First(), Name: c.String("name"), Pool: c.String("pool")}, progress()))
}

func newISOListCommand() *cli.Command {
	return &cli.Command{Name: "list", Usage: "list install media", Action: isoListAction}
}

func isoListAction(c *cli.Context) error {
	mg, err := opened(c, openMedia)
	if err != nil {
		return err
	}
	return printResult(c, emitMedia)(mg.List(c.Context))
}

func newISOInfoCommand() *cli.Command {
	return &cli.Command{
		Name: "info", Usage: "show an iso, or any ISO image file: label, size, SHA-256, extensions, boot entries", ArgsUsage: "NAME|PATH",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "files", Usage: "also list the files of each tree the image has (Rock Ridge, Joliet, ISO9660); an unreadable tree is an error"},
		},
		Action: isoInfoAction,
	}
}

func isoInfoAction(c *cli.Context) error {
	mg, err := opened(c, openMedia, "NAME|PATH")
	if err != nil {
		return err
	}
	return printResult(c, emitMedia)(mg.Info(c.Context, c.Args().First(), c.Bool("files"), progress()))
}

func newISODeleteCommand() *cli.Command {
	return &cli.Command{
		Name: "delete", Usage: "delete an iso (an imported image file is kept unless --purge)", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "purge", Usage: "also remove the image file of an imported iso"},
		},
		Action: isoDeleteAction,
	}
}

func isoDeleteAction(c *cli.Context) error {
	mg, err := opened(c, openMedia, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	m, err := mg.Delete(c.Context, name, c.Bool("purge"))
	if m.Imported && !c.Bool("purge") {
		return err // the library said the image is kept
	}
	return reported(err, "iso deleted", "iso", name)
}

func emitMedia(c *cli.Context, v any) error {
	return emitOneOrList(c, v, oneOrList[media.Medium]{
		header: []any{"NAME", "LABEL", "SIZE", "BOOTABLE", "BAD SECTORS", "ORIGIN", "PATH"},
		row: func(m media.Medium) []any {
			return []any{m.Name, m.Label, storage.FormatSize(m.Size), m.Bootable, len(m.BadSectors), m.Origin, m.Path}
		},
		fields: func(w *tabwriter.Writer, one media.Medium) {
			row(w, "name:", one.Name)
			row(w, "path:", one.Path)
			row(w, "pool:", one.Pool)
			row(w, "label:", one.Label)
			row(w, "size:", fmt.Sprintf("%s (%d bytes)", storage.FormatSize(one.Size), one.Size))
			row(w, "sha256:", one.SHA256)
			exts := make([]string, len(one.Extensions))
			for i, e := range one.Extensions {
				exts[i] = media.ExtensionName(e)
			}
			row(w, "extensions:", orDash(strings.Join(exts, ", ")))
			row(w, "bootable:", one.Bootable)
			for _, e := range one.BootEntries {
				row(w, "  boot entry:", fmt.Sprintf("%s, emulation %s, %d sectors at byte %d, bootable %t, file %s", e.Platform, e.Emulation, e.SectorCount, e.Offset, e.Bootable, orDash(e.File)))
			}
			if !one.Created.IsZero() {
				row(w, "created:", one.Created.Local().Format("2006-01-02 15:04:05"))
			}
			row(w, "origin:", one.Origin)
			row(w, "source:", one.Source)
			bad := "none"
			if n := len(one.BadSectors); n > 0 {
				offs := make([]string, n)
				for i, o := range one.BadSectors {
					offs[i] = fmt.Sprint(o)
				}
				bad = fmt.Sprintf("%d, zero-filled at byte offsets %s", n, strings.Join(offs, ", "))
			}
			row(w, "bad sectors:", bad)
			for _, t := range one.Trees {
				row(w, "files ("+media.ExtensionName(t.Extension)+"):", len(t.Files))
				for _, f := range t.Files {
					size := fmt.Sprint(f.Size)
					if f.Type == "dir" {
						size = "-"
					}
					name := f.Path
					if f.Type == "symlink" {
						name += " -> " + f.Target
					}
					row(w, "  "+f.Type, orDash(f.Mode), size, name)
				}
			}
		},
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
