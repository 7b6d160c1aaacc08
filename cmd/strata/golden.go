package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
)

func newGoldenCommand() *cli.Command {
	return &cli.Command{
		Name:  "golden",
		Usage: "golden images: a guest's disks and definition (or a volume) frozen read-only, to clone from",
		Subcommands: []*cli.Command{
			newGoldenCreateCommand(),
			newGoldenListCommand(),
			newGoldenShowCommand(),
			newGoldenDeleteCommand(),
		},
	}
}

func newGoldenCreateCommand() *cli.Command {
	return &cli.Command{
		Name: "create", Usage: "freeze a guest (--from) or a volume (--volume), now or at a restore point, as a golden image", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "GUEST or GUEST@POINT (a restore point's number or name)"},
			&cli.StringFlag{Name: "volume", Usage: "VOLUME or VOLUME@POINT, instead of a guest"},
			&cli.StringFlag{Name: "pool", Usage: "pool for the golden's images (default: each source volume's pool)"},
		},
		Action: goldenCreateAction,
	}
}

func goldenCreateAction(c *cli.Context) error {
	o, err := goldenOptions(c)
	if err != nil {
		return err
	}
	m, err := openPoints(c)
	if err != nil {
		return err
	}
	return printResult(c, emitGoldens)(m.CreateGolden(c.Context, o))
}

// goldenOptions reads golden create's NAME, its source (--from or
// --volume, maybe @POINT) and --pool.
func goldenOptions(c *cli.Context) (snapshot.GoldenOptions, error) {
	if err := needArgs(c, "NAME"); err != nil {
		return snapshot.GoldenOptions{}, err
	}
	from, vol := c.String("from"), c.String("volume")
	if (from == "") == (vol == "") {
		return snapshot.GoldenOptions{}, storage.Errorf(storage.ErrInvalid, "give exactly one source: --from GUEST[@POINT] or --volume VOLUME[@POINT]")
	}
	src := from
	if vol != "" {
		src = vol
	}
	name, point, err := snapshot.ParseSourceRef(src)
	return snapshot.GoldenOptions{Name: c.Args().First(), Source: snapshot.TargetRef{Name: name, Volume: vol != ""}, Point: point, Pool: c.String("pool")}, err
}

func newGoldenListCommand() *cli.Command {
	return &cli.Command{Name: "list", Usage: "list golden images with their clone counts, space and lineage", Action: goldenListAction}
}

func goldenListAction(c *cli.Context) error {
	m, err := opened(c, openPoints)
	if err != nil {
		return err
	}
	return printResult(c, emitGoldens)(m.GoldenList(c.Context))
}

func newGoldenShowCommand() *cli.Command {
	return &cli.Command{Name: "show", Usage: "show a golden image and its clones", ArgsUsage: "NAME", Action: goldenShowAction}
}

func goldenShowAction(c *cli.Context) error {
	m, err := opened(c, openPoints, "NAME")
	if err != nil {
		return err
	}
	return printResult(c, emitGoldens)(m.GoldenShow(c.Context, c.Args().First()))
}

func newGoldenDeleteCommand() *cli.Command {
	return &cli.Command{Name: "delete", Usage: "delete a golden image (refused while linked clones depend on it)", ArgsUsage: "NAME", Action: goldenDeleteAction}
}

func goldenDeleteAction(c *cli.Context) error {
	m, err := opened(c, openPoints, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	return reported(m.DeleteGolden(c.Context, name), "golden image deleted", "golden", name)
}

func newCloneCommand() *cli.Command {
	return &cli.Command{
		Name:      "clone",
		Usage:     "clone a golden image into new guests (or volumes): linked (qcow2 overlays, instant) or --full",
		ArgsUsage: "GOLDEN NEWNAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "full", Usage: "an independent copy: reflink where the filesystem can, else a sparse copy"},
			&cli.StringFlag{Name: "pool", Usage: "pool for the clones' disks (default: the golden's pool)"},
			&cli.IntFlag{Name: "count", DefaultText: "one clone, named NEWNAME", Usage: "make N clones named NEWNAME-1 ... NEWNAME-N"},
		},
		Action: cloneAction,
	}
}

func cloneAction(c *cli.Context) error {
	if err := needArgs(c, "GOLDEN", "NEWNAME"); err != nil {
		return err
	}
	if c.IsSet("count") && c.Int("count") < 1 {
		return storage.Errorf(storage.ErrInvalid, "invalid --count %d: give 1 or more", c.Int("count"))
	}
	m, err := openPoints(c)
	if err != nil {
		return err
	}
	return printResult(c, emitClones)(m.Clone(c.Context, snapshot.CloneOptions{Golden: c.Args().Get(0), Name: c.Args().Get(1), Count: c.Int("count"), Full: c.Bool("full"), Pool: c.String("pool")}))
}

// emitClones prints clone's clones: one, unless --count asked for a list.
func emitClones(c *cli.Context, clones []snapshot.CloneInfo) error {
	var v any = clones
	if !c.IsSet("count") {
		v = clones[0]
	}
	return emit(c, v, func(w *tabwriter.Writer) { cloneTable(w, clones) })
}

// newFlattenCommand is the "flatten" subcommand of volume (guest=false) and
// guest (guest=true).
func newFlattenCommand(guest bool) *cli.Command {
	arg, what := "VOLUME", "the volume"
	if guest {
		arg, what = "GUEST", "every disk of the guest"
	}
	return &cli.Command{
		Name: "flatten", ArgsUsage: arg,
		Usage:  "detach a linked clone from its golden image: " + what + " becomes self-contained (restore points keep working)",
		Action: func(c *cli.Context) error { return flattenAction(c, arg, guest) },
	}
}

// flattenAction prints the volumes flatten made self-contained: a
// volume's alone, a guest's as a list.
func flattenAction(c *cli.Context, arg string, guest bool) error {
	m, err := opened(c, openPoints, arg)
	if err != nil {
		return err
	}
	vols, err := m.Flatten(c.Context, snapshot.TargetRef{Name: c.Args().First(), Volume: !guest})
	if err != nil {
		return err
	}
	if !guest && len(vols) == 1 {
		return emitVolumes(c, vols[0])
	}
	return emitVolumes(c, vols)
}

func emitGoldens(c *cli.Context, v any) error {
	return emitOneOrList(c, v, oneOrList[snapshot.GoldenInfo]{
		fields: func(w *tabwriter.Writer, one snapshot.GoldenInfo) {
			row(w, "name:", one.Name)
			row(w, "id:", one.ID)
			row(w, "created:", one.Created.Format(time.RFC3339))
			row(w, "kind:", one.Kind)
			row(w, "source:", sourceText(one.Source))
			row(w, "from:", fromText(one.From))
			row(w, "space:", storage.FormatSize(one.Bytes))
			row(w, "clones:", fmt.Sprintf("%d (%d linked)", one.Clones, one.LinkedClones))
			for i, d := range one.Disks {
				row(w, fmt.Sprintf("  disk %d:", i+1), d.Format, storage.FormatSize(d.VirtualSize), storage.FormatSize(d.Bytes), d.Path)
			}
			if len(one.CloneList) > 0 {
				fmt.Fprintln(w)
				cloneTable(w, one.CloneList)
			}
		},
		header: []any{"NAME", "KIND", "SOURCE", "FROM", "DISKS", "CLONES", "LINKED", "SPACE", "CREATED"},
		row: func(g snapshot.GoldenInfo) []any {
			return []any{g.Name, g.Kind, sourceText(g.Source), fromText(g.From), len(g.Disks), g.Clones, g.LinkedClones, storage.FormatSize(g.Bytes), g.Created.Format(time.RFC3339)}
		},
	})
}

func cloneTable(w *tabwriter.Writer, clones []snapshot.CloneInfo) {
	row(w, "CLONE", "KIND", "UUID", "MACS", "DISKS", "LINKED")
	for _, cl := range clones {
		var disks []string
		linked := 0
		for _, d := range cl.Disks {
			disks = append(disks, d.Volume)
			if d.Linked {
				linked++
			}
		}
		row(w, cl.Name, cl.Kind, cl.UUID, strings.Join(cl.MACs, ","), strings.Join(disks, ","), fmt.Sprintf("%d/%d", linked, len(cl.Disks)))
	}
}

func sourceText(s snapshot.GoldenSource) string {
	t := s.Kind + ":" + s.Name
	if s.Point != nil {
		t += fmt.Sprintf("@%d", *s.Point)
		if s.PointName != "" {
			t += " (" + s.PointName + ")"
		}
	}
	return t
}

func fromText(f *string) string {
	if f == nil {
		return ""
	}
	return *f
}
