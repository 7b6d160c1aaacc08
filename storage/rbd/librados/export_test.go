package librados

// SetListSize sets List's first buffer size; the returned func puts it
// back.
func SetListSize(n uintptr) (restore func()) {
	was := listSize
	listSize = n
	return func() { listSize = was }
}
