package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/store"
)

func newDoctorCommand() *cli.Command {
	return &cli.Command{
		Name:   "doctor",
		Usage:  "check that the catalog and the files agree; --repair finishes or undoes interrupted operations and removes strata's orphans",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "repair", Usage: "repair what can be repaired (waits for other strata processes to finish)"}},
		Action: doctorAction,
	}
}

func doctorAction(c *cli.Context) error {
	if err := needArgs(c); err != nil {
		return err
	}
	st, m, err := openManager(c)
	if err != nil {
		return err
	}
	if c.Bool("repair") {
		if err := lockExclusive(c, st); err != nil {
			return err
		}
	}
	// The catalog first: bbolt's full check, and what an earlier command
	// recorded. A damaged catalog is not read further.
	if err := checkCatalog(c, st); err != nil {
		return err
	}
	findings, err := m.Doctor(c.Context, c.Bool("repair"))
	if err != nil {
		return err
	}
	return reportFindings(c, st, m, findings)
}

// checkCatalog prints what is wrong with the catalog itself, and refuses
// to go on when anything is.
func checkCatalog(c *cli.Context, st *store.Store) error {
	findings, err := catalogFindings(st)
	if err != nil || len(findings) == 0 {
		return err
	}
	if err := emitFindings(c, findings); err != nil {
		return err
	}
	return storage.Errorf(storage.ErrDamaged, "the catalog %q is damaged: strata will not write to it; restore a copy with 'strata catalog restore FILE' (see the details above and README, Catalog)", st.Catalog.Path())
}

// reportFindings prints doctor's findings (a healthy home: what was
// checked), and fails while any is left unrepaired.
func reportFindings(c *cli.Context, st *store.Store, m *snapshot.Manager, findings []snapshot.Finding) error {
	if len(findings) == 0 {
		// A healthy home says what was checked, not an empty table.
		log.Info().Msg("no problems: " + checkedSummary(c, st, m) + " agree with the files")
		if c.String("output") != "json" {
			return nil
		}
		findings = []snapshot.Finding{} // [], not null
	}
	if err := emitFindings(c, findings); err != nil {
		return err
	}
	left := 0
	for _, f := range findings {
		if !f.Repaired {
			left++
		}
	}
	if left > 0 {
		return storage.Errorf(storage.ErrPrecondition, "%d problem(s) found; run 'strata doctor --repair' or follow the details above", left)
	}
	return nil
}

func emitFindings(c *cli.Context, findings []snapshot.Finding) error {
	return emit(c, findings, func(w *tabwriter.Writer) {
		row(w, "KIND", "REPAIRED", "TARGET", "PATH", "DETAIL")
		for _, f := range findings {
			row(w, f.Kind, f.Repaired, f.Target, f.Path, f.Detail)
		}
	})
}

// checkedSummary says what doctor looked at: "the catalog's 3 volumes, 1
// guest, ...".
func checkedSummary(c *cli.Context, st *store.Store, m *snapshot.Manager) string {
	var vols []storage.Volume
	var guests []storage.Guest
	var pools []storage.Pool
	errs := []error{st.Catalog.View(func(tx *catalog.Tx) error {
		var errV, errG, errP error
		vols, errV = tx.Volumes()
		guests, errG = tx.Guests()
		pools, errP = tx.Pools()
		return errors.Join(errV, errG, errP)
	})}
	points, err := m.List(c.Context, nil)
	errs = append(errs, err)
	goldens, err := m.GoldenList(c.Context)
	errs = append(errs, err)
	isos, err := media.New(st.Catalog).List(c.Context)
	if err := errors.Join(append(errs, err)...); err != nil {
		// Only this summary's counts suffer: doctor's own checks, just
		// run, report what is wrong with the catalog's records.
		log.Debug().Err(err).Msg("doctor's summary counts only what it could read")
	}
	n := func(k int, one, many string) string {
		if k == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", k, many)
	}
	return "the catalog's " + strings.Join([]string{n(len(pools), "pool", "pools"), n(len(vols), "volume", "volumes"), n(len(guests), "guest", "guests"), n(len(points), "restore point", "restore points"), n(len(goldens), "golden image", "golden images"), n(len(isos), "iso", "isos")}, ", ")
}

// catalogFindings runs bbolt's consistency check over the whole catalog
// and reports damage an earlier command recorded.
func catalogFindings(st *store.Store) ([]snapshot.Finding, error) {
	recorded := st.Catalog.Damaged()
	problems, err := st.Catalog.Check(20)
	if err != nil {
		return nil, err
	}
	var out []snapshot.Finding
	for _, p := range problems {
		out = append(out, snapshot.Finding{Kind: "catalog-damaged", Path: st.Catalog.Path(), Detail: "bbolt's check: " + p + "; restore a copy with 'strata catalog restore FILE' (from HOME/backups, or a 'strata catalog backup' file)"})
	}
	if len(out) == 0 && recorded != "" {
		out = append(out, snapshot.Finding{Kind: "catalog-damaged", Path: st.Catalog.Path(), Detail: "a command found the catalog damaged (" + recorded + ") and strata writes to it no more; bbolt's check finds nothing now: make a copy with 'strata catalog backup FILE' and put it in place with 'strata catalog restore FILE', or restore an older copy"})
	}
	return out, nil
}
