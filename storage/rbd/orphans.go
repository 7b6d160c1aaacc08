package rbd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

var _ storage.OrphanFinder = Driver{}

// OwnerObject is the RADOS object, in each pool (and namespace) strata
// keeps images in, whose omap key OwnerKey holds the owner marker of the
// home that owns the pool (what a dir pool's marker file holds): doctor
// removes orphan images only from a pool this home owns.
const (
	OwnerObject = "strata_pool"
	OwnerKey    = "owner"
)

// StrataImage tells whether name is one strata gives an image: ImagePrefix
// and a stable ID (16 hex digits, storage.NewID), or that name while a
// rollback has it aside. Only such images are ever taken for orphans.
func StrataImage(name string) bool {
	id, _, ok := ParseImageName(name)
	if !ok || len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Orphans implements storage.OrphanFinder: one listing of the pool (Ops:
// on the helper's connection when it runs).
func (d Driver) Orphans(ctx context.Context, p storage.Pool, known []string) ([]string, error) {
	s, err := PoolConn(p)
	if err != nil {
		return nil, err
	}
	names, err := d.ops().List(ctx, s)
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, k := range known {
		if ks, err := ParsePath(k); err == nil && ks.Pool == s.Pool && ks.Namespace == s.Namespace {
			mine[ks.Image] = true
		}
	}
	var out []string
	for _, n := range names {
		if StrataImage(n) && !mine[n] {
			out = append(out, Path(s.WithImage(n)))
		}
	}
	return out, nil
}

// RemoveOrphan implements storage.OrphanFinder: never an image a client
// has open, nor one holding a snapshot a restore point record names.
func (d Driver) RemoveOrphan(ctx context.Context, p storage.Pool, path string, keep map[string]bool) error {
	s, err := ParsePath(path)
	if err != nil {
		return err
	}
	if !StrataImage(s.Image) {
		return storage.Errorf(storage.ErrInvalid, "rbd image %q is not named as strata names its images", s.String())
	}
	if err := d.notOpen(ctx, s, "remove the orphan"); err != nil {
		return err
	}
	snaps, err := d.ops().Snapshots(ctx, s)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		if keep[sn.Name] {
			return storage.Errorf(storage.ErrPrecondition, "rbd image %q holds snapshot %s, which a restore point record names: not removed", s.String(), sn.Name)
		}
	}
	if err := d.removeImage(ctx, s); err != nil {
		return err
	}
	if _, applying, _ := ParseImageName(s.Image); !applying {
		_ = d.c().ForgetGeneration(ctx, s) // a few bytes otherwise
	}
	return nil
}

// OwnerArgs reads the pool's owner marker (to stdout); ClaimArgs sets it.
func OwnerArgs(s Spec) []string {
	return append(radosBase(s), "getomapval", OwnerObject, OwnerKey, "/dev/stdout")
}
func ClaimArgs(s Spec, marker string) []string {
	return append(radosBase(s), "setomapval", OwnerObject, OwnerKey, marker)
}

// PoolOwner implements storage.OrphanFinder.
func (d Driver) PoolOwner(ctx context.Context, p storage.Pool) ([]byte, bool, error) {
	s, err := PoolConn(p)
	if err != nil {
		return nil, false, err
	}
	out, err := d.c().exec(ctx, false, OwnerArgs(s))
	var re *run.Error
	if errors.As(err, &re) && (strings.Contains(re.Stderr, "No such file or directory") || strings.Contains(string(out), "No such key")) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, Classify(err, fmt.Sprintf("owner of %q", s.PoolSpec()))
	}
	return []byte(strings.TrimSpace(string(out))), true, nil
}

// ClaimPool implements storage.OrphanFinder.
func (d Driver) ClaimPool(ctx context.Context, p storage.Pool, marker []byte) error {
	s, err := PoolConn(p)
	if err != nil {
		return err
	}
	return d.c().change(ctx, fmt.Sprintf("mark %q as this home's", s.PoolSpec()), ClaimArgs(s, string(marker)))
}
