// Package pattern holds regular expressions compiled on first use. Every
// strata command is a short process: package-level regexp.MustCompile of
// patterns most commands never use cost start-up time on every command.
package pattern

import (
	"regexp"
	"sync"
)

// Regexp is a regular expression compiled the first time it is used. The
// source must be valid: a bad one panics on first use, as MustCompile.
type Regexp struct {
	src  string
	once sync.Once
	re   *regexp.Regexp
}

// New returns a lazily compiled regular expression.
func New(src string) *Regexp { return &Regexp{src: src} }

func (r *Regexp) get() *regexp.Regexp {
	r.once.Do(func() { r.re = regexp.MustCompile(r.src) })
	return r.re
}

// MatchString reports whether s contains a match.
func (r *Regexp) MatchString(s string) bool { return r.get().MatchString(s) }

// FindStringSubmatch is regexp.Regexp.FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.get().FindStringSubmatch(s) }

// String returns the source text.
func (r *Regexp) String() string { return r.src }
