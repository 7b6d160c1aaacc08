// Command floor is the least a Go program can do to create a volume the
// way strata must: make the image (a sparse file, or a qcow2 image through
// qemu-img create) and record it in a bbolt catalog with one durable
// commit (bbolt's two fdatasyncs). It has no CLI, no validation, no locks
// and no output. strata-bench times it beside truncate, qemu-img and
// strata volume create to show where the floor of a Go command with a
// durable catalog lies on the machine at hand.
//
// Usage: floor DIR NAME SIZE [qcow2]
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

func main() {
	if len(os.Args) != 4 && len(os.Args) != 5 {
		os.Stderr.WriteString("usage: floor DIR NAME SIZE [qcow2]\n")
		os.Exit(2)
	}
	dir, name := os.Args[1], os.Args[2]
	size, err := strconv.ParseInt(os.Args[3], 10, 64)
	if err != nil {
		fail(err)
	}
	if len(os.Args) == 5 {
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, name), os.Args[3]).CombinedOutput()
		if err != nil {
			fail(fmt.Errorf("%v: %s", err, out))
		}
	} else {
		sparse(filepath.Join(dir, name), size)
	}
	db, err := bolt.Open(filepath.Join(dir, "floor.db"), 0o600, nil)
	if err != nil {
		fail(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("volumes"))
		if err != nil {
			return err
		}
		return b.Put([]byte(name), []byte(`{"size":`+os.Args[3]+`}`))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fail(err)
	}
}

func sparse(path string, size int64) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fail(err)
	}
	if err := f.Truncate(size); err != nil {
		fail(err)
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	os.Stderr.WriteString("floor: " + err.Error() + "\n")
	os.Exit(1)
}
