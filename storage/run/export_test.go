package run

import "time"

// SetSignalGrace lets the tests give a loaded machine time (signalGrace).
func SetSignalGrace(d time.Duration) func() {
	old := signalGrace
	signalGrace = d
	return func() { signalGrace = old }
}
