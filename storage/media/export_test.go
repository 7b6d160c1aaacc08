package media

import "io"

// SetWrapSource makes captures read their source through wrap (fault
// injection); the returned function undoes it.
func SetWrapSource(wrap func(io.ReaderAt) io.ReaderAt) (restore func()) {
	wrapSource = wrap
	return func() { wrapSource = nil }
}

// SetAfterSpaceCheck runs fn between a capture's free-space check and its
// copy, e.g. to fill the pool's disk; the returned function undoes it.
func SetAfterSpaceCheck(fn func(poolPath string)) (restore func()) {
	afterSpaceCheck = fn
	return func() { afterSpaceCheck = nil }
}
