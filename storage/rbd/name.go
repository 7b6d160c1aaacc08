package rbd

import (
	"errors"
	"strings"

	"github.com/strata-vm/strata/storage"
)

// Names strata gives images and snapshots (see the package doc).
const (
	// ImagePrefix starts the name of every image strata makes; the rest
	// is the volume's (or golden image's) stable ID.
	ImagePrefix = "strata-"
	// ApplyingSuffix is added to an image's name while a snapshot is
	// rolled back into it.
	ApplyingSuffix = ".strata-applying"
	// PointPrefix starts a restore point's snapshot name; the rest is
	// the point's UID.
	PointPrefix = "strata-"
	// GoldenSnap is the protected snapshot of a golden image its clones
	// are made from.
	GoldenSnap = "strata-golden"
)

// ImageName is the image of the volume (or golden image) with this ID.
func ImageName(id string) string { return ImagePrefix + id }

// ParseImageName maps an image name back to the ID it was made for;
// applying tells whether it is the name an image has while rolled back.
// ok is false for images strata did not name.
func ParseImageName(name string) (id string, applying, ok bool) {
	if !strings.HasPrefix(name, ImagePrefix) {
		return "", false, false
	}
	rest := strings.TrimPrefix(name, ImagePrefix)
	if r, cut := strings.CutSuffix(rest, ApplyingSuffix); cut {
		rest, applying = r, true
	}
	if rest == "" || strings.ContainsAny(rest, "/@:. ") {
		return "", false, false
	}
	return rest, applying, true
}

// ValidSpecName checks a Ceph pool, namespace or client ID name as an
// image spec and QEMU's rbd: filename carry it (POOL/NAMESPACE/IMAGE@SNAP,
// ':'-separated options): none of '/', '@', ':', '\' or white space.
func ValidSpecName(v string) error {
	if strings.ContainsAny(v, "/@: \t\n\\") {
		return errors.New("it cannot hold '/', '@', ':', '\\' or spaces")
	}
	return nil
}

// Conn is how the tools reach a cluster: a ceph.conf ("" the default,
// /etc/ceph/ceph.conf or $CEPH_CONF) and a client ID ("" admin).
type Conn struct {
	Conf string
	ID   string
}

// Spec names an image: pool, namespace ("" the default) and image, and
// how to reach its cluster.
type Spec struct {
	Conn
	Pool      string
	Namespace string
	Image     string
}

// String is the image spec rbd takes: POOL/[NAMESPACE/]IMAGE.
func (s Spec) String() string {
	if s.Namespace != "" {
		return s.Pool + "/" + s.Namespace + "/" + s.Image
	}
	return s.Pool + "/" + s.Image
}

// Snap is the spec of one of the image's snapshots.
func (s Spec) Snap(name string) string { return s.String() + "@" + name }

// WithImage is s naming another image of the same pool.
func (s Spec) WithImage(image string) Spec { s.Image = image; return s }

// PoolSpec is POOL or POOL/NAMESPACE.
func (s Spec) PoolSpec() string {
	if s.Namespace != "" {
		return s.Pool + "/" + s.Namespace
	}
	return s.Pool
}

// PoolConn is how to reach an rbd pool's cluster, and the pool.
func PoolConn(p storage.Pool) (Spec, error) {
	if p.RBD == nil || p.RBD.Pool == "" {
		return Spec{}, storage.Errorf(storage.ErrInvalid, "pool %q has no ceph pool recorded (driver %q): add it again with --pool", p.Name, p.Driver)
	}
	return Spec{Conn: Conn{Conf: p.RBD.CephConf, ID: p.RBD.ID}, Pool: p.RBD.Pool, Namespace: p.RBD.Namespace}, nil
}

// Path is the volume path of an image: QEMU's rbd filename,
// rbd:POOL/[NAMESPACE/]IMAGE[:id=USER][:conf=FILE], with ':' and '\' in
// values escaped by a backslash as QEMU reads them.
func Path(s Spec) string {
	var b strings.Builder
	b.WriteString("rbd:")
	b.WriteString(escape(s.String()))
	if s.ID != "" {
		b.WriteString(":id=" + escape(s.ID))
	}
	if s.Conf != "" {
		b.WriteString(":conf=" + escape(s.Conf))
	}
	return b.String()
}

func escape(v string) string {
	return strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(v)
}

// ParsePath reads a volume path made by Path (or written by hand in
// QEMU's syntax: other options are ignored here, and kept by the
// renderers).
func ParsePath(path string) (Spec, error) {
	rest, ok := strings.CutPrefix(path, "rbd:")
	if !ok {
		return Spec{}, storage.Errorf(storage.ErrInvalid, "%q is not an rbd volume path (rbd:POOL/IMAGE)", path)
	}
	fields := splitEscaped(rest, ':')
	var s Spec
	parts := strings.Split(fields[0], "/")
	switch len(parts) {
	case 2:
		s.Pool, s.Image = parts[0], parts[1]
	case 3:
		s.Pool, s.Namespace, s.Image = parts[0], parts[1], parts[2]
	default:
		return Spec{}, storage.Errorf(storage.ErrInvalid, "%q names no rbd image: want rbd:POOL/[NAMESPACE/]IMAGE", path)
	}
	if s.Pool == "" || s.Image == "" || strings.Contains(s.Image, "@") {
		return Spec{}, storage.Errorf(storage.ErrInvalid, "%q names no rbd image: want rbd:POOL/[NAMESPACE/]IMAGE", path)
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "id":
			s.ID = v
		case "conf":
			s.Conf = v
		}
	}
	return s, nil
}

// splitEscaped splits s at sep where sep is not escaped, and unescapes
// the fields.
func splitEscaped(s string, sep byte) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == sep:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}
