package rbd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/storagetest"
)

// TestKeyReadsTheKeyringTheConfNames: the key of a cephx client comes
// from the keyring its ceph.conf names for it (ceph-conf expands
// $name); a keyring without the client, or none at all, is an error
// that names the files.
func TestKeyReadsTheKeyringTheConfNames(t *testing.T) {
	storagetest.NeedTool(t, "ceph-conf")
	dir := t.TempDir()
	conf := filepath.Join(dir, "ceph.conf")
	if err := os.WriteFile(conf, []byte("[global]\nmon_host = 127.0.0.1\n[client]\nkeyring = "+dir+"/ceph.$name.keyring\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "AQBLm0xnAAAAABAAk2b7cJ4Bk6o0N3Q0c5sOeQ=="
	if err := os.WriteFile(filepath.Join(dir, "ceph.client.vm.keyring"), []byte("[client.other]\n\tkey = AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n[client.vm]\n\tkey = "+key+"\n\tcaps mon = \"profile rbd\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := rbd.Key(ctx, rbd.Conn{Conf: conf, ID: "vm"}); err != nil || got != key {
		t.Fatalf("Key of client.vm: %q %v", got, err)
	}
	if _, err := rbd.Key(ctx, rbd.Conn{Conf: conf, ID: "nobody"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Key of a client without a keyring: %v", err)
	}
	if err := os.Rename(filepath.Join(dir, "ceph.client.vm.keyring"), filepath.Join(dir, "ceph.client.nobody.keyring")); err != nil {
		t.Fatal(err)
	}
	if _, err := rbd.Key(ctx, rbd.Conn{Conf: conf, ID: "nobody"}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("Key from a keyring without the client: %v", err)
	}
}
