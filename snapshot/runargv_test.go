package snapshot_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
)

// snapshot run's target is what stands before the "--", its command all
// that follows it, including a "--" of the command's own.
func TestSplitRunArgvTakesTargetBeforeDashAndCommandAfter(t *testing.T) {
	vol := "data"
	for _, tc := range []struct {
		name          string
		args, command []string
		volume        *string
		want          snapshot.TargetRef
	}{
		{"guest, dash kept by the parser", []string{"web", "--", "apt-get", "-y"}, []string{"apt-get", "-y"}, nil, snapshot.TargetRef{Name: "web"}},
		{"guest, dash dropped by the parser", []string{"web", "apt-get"}, []string{"apt-get"}, nil, snapshot.TargetRef{Name: "web"}},
		{"the command's own dash", []string{"web", "--", "git", "--", "x"}, []string{"git", "--", "x"}, nil, snapshot.TargetRef{Name: "web"}},
		{"volume", []string{"true"}, []string{"true"}, &vol, snapshot.TargetRef{Name: "data", Volume: true}},
		{"volume, dash kept", []string{"--", "true"}, []string{"true"}, &vol, snapshot.TargetRef{Name: "data", Volume: true}},
	} {
		got, cmd, err := snapshot.SplitRunArgv(tc.args, tc.command, tc.volume)
		if err != nil || got != tc.want || !slices.Equal(cmd, tc.command) {
			t.Errorf("%s: got %+v %q %v, want %+v %q", tc.name, got, cmd, err, tc.want, tc.command)
		}
	}
}

func TestSplitRunArgvRefusesAMissingCommandOrTarget(t *testing.T) {
	vol := "data"
	for _, tc := range []struct {
		name          string
		args, command []string
		volume        *string
	}{
		{"no dash", []string{"web", "true"}, nil, nil},
		{"no guest", []string{"--", "true"}, []string{"true"}, nil},
		{"two guests", []string{"a", "b", "--", "true"}, []string{"true"}, nil},
		{"a guest with --volume", []string{"web", "--", "true"}, []string{"true"}, &vol},
	} {
		if _, _, err := snapshot.SplitRunArgv(tc.args, tc.command, tc.volume); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: got %v, want an invalid-argument error", tc.name, err)
		}
	}
}
