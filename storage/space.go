package storage

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The space guard: every operation that writes new data into a pool asks
// the pool's driver how much it can take (Driver.FreeBytes, through
// EnsureSpace) and refuses up front with ErrPrecondition; a write that
// still runs out (another writer filled the pool meanwhile, or the check
// was skipped) is mapped by NoSpaceError to the same kind. A full
// filesystem (ENOSPC) and a full quota (EDQUOT: an XFS project quota or a
// user quota on the pool) are the same to the user: the same kind, so the
// same exit code, for every command.

// EnsureSpace refuses work that needs need bytes in pool p when p's driver
// reports less free: refuse says what, with the free space, and should
// wrap ErrPrecondition. It is skipped under SkipSpaceCheck (tests that
// need a real ENOSPC).
func EnsureSpace(ctx context.Context, d Driver, p Pool, need int64, refuse func(free int64) error) error {
	if SkipSpaceCheck || need <= 0 {
		return nil
	}
	free, err := d.FreeBytes(ctx, p)
	if err != nil {
		return err
	}
	if need > free {
		return refuse(free)
	}
	return nil
}

// FreeIn is the space new data can take in the filesystem holding dir:
// what a write by strata can use (f_bavail), which on XFS is the project
// quota's room when dir carries one. It is what a directory driver
// reports as FreeBytes.
func FreeIn(dir string) (int64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return int64(fs.Bavail) * fs.Bsize, nil
}

// NoSpace tells whether err is a filesystem or quota out of space.
func NoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// NoSpaceError returns err unchanged unless it is out of space (NoSpace);
// then an ErrPrecondition error whose text is the formatted message (say
// what ran out and what to do) and which still wraps err.
func NoSpaceError(err error, format string, args ...any) error {
	if !NoSpace(err) {
		return err
	}
	return &kindError{kind: ErrPrecondition, msg: fmt.Sprintf(format, args...), cause: err}
}
