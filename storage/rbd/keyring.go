package rbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

// KeyringArgs asks ceph-conf which keyring files the client c reads
// (its ceph.conf's keyring setting, metavariables expanded; a list
// separated by commas when the default applies).
func KeyringArgs(c Conn) []string {
	argv := []string{"ceph-conf"}
	if c.Conf != "" {
		argv = append(argv, "-c", c.Conf)
	}
	return append(argv, "--name", "client."+c.clientID(), "--lookup", "keyring")
}

func (c Conn) clientID() string {
	if c.ID == "" {
		return "admin"
	}
	return c.ID
}

// Key is the cephx key (base64, as in a keyring) of the client c names
// (Conn.ID; client.admin without one), read from the first keyring its
// ceph.conf names that exists. It is for handing the key to a program
// that cannot read the keyring (libvirt's secret for the QEMU it runs
// as its own user): the caller must keep it off command lines and logs.
func Key(ctx context.Context, c Conn) (string, error) {
	out, err := run.Output(ctx, KeyringArgs(c)...)
	if err != nil {
		return "", storage.Errorf(storage.ErrPrecondition, "cannot tell which keyring client.%s reads (ceph-conf): %w", c.clientID(), err)
	}
	files := strings.Split(strings.TrimSpace(string(out)), ",")
	for _, f := range files {
		f = strings.TrimSpace(f)
		raw, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return "", storage.Errorf(storage.ErrPrecondition, "cannot read the keyring %q of client.%s: %w", f, c.clientID(), err)
		}
		key, ok := keyIn(raw, "client."+c.clientID())
		if !ok {
			return "", storage.Errorf(storage.ErrPrecondition, "the keyring %q holds no key for client.%s: add it (ceph auth get client.%s -o %s)", f, c.clientID(), c.clientID(), f)
		}
		if _, err := base64.StdEncoding.DecodeString(key); err != nil {
			return "", storage.Errorf(storage.ErrInvalid, "the key of client.%s in %q is not base64", c.clientID(), f)
		}
		return key, nil
	}
	return "", storage.Errorf(storage.ErrNotFound, "no keyring for client.%s: none of %s exists; give its ceph.conf a [client.%s] keyring = FILE", c.clientID(), storage.QuoteList(files), c.clientID())
}

// keyIn reads the key of entity from a keyring (an INI file: [client.X]
// then key = ...).
func keyIn(raw []byte, entity string) (string, bool) {
	in := false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			in = strings.TrimSpace(line[1:len(line)-1]) == entity
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if in && ok && strings.TrimSpace(k) == "key" {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
