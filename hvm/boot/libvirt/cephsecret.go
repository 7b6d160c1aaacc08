package libvirt

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	lv "github.com/digitalocean/go-libvirt"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
)

// CephSecretUsage is the usage name of the libvirt secret holding the
// cephx key of client ID: what the rendered <auth><secret usage=...>
// of a disk on an rbd pool with --id names (hvm/libvirt).
func CephSecretUsage(id string) string { return "client." + id + " secret" }

// cephSecrets makes sure that each disk of g on an RBD image whose path
// names a cephx client (id=) can be opened by libvirt's QEMU: the
// libvirt secret its <auth> names exists and holds the client's key,
// read from the keyring the disk's ceph.conf names. strata defines the
// secret (private: libvirt never hands its value back) and sets its
// value through libvirtd's socket, the calls virsh secret-define and
// secret-set-value make: the key is on no command line, in no file of
// strata's and not in the domain XML; libvirt gives it to QEMU as an
// encrypted secret object. So QEMU, run as libvirt-qemu, needs no
// keyring, only a ceph.conf it can read (it names the monitors), as
// /etc/ceph/ceph.conf is (0644). The value is set at every start: a
// rotated key takes effect at the next start.
//
// An image in an RBD namespace is refused: libvirt 9.0 takes
// POOL/NS/IMAGE for the image "NS/IMAGE" of POOL.
func (d *Driver) cephSecrets(ctx context.Context, c *conn, g *hvm.Guest) error {
	done := map[string]bool{}
	for _, k := range g.Disks {
		kind, src := k.Source()
		if kind != hvm.SourcePath || !strings.HasPrefix(src, "rbd:") {
			continue
		}
		s, err := rbd.ParsePath(src)
		if err != nil {
			return err
		}
		if s.Namespace != "" {
			return storage.Errorf(storage.ErrNotSupported, "guest %q: disk %s is an RBD image in namespace %q, which libvirt cannot open (it reads %s as the image %q of pool %q): use the qemu driver for this guest (guest set %s driver=qemu), or put its volumes in an rbd pool without --namespace", g.Name, k.Vdev, s.Namespace, s.Namespace+"/"+s.Image, s.Namespace+"/"+s.Image, s.Pool, g.Name)
		}
		if s.ID == "" || done[s.ID] {
			continue
		}
		done[s.ID] = true
		key, err := rbd.Key(ctx, s.Conn)
		if err != nil {
			return fmt.Errorf("guest %q: disk %s: %w", g.Name, k.Vdev, err)
		}
		raw, err := base64.StdEncoding.DecodeString(key)
		if err != nil {
			return storage.Errorf(storage.ErrInvalid, "guest %q: the key of client.%s is not base64", g.Name, s.ID)
		}
		usage := CephSecretUsage(s.ID)
		sec, err := c.SecretLookupByUsage(int32(lv.SecretUsageTypeCeph), usage)
		if err != nil {
			var le lv.Error
			if !errors.As(err, &le) || le.Code != uint32(lv.ErrNoSecret) {
				return fmt.Errorf("libvirt: look up the secret %q: %w", usage, err)
			}
			def := fmt.Sprintf(`<secret ephemeral='no' private='yes'><description>cephx key of client.%s (set by strata)</description><usage type='ceph'><name>%s</name></usage></secret>`, s.ID, usage)
			if sec, err = c.SecretDefineXML(def, 0); err != nil {
				return fmt.Errorf("libvirt: define the secret %q: %w", usage, err)
			}
		}
		if err := c.SecretSetValue(sec, raw, 0); err != nil {
			return fmt.Errorf("libvirt: set the value of the secret %q: %w", usage, err)
		}
	}
	return nil
}

// cephConfHint explains a QEMU that could not read a disk's ceph.conf.
func cephConfHint(err error) string {
	if !strings.Contains(err.Error(), "error reading conf file") {
		return ""
	}
	return " (libvirt runs QEMU as its own user, which must read the rbd pool's ceph.conf: make it readable by all (chmod 644: it names the monitors and holds no key) and its directories searchable; the cephx key goes through the libvirt secret strata sets, the keyring stays root's)"
}
