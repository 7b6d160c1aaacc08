package catalog_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// pki writes a CA and two pairs it signs (server: 127.0.0.1; client) as
// PEM files in dir.
func pki(t *testing.T, dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strata test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	pair := func(name string, serial int64, ips []net.IP) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kd)
	}
	ca = write("ca.crt", "CERTIFICATE", caDER)
	serverCert, serverKey = pair("server", 2, []net.IP{net.ParseIP("127.0.0.1")})
	clientCert, clientKey = pair("client", 3, nil)
	return
}

// An etcd that serves clients over TLS and asks for their certificates:
// the catalog works with the CA and a client pair; without the client
// certificate, or trusting another CA, strata fails at once (failed
// precondition: trying again does not help), naming the TLS flags.
func TestSharedCatalogOverTLSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, sc, sk, cc, ck := pki(t, dir)
	srv, err := storagetest.StartEtcdTLS(&storagetest.EtcdTLS{CA: ca, Cert: sc, Key: sk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	addr := "etcds://" + srv.Endpoint + "/tls"
	c, err := catalog.OpenWith(t.TempDir(), 2*time.Second, catalog.Options{URL: addr, CACert: ca, Cert: cc, Key: ck, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(func(tx *catalog.Tx) error { return tx.Put("things", "a", 1) }); err != nil {
		t.Fatalf("catalog over TLS: %v", err)
	}

	noClient, _ := catalog.OpenWith(t.TempDir(), time.Second, catalog.Options{URL: addr, CACert: ca, Host: "h"})
	err = noClient.View(func(*catalog.Tx) error { return nil })
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "refused this host's TLS") || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without a client certificate: %v", err)
	}
	otherCA, _, _, _, _ := pki(t, t.TempDir())
	wrong, _ := catalog.OpenWith(t.TempDir(), time.Second, catalog.Options{URL: addr, CACert: otherCA, Cert: cc, Key: ck, Host: "h"})
	err = wrong.View(func(*catalog.Tx) error { return nil })
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("trusting another CA: %v", err)
	}
	if _, err := catalog.OpenWith(t.TempDir(), time.Second, catalog.Options{URL: addr, CACert: filepath.Join(dir, "none.crt")}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("a CA file that does not exist: %v", err)
	}
}
