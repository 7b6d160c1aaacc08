package catalog

import (
	"strings"
	"testing"
	"time"
)

// A password typed into the catalog's address (which strata refuses) is
// never repeated in the message that refuses it, whether the address
// parses or not; neither is a query's value.
func TestCatalogAddressMessagesLeaveOutPasswords(t *testing.T) {
	for _, addr := range []string{
		"etcd://root:s3cret@127.0.0.1:2379/strata",
		"etcd://root:s3cret@127.0.0.1:2379",
		"etcds://root:s3cret@h1:2379,h2:2379/strata",
		"etcd://root:s3cret@[::1/strata",
		"etcd://:s3cret@h/x%zz",
		"etcd://u:p@ss:s3cret@h/strata",
		"etcd://h:2379/strata?token=s3cret",
		"etcd://h:2379/strata?lease=s3cret",
		"etcd://h:2379/strata#s3cret",
		"http://root:s3cret@h:2379/strata",
	} {
		_, err := newEtcdStore(Options{URL: addr, Host: "h"}, time.Second)
		if err == nil {
			t.Errorf("%s: accepted", addr)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the message repeats the password: %v", err)
		}
	}
	if got := redactAddress("etcd://root:pw@h1:2379,h2/strata?lease=5s"); got != "etcd://REDACTED@h1:2379,h2/strata?lease=..." {
		t.Errorf("redacted: %s", got)
	}
}

// Two homes' prefixes never overlap: one inside the other's keys would
// show each home's records in the other (the home at /strata read the
// records of the home at /strata/c/volumes as its volumes, and could not
// list them).
func TestCatalogPrefixesCannotLieInsideAnotherHomesKeys(t *testing.T) {
	for _, prefix := range []string{"/strata/c/volumes", "/strata/c", "/strata/v", "/strata/op/shared", "/strata/locks", "/strata/owners/x", "/strata/../c"} {
		if _, err := newEtcdStore(Options{URL: "etcd://h:2379" + prefix, Host: "h"}, time.Second); err == nil {
			t.Errorf("prefix %s accepted", prefix)
		}
	}
	for _, prefix := range []string{"/strata", "/strata/site1", "/a/b/cc"} {
		if _, err := newEtcdStore(Options{URL: "etcd://h:2379" + prefix, Host: "h"}, time.Second); err != nil {
			t.Errorf("prefix %s: %v", prefix, err)
		}
	}
}

// A lease is how long a dead host's locks and guests stay held: bounded.
func TestCatalogLeaseIsBounded(t *testing.T) {
	for _, lease := range []string{"1s", "11m", "876000h", "x"} {
		if _, err := newEtcdStore(Options{URL: "etcd://h:2379/strata?lease=" + lease, Host: "h"}, time.Second); err == nil {
			t.Errorf("lease=%s accepted", lease)
		}
	}
	for _, lease := range []string{"2s", "30s", "10m"} {
		if _, err := newEtcdStore(Options{URL: "etcd://h:2379/strata?lease=" + lease, Host: "h"}, time.Second); err != nil {
			t.Errorf("lease=%s refused: %v", lease, err)
		}
	}
}
