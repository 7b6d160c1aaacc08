package storage

import (
	"errors"
	"fmt"
	"strings"
)

// Error kinds. Every error strata returns to a user wraps at most one of
// these (none means internal); cmd/strata maps them to exit codes in one
// place.
var (
	ErrInvalid      = errors.New("invalid argument")
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInUse        = errors.New("in use")
	ErrBusy         = errors.New("busy")
	ErrPrecondition = errors.New("failed precondition")
	ErrNotSupported = errors.New("not supported")
	// ErrDamaged: the catalog is damaged, or missing over a home that
	// holds strata's files; it must be restored before strata writes.
	ErrDamaged = errors.New("catalog damaged")
)

// kindError carries an error kind without repeating the kind's text in
// what the user reads.
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// Errorf returns an error of the given kind whose text is the formatted
// message alone; errors.Is(err, kind) holds, and so does errors.Is for an
// error wrapped with %w in format.
func Errorf(kind error, format string, args ...any) error {
	wrapped := fmt.Errorf(format, args...)
	return &kindError{kind: kind, msg: wrapped.Error(), cause: errors.Unwrap(wrapped)}
}

// QuoteList quotes names for a message: "a", "b", "c".
func QuoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
