package run_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

var errFull = errors.New("full")

var testRules = []run.Rule{
	{Codes: []int{16}, Phrases: []string{"watchers"}, Kind: storage.ErrInUse, Hint: "stop the client"},
	{Codes: []int{16}, Kind: storage.ErrBusy},
	{Phrases: []string{"no space", "quota"}, Kind: storage.ErrPrecondition, Reason: errFull, Hint: "free space"},
	{Codes: []int{3}, Kind: storage.ErrInvalid},
}

func firstLine(stderr string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
	return l
}

// A failed tool takes the kind of the first rule whose exit codes and
// phrases (lower-cased) both match, with the tool's message and the
// rule's hint; the command's error and the rule's reason stay wrapped.
func TestClassifyTakesTheFirstMatchingRule(t *testing.T) {
	for _, c := range []struct {
		code   int
		stderr string
		kind   error
		says   string
	}{
		{16, "image has Watchers\nmore", storage.ErrInUse, "doing x: image has Watchers: stop the client"},
		{16, "busy", storage.ErrBusy, "doing x: busy"},
		{5, "Pool is over QUOTA", storage.ErrPrecondition, "doing x: Pool is over QUOTA: free space"},
		{3, "", storage.ErrInvalid, "doing x: tool x failed (exit code 3)"},
	} {
		re := &run.Error{Argv: []string{"tool", "x"}, ExitCode: c.code, Stderr: c.stderr}
		err := run.Classify(re, "doing x", testRules, firstLine)
		if !errors.Is(err, c.kind) || err.Error() != c.says {
			t.Errorf("exit %d %q: got %q (%v), want %q of kind %v", c.code, c.stderr, err, err, c.says, c.kind)
		}
		var back *run.Error
		if !errors.As(err, &back) || back != re {
			t.Errorf("exit %d: the command's error is lost", c.code)
		}
		if full := errors.Is(err, errFull); full != (c.kind == storage.ErrPrecondition) {
			t.Errorf("exit %d: reason wrapped: %v", c.code, full)
		}
	}
}

// A failure no rule knows has no kind (internal); an error that is not
// a tool's failure keeps its own kind; nil stays nil.
func TestClassifyLeavesUnknownFailuresInternal(t *testing.T) {
	err := run.Classify(&run.Error{Argv: []string{"tool"}, ExitCode: 5, Stderr: "something new"}, "doing x", testRules, firstLine)
	for _, k := range []error{storage.ErrInvalid, storage.ErrNotFound, storage.ErrExists, storage.ErrInUse, storage.ErrBusy, storage.ErrPrecondition, storage.ErrNotSupported} {
		if errors.Is(err, k) {
			t.Errorf("an unknown failure is %v", k)
		}
	}
	if err.Error() != "doing x: something new" {
		t.Errorf("unknown failure reads %q", err)
	}
	missing := storage.Errorf(storage.ErrPrecondition, "tool is not installed")
	if err := run.Classify(missing, "doing x", testRules, firstLine); !errors.Is(err, storage.ErrPrecondition) || !strings.HasPrefix(err.Error(), "doing x: ") {
		t.Errorf("a missing tool reads %q (%v)", err, err)
	}
	if err := run.Classify(context.Canceled, "doing x", testRules, firstLine); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled run is %v", err)
	}
	if run.Classify(nil, "doing x", testRules, firstLine) != nil {
		t.Error("nil is classified")
	}
}
