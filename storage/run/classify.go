package run

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/strata-vm/strata/storage"
)

// Rule is one line of a tool's table of failures: a failed command
// whose exit code is one of Codes (any, when Codes is empty) and whose
// stderr, lower-cased, holds one of Phrases (any, when Phrases is empty)
// is an error of Kind (a storage error kind), with Hint saying what to
// do. Reason, when set, is wrapped as well, for errors.Is (a tool's own
// "no space").
type Rule struct {
	Codes   []int
	Phrases []string
	Kind    error
	Reason  error
	Hint    string
}

func (r Rule) matches(code int, stderr string) bool {
	if len(r.Codes) > 0 && !slices.Contains(r.Codes, code) {
		return false
	}
	if len(r.Phrases) == 0 {
		return true
	}
	for _, p := range r.Phrases {
		if strings.Contains(stderr, p) {
			return true
		}
	}
	return false
}

// Classify turns a failed tool into a storage error by the first of
// rules that matches it, saying what failed (what: "create logical
// volume \"vg/x\"") with the tool's own message (message makes it one
// line from stderr; "" shows the command's error) and the rule's hint.
// A failure no rule matches is internal: no kind. The *Error (argv, exit
// code, stderr) stays reachable through errors.As. An error that is not
// an *Error (the tool is missing, a context ended) keeps its own kind.
func Classify(err error, what string, rules []Rule, message func(stderr string) string) error {
	if err == nil {
		return nil
	}
	var re *Error
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %w", what, err)
	}
	cause := &toolError{msg: message(re.Stderr), run: re}
	low := strings.ToLower(re.Stderr)
	for _, r := range rules {
		if !r.matches(re.ExitCode, low) {
			continue
		}
		cause.reason = r.Reason
		if r.Hint != "" {
			return storage.Errorf(r.Kind, "%s: %w: %s", what, cause, r.Hint)
		}
		return storage.Errorf(r.Kind, "%s: %w", what, cause)
	}
	return fmt.Errorf("%s: %w", what, cause)
}

// toolError is a tool's message for a failure, wrapping the command's
// error (and the rule's Reason, where there is one).
type toolError struct {
	msg    string
	run    *Error
	reason error
}

func (e *toolError) Error() string {
	if e.msg == "" {
		return e.run.Error()
	}
	return e.msg
}

func (e *toolError) Unwrap() []error {
	if e.reason != nil {
		return []error{e.reason, e.run}
	}
	return []error{e.run}
}
