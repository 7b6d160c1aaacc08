package snapshot

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// Policy is a retention policy, restic-style: a point kept by any rule
// stays; pinned points always stay. KeepHourly..KeepMonthly keep the newest
// point of each of the last N hours/days/ISO weeks/months that have points
// (in UTC). KeepWithin keeps every point younger than it (--older-than D
// prunes only points older than D).
//
// The count rules count the user's points only (single, pre and post):
// the automatic pre-rollback points have their own rule, KeepPreRollback
// (the newest N; DefaultKeepPreRollback when unset), so a burst of
// rollbacks never pushes a named point out of --keep-last. A policy
// without a rule for the user's points (only KeepPreRollback) keeps them
// all.
type Policy struct {
	KeepLast        int           `json:"keep_last,omitempty"`
	KeepHourly      int           `json:"keep_hourly,omitempty"`
	KeepDaily       int           `json:"keep_daily,omitempty"`
	KeepWeekly      int           `json:"keep_weekly,omitempty"`
	KeepMonthly     int           `json:"keep_monthly,omitempty"`
	KeepWithin      time.Duration `json:"keep_within,omitempty"`
	KeepPreRollback *int          `json:"keep_pre_rollback,omitempty"`
}

// DefaultKeepPreRollback is how many automatic pre-rollback points a
// policy keeps when it does not say.
const DefaultKeepPreRollback = 3

// PreRollback is how many pre-rollback points the policy keeps.
func (p Policy) PreRollback() int {
	if p.KeepPreRollback == nil {
		return DefaultKeepPreRollback
	}
	return *p.KeepPreRollback
}

// userRules reports whether the policy has a rule for the user's points.
func (p Policy) userRules() bool {
	return p.KeepLast != 0 || p.KeepHourly != 0 || p.KeepDaily != 0 || p.KeepWeekly != 0 || p.KeepMonthly != 0 || p.KeepWithin != 0
}

// Empty reports whether the policy has no rule.
func (p Policy) Empty() bool { return !p.userRules() && p.KeepPreRollback == nil }

// Validate refuses negative counts.
func (p Policy) Validate() error {
	for name, n := range map[string]int{"--keep-last": p.KeepLast, "--keep-hourly": p.KeepHourly, "--keep-daily": p.KeepDaily, "--keep-weekly": p.KeepWeekly, "--keep-monthly": p.KeepMonthly, "--keep-pre-rollback": p.PreRollback()} {
		if n < 0 {
			return storage.Errorf(storage.ErrInvalid, "invalid %s %d: give a count of 0 or more", name, n)
		}
	}
	if p.KeepWithin < 0 {
		return storage.Errorf(storage.ErrInvalid, "invalid --older-than %s: give a positive duration", p.KeepWithin)
	}
	return nil
}

// ParseAge reads a duration such as 90m, 36h, 7d, 2w.
func ParseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	if u, ok := unit[s[len(s)-1]]; ok {
		n, err := strconv.Atoi(s[:len(s)-1])
		if err != nil || n <= 0 {
			return 0, storage.Errorf(storage.ErrInvalid, "invalid duration %q: write e.g. 36h, 7d or 2w", s)
		}
		if int64(n) > math.MaxInt64/int64(u) { // would wrap around to a short age
			return 0, storage.Errorf(storage.ErrInvalid, "invalid duration %q: longer than strata can count (about 290 years)", s)
		}
		return time.Duration(n) * u, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, storage.Errorf(storage.ErrInvalid, "invalid duration %q: write e.g. 36h, 7d or 2w", s)
	}
	return d, nil
}

// Decision is what prune does with one point, and why it keeps it.
type Decision struct {
	Point   Point    `json:"point"`
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"`
	// EmptyPair: a pre or post point of a pair whose post shows no change,
	// deleted with --empty-pairs.
	EmptyPair bool `json:"empty_pair,omitempty"`
}

// Select applies a policy to points at time now. It is a pure function:
// the same points and policy always give the same decisions.
func Select(points []Point, p Policy, now time.Time) []Decision {
	sorted := append([]Point(nil), points...)
	sort.Slice(sorted, func(i, j int) bool {
		if !sorted[i].Created.Equal(sorted[j].Created) {
			return sorted[i].Created.After(sorted[j].Created)
		}
		return sorted[i].ID > sorted[j].ID
	})
	out := make([]Decision, len(sorted))
	users, automatic := 0, 0
	for i, pt := range sorted {
		out[i] = Decision{Point: pt, Reasons: []string{}}
		if pt.Pinned {
			out[i].Reasons = append(out[i].Reasons, "pinned")
		}
		if pt.Kind == KindPreRollback {
			if automatic < p.PreRollback() {
				out[i].Reasons = append(out[i].Reasons, "last-pre-rollback")
			}
			automatic++
		} else {
			if users < p.KeepLast {
				out[i].Reasons = append(out[i].Reasons, "last")
			}
			if !p.userRules() {
				out[i].Reasons = append(out[i].Reasons, "no-rule")
			}
			users++
		}
		if p.KeepWithin > 0 && now.Sub(pt.Created) < p.KeepWithin {
			out[i].Reasons = append(out[i].Reasons, "within")
		}
	}
	buckets := []struct {
		name string
		n    int
		of   func(time.Time) string
	}{
		{"hourly", p.KeepHourly, func(t time.Time) string { return t.UTC().Format("2006-01-02T15") }},
		{"daily", p.KeepDaily, func(t time.Time) string { return t.UTC().Format("2006-01-02") }},
		{"weekly", p.KeepWeekly, func(t time.Time) string { y, w := t.UTC().ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"monthly", p.KeepMonthly, func(t time.Time) string { return t.UTC().Format("2006-01") }},
	}
	for _, b := range buckets {
		seen := map[string]bool{}
		for i := range out {
			if len(seen) >= b.n {
				break
			}
			if out[i].Point.Kind == KindPreRollback {
				continue // counted by its own rule
			}
			k := b.of(out[i].Point.Created)
			if !seen[k] {
				seen[k] = true
				out[i].Reasons = append(out[i].Reasons, b.name)
			}
		}
	}
	for i := range out {
		out[i].Keep = len(out[i].Reasons) > 0
	}
	return out
}

// SetPolicy stores a target's retention policy (an empty one removes it).
func (m *Manager) SetPolicy(ctx context.Context, r TargetRef, p Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	return m.st.Catalog.Update(func(tx *catalog.Tx) error {
		t, err := r.resolve(tx)
		if err != nil {
			return err
		}
		if p.Empty() {
			return tx.Delete(bPolicies, t.Key.String())
		}
		return tx.Put(bPolicies, t.Key.String(), p)
	})
}

// GetPolicy returns a target's stored policy (empty if none).
func (m *Manager) GetPolicy(ctx context.Context, r TargetRef) (Policy, error) {
	var p Policy
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		t, err := r.resolve(tx)
		if err != nil {
			return err
		}
		_, err = tx.Get(bPolicies, t.Key.String(), &p)
		return err
	})
	return p, err
}

// PruneResult lists the decisions for one target.
type PruneResult struct {
	Target    string     `json:"target"`
	Policy    Policy     `json:"policy"`
	DryRun    bool       `json:"dry_run"`
	Decisions []Decision `json:"decisions"`
}

// Prune deletes the points of a target that no rule keeps. With an empty
// policy the stored one applies; with neither, nothing is pruned (unless
// emptyPairs). With emptyPairs, pre/post pairs whose post shows no change
// go too, where the method can tell (full copies and reflinks are compared
// byte for byte; qcow2 internal snapshots cannot be and are kept); pinned
// points always stay.
func (m *Manager) Prune(ctx context.Context, r TargetRef, p Policy, dryRun, emptyPairs bool) (PruneResult, error) {
	if err := p.Validate(); err != nil {
		return PruneResult{}, err
	}
	if p.Empty() && emptyPairs {
		all := 1 << 30
		p = Policy{KeepLast: all, KeepPreRollback: &all} // only the empty pairs go
	} else if p.Empty() {
		stored, err := m.GetPolicy(ctx, r)
		if err != nil {
			return PruneResult{}, err
		}
		if stored.Empty() {
			return PruneResult{}, storage.Errorf(storage.ErrInvalid, "no retention rule for %q: give --keep-last, --keep-daily, --keep-pre-rollback, ... or store a policy with 'strata snapshot policy'", r.Name)
		}
		p = stored
	}
	res := PruneResult{Policy: p, DryRun: dryRun}
	err := m.withTarget(ctx, r, func(t Target) error {
		res.Target = t.String()
		var points []Point
		if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { points, err = pointsOf(tx, t.Key); return err }); err != nil {
			return err
		}
		res.Decisions = Select(points, p, m.Now())
		if emptyPairs {
			if err := m.markEmptyPairs(ctx, res.Decisions); err != nil {
				return err
			}
		}
		if dryRun {
			return nil
		}
		for _, d := range res.Decisions {
			if d.Keep {
				continue
			}
			if err := m.delete(ctx, t, d.Point); err != nil {
				return err
			}
		}
		log.Debug().Str("target", t.String()).Int("deleted", countRemoved(res.Decisions)).Msg("pruned")
		return nil
	})
	return res, err
}

func countRemoved(ds []Decision) int {
	n := 0
	for _, d := range ds {
		if !d.Keep {
			n++
		}
	}
	return n
}

// PruneAll applies every stored policy (for cron).
func (m *Manager) PruneAll(ctx context.Context, dryRun bool) ([]PruneResult, error) {
	var refs []TargetRef
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		return tx.Scan(bPolicies, "", func(k string, _ []byte) error {
			key, err := parsePointTarget(k)
			if err != nil {
				log.Warn().Err(err).Msg("a retention policy of no known target: skipped")
				return nil
			}
			if t, ok := targetOf(tx, key); ok { // a deleted target's policy is left alone
				refs = append(refs, TargetRef{Name: t.Name, Volume: t.Kind() == catalog.KindVolume})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := []PruneResult{}
	for _, r := range refs {
		res, err := m.Prune(ctx, r, Policy{}, dryRun, false)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// markEmptyPairs marks for deletion the unpinned pre/post pairs whose post
// holds the same bytes as its pre on every disk.
func (m *Manager) markEmptyPairs(ctx context.Context, ds []Decision) error {
	byID := map[int]int{}
	for i, d := range ds {
		byID[d.Point.ID] = i
	}
	for i, d := range ds {
		post := d.Point
		if post.Kind != KindPost || post.PreID == nil || post.Pinned {
			continue
		}
		j, ok := byID[*post.PreID]
		if !ok || ds[j].Point.Pinned {
			continue
		}
		same, err := m.samePoints(ctx, ds[j].Point, post)
		if err != nil {
			return err
		}
		if same {
			for _, k := range []int{i, j} {
				ds[k].Keep, ds[k].EmptyPair, ds[k].Reasons = false, true, []string{}
			}
		}
	}
	return nil
}

// samePoints tells whether two points of one target hold the same
// definition and the same bytes, as their drivers tell (the dir driver
// compares point files; internal snapshots never match). A pair whose
// definition changed (memory, vcpus, disks) is not empty: its pre point
// may be the only record of the old definition.
func (m *Manager) samePoints(ctx context.Context, a, b Point) (bool, error) {
	if len(a.Disks) != len(b.Disks) || !sameGuest(a.Guest, b.Guest) {
		return false, nil
	}
	for k := range a.Disks {
		da, db := a.Disks[k], b.Disks[k]
		if da.VolumeID != db.VolumeID {
			return false, nil
		}
		drv, _, err := m.pointDriver(da)
		if err != nil {
			return false, err
		}
		v, err := m.volumeByID(da.VolumeID)
		if err != nil {
			return false, nil // gone: nothing to compare
		}
		_, pool, err := m.driverOf(v)
		if err != nil {
			return false, err
		}
		same, err := drv.SamePoint(ctx, pool, v, da.PointRef, db.PointRef)
		if err != nil || !same {
			return false, err
		}
	}
	return true, nil
}

// sameGuest tells whether two points recorded the same guest definition
// and disks.
func sameGuest(a, b *storage.Guest) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Definition == b.Definition && slices.Equal(a.Disks, b.Disks) && slices.Equal(a.Uses, b.Uses)
}
