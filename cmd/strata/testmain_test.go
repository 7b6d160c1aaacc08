package main_test

import (
	"os"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// TestMain stops the libvirtd that test support started for this
// package's tests, if it was the last user, and the Ceph cluster.
func TestMain(m *testing.M) {
	code := m.Run()
	storagetest.StopLibvirtd()
	storagetest.StopCeph()
	os.Exit(code)
}
