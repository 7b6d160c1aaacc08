package snapshot_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/snapshot"
)

// history makes points at the given times (hours before now), newest ID
// last, as a target accumulates them.
func history(now time.Time, hoursAgo ...float64) []snapshot.Point {
	var ps []snapshot.Point
	for i, h := range hoursAgo {
		ps = append(ps, snapshot.Point{ID: i + 1, Created: now.Add(-time.Duration(h * float64(time.Hour)))})
	}
	return ps
}

func kept(ds []snapshot.Decision) string {
	var ids []string
	for _, d := range ds {
		if d.Keep {
			ids = append(ids, fmt.Sprint(d.Point.ID))
		}
	}
	return strings.Join(ids, ",")
}

func TestSelect(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) // a Wednesday
	// Points 1..10: 40 days, 20 days, 9 days, 8 days, 3 days, 2.5 days,
	// 26 h, 5 h, 1.5 h, 0.5 h ago.
	ps := history(now, 40*24, 20*24, 9*24, 8*24, 3*24, 2.5*24, 26, 5, 1.5, 0.5)
	pinned := history(now, 40*24, 20*24, 9*24, 8*24, 3*24, 2.5*24, 26, 5, 1.5, 0.5)
	pinned[0].Pinned = true
	for _, tc := range []struct {
		name   string
		points []snapshot.Point
		policy snapshot.Policy
		want   string
	}{
		{"keep last 3", ps, snapshot.Policy{KeepLast: 3}, "10,9,8"},
		{"keep last 0 keeps nothing", ps, snapshot.Policy{KeepLast: 0, KeepWithin: time.Nanosecond}, ""},
		{"keep last more than there are", ps, snapshot.Policy{KeepLast: 50}, "10,9,8,7,6,5,4,3,2,1"},
		// Hours with points, newest first: 11:30 (10), 10:30 (9), 07:00 (8).
		{"keep hourly 3", ps, snapshot.Policy{KeepHourly: 3}, "10,9,8"},
		// Days: the 25th (10, 9, 8: newest 10), the 24th (7), the 23rd (6).
		{"keep daily 3", ps, snapshot.Policy{KeepDaily: 3}, "10,7,6"},
		// ISO weeks: W48 from Monday the 23rd (10..6), W47 (5: Sunday the 22nd).
		{"keep weekly 2", ps, snapshot.Policy{KeepWeekly: 2}, "10,5"},
		{"keep monthly 2", ps, snapshot.Policy{KeepMonthly: 2}, "10,1"},
		{"older than 2 days", ps, snapshot.Policy{KeepWithin: 48 * time.Hour}, "10,9,8,7"},
		{"rules combine (kept by any)", ps, snapshot.Policy{KeepLast: 1, KeepMonthly: 2, KeepWithin: 2 * time.Hour}, "10,9,1"},
		{"pinned always stay", pinned, snapshot.Policy{KeepLast: 1}, "10,1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kept(snapshot.Select(tc.points, tc.policy, now)); got != tc.want {
				t.Errorf("kept %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSelectReasons(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ps := history(now, 30, 0.5)
	ps[0].Pinned = true
	ds := snapshot.Select(ps, snapshot.Policy{KeepLast: 1, KeepDaily: 5}, now)
	if got := fmt.Sprint(ds[0].Point.ID, ds[0].Reasons, ds[1].Point.ID, ds[1].Reasons); got != "2 [last daily] 1 [pinned daily]" {
		t.Errorf("got %s", got)
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"36h": 36 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := snapshot.ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"x", "-1d", "0d", "d", "1y", "-5h"} {
		if _, err := snapshot.ParseAge(in); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseAge(%q): %v", in, err)
		}
	}
}

// Automatic pre-rollback points have their own count: a burst of
// rollbacks never pushes the user's points out of --keep-last or the time
// buckets, and the newest DefaultKeepPreRollback of them stay unless told.
func TestSelectCountsPreRollbackPointsApart(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	// 1, 2: the user's (named) points; 3..8: automatic, all newer.
	ps := history(now, 50, 40, 6, 5, 4, 3, 2, 1)
	ps[0].Name, ps[1].Name = "before-sp3", "after-sp3"
	for i := 2; i < len(ps); i++ {
		ps[i].Kind = snapshot.KindPreRollback
	}
	zero, one := 0, 1
	for _, tc := range []struct {
		name string
		p    snapshot.Policy
		want string
	}{
		{"keep-last counts the user's points", snapshot.Policy{KeepLast: 2}, "8,7,6,2,1"},
		{"keep-last 1", snapshot.Policy{KeepLast: 1}, "8,7,6,2"},
		{"daily buckets skip automatic points", snapshot.Policy{KeepDaily: 1}, "8,7,6,2"},
		{"pre-rollback rule alone keeps the user's points", snapshot.Policy{KeepPreRollback: &one}, "8,2,1"},
		{"no pre-rollback point kept", snapshot.Policy{KeepLast: 5, KeepPreRollback: &zero}, "2,1"},
	} {
		if got := kept(snapshot.Select(ps, tc.p, now)); got != tc.want {
			t.Errorf("%s: kept %s, want %s", tc.name, got, tc.want)
		}
	}
}
