package catalog

// The boundary between the catalog's transaction API (Tx) and the store
// that serves it: the bbolt file in the state home (the default, one
// host, no server) or etcd (shared by hosts; etcd.go). Tx and everything
// built on it (records, indexes, migrations) reads and writes buckets of
// raw keys through kv and never knows which store it has.

import (
	"bytes"
	"errors"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// kv is one transaction of a backend: buckets of keys in byte order.
// Values are JSON records; nil means "no such key".
type kv interface {
	writable() bool
	// hasBucket tells whether the bucket exists (bbolt) or holds a key
	// (etcd, where buckets are key prefixes).
	hasBucket(bucket string) bool
	get(bucket, key string) ([]byte, error)
	put(bucket, key string, value []byte) error
	del(bucket, key string) error
	deleteBucket(bucket string) error
	// scan calls fn for each key of bucket starting with prefix, in key
	// order; an error from fn ends it and is returned.
	scan(bucket, prefix string, fn func(key string, value []byte) error) error
	// buckets lists the buckets that hold keys, in order.
	buckets() ([]string, error)
}

// boltKV serves a transaction from a bbolt file.
type boltKV struct{ tx *bolt.Tx }

var _ kv = boltKV{}

func (b boltKV) writable() bool { return b.tx.Writable() }

func (b boltKV) hasBucket(bucket string) bool { return b.tx.Bucket([]byte(bucket)) != nil }

func (b boltKV) get(bucket, key string) ([]byte, error) {
	bk := b.tx.Bucket([]byte(bucket))
	if bk == nil {
		return nil, nil
	}
	return bk.Get([]byte(key)), nil
}

func (b boltKV) put(bucket, key string, value []byte) error {
	bk, err := b.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), value)
}

func (b boltKV) del(bucket, key string) error {
	bk := b.tx.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	return bk.Delete([]byte(key))
}

func (b boltKV) deleteBucket(bucket string) error {
	err := b.tx.DeleteBucket([]byte(bucket))
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

func (b boltKV) scan(bucket, prefix string, fn func(string, []byte) error) error {
	bk := b.tx.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	c := bk.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if v == nil {
			continue // a nested bucket: strata makes none
		}
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

func (b boltKV) buckets() ([]string, error) {
	var out []string
	err := b.tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		out = append(out, string(name))
		return nil
	})
	return out, err
}

// newTx wraps a bbolt transaction.
func newTx(tx *bolt.Tx) *Tx { return &Tx{kv: boltKV{tx: tx}, bolt: tx} }
