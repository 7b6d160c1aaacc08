package catalog

// StopRenewing stops renewing c's lease without revoking it, as when the
// process or its host dies: its locks lapse when the lease expires.
func StopRenewing(c *Catalog) {
	s := c.remote
	s.mu.Lock()
	stop, done := s.stopKA, s.kaDone
	s.lease = 0
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}
