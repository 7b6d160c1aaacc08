package catalog

import (
	"strings"

	"github.com/strata-vm/strata/storage"
)

// TargetKind is what a target key names: a volume, a guest or a golden
// image. Its value is the word users see ("volume", "guest", "golden").
type TargetKind string

// The kinds of target.
const (
	KindVolume TargetKind = "volume"
	KindGuest  TargetKind = "guest"
	KindGolden TargetKind = "golden"
)

// keyPrefixes is the one place that knows how a key is spelled on disk:
// "v-ID", "g-ID", "gold-ID". Catalogs in the field hold these strings (as
// bucket keys of restore points, journals, policies and sequences, in
// records' target_key, and as lock file names), so they never change.
var keyPrefixes = []struct {
	kind   TargetKind
	prefix string
}{
	{KindGolden, "gold-"}, // before "g-": "gold-…" must not parse as a guest
	{KindVolume, "v-"},
	{KindGuest, "g-"},
}

// TargetKey is the stable identity of a target (a volume, guest or golden
// image): its kind and catalog ID, never its name, so it survives renames.
// It is built only by NewTargetKey (or the Volume/Guest/GoldenKey
// shorthands) and ParseTargetKey; its zero value is no key. It is
// comparable and may key a map; in JSON it is its string form.
type TargetKey struct {
	kind TargetKind
	id   string
}

// NewTargetKey is the key of the target of that kind and ID.
func NewTargetKey(kind TargetKind, id string) TargetKey { return TargetKey{kind: kind, id: id} }

// VolumeKey is the key of volume id.
func VolumeKey(id string) TargetKey { return TargetKey{KindVolume, id} }

// GuestKey is the key of guest id.
func GuestKey(id string) TargetKey { return TargetKey{KindGuest, id} }

// GoldenKey is the key of golden image id.
func GoldenKey(id string) TargetKey { return TargetKey{KindGolden, id} }

// ParseTargetKey reads a key's string form ("v-ID", "g-ID", "gold-ID").
// A key of no known kind, with an empty ID, or with an ID holding "/"
// (which separates a key from what follows it in catalog keys) is refused
// with storage.ErrInvalid.
func ParseTargetKey(s string) (TargetKey, error) {
	for _, p := range keyPrefixes {
		if id, ok := strings.CutPrefix(s, p.prefix); ok {
			if id == "" || strings.ContainsAny(id, "/\x00") {
				break
			}
			return TargetKey{p.kind, id}, nil
		}
	}
	return TargetKey{}, storage.Errorf(storage.ErrInvalid, "malformed target key %q: want v-ID, g-ID or gold-ID (the catalog may be damaged: see 'strata doctor')", s)
}

// Kind is the kind of target the key names.
func (k TargetKey) Kind() TargetKind { return k.kind }

// ID is the target's catalog ID.
func (k TargetKey) ID() string { return k.id }

// IsZero says whether k is no key.
func (k TargetKey) IsZero() bool { return k == TargetKey{} }

// String is the key as stored: "v-ID", "g-ID" or "gold-ID"; "" for the
// zero key.
func (k TargetKey) String() string {
	for _, p := range keyPrefixes {
		if p.kind == k.kind {
			return p.prefix + k.id
		}
	}
	return ""
}

// MarshalText writes the stored form, so that records keep their
// "target_key": "v-ID" field.
func (k TargetKey) MarshalText() ([]byte, error) {
	if k.IsZero() {
		return []byte{}, nil
	}
	if k.String() == "" || k.id == "" {
		return nil, storage.Errorf(storage.ErrInvalid, "target key of unknown kind %q or without an ID", k.kind)
	}
	return []byte(k.String()), nil
}

// UnmarshalText reads the stored form; "" is the zero key.
func (k *TargetKey) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*k = TargetKey{}
		return nil
	}
	p, err := ParseTargetKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}
