package catalog_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// A key's string form is the one catalogs in the field hold ("v-ID",
// "g-ID", "gold-ID"), and parsing it gives back its kind and ID exactly:
// a golden's key is not read as a guest's with ID "old-…".
func TestTargetKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		key  catalog.TargetKey
		s    string
		kind catalog.TargetKind
		id   string
	}{
		{catalog.VolumeKey("0123456789abcdef"), "v-0123456789abcdef", catalog.KindVolume, "0123456789abcdef"},
		{catalog.GuestKey("fedcba9876543210"), "g-fedcba9876543210", catalog.KindGuest, "fedcba9876543210"},
		{catalog.GoldenKey("00000000000000aa"), "gold-00000000000000aa", catalog.KindGolden, "00000000000000aa"},
		{catalog.NewTargetKey(catalog.KindGuest, "old-x"), "g-old-x", catalog.KindGuest, "old-x"},
		{catalog.NewTargetKey(catalog.KindVolume, "v-1"), "v-v-1", catalog.KindVolume, "v-1"},
	} {
		if got := tc.key.String(); got != tc.s {
			t.Errorf("%v: String %q, want %q", tc.key, got, tc.s)
		}
		k, err := catalog.ParseTargetKey(tc.s)
		if err != nil {
			t.Errorf("ParseTargetKey(%q): %v", tc.s, err)
			continue
		}
		if k != tc.key || k.Kind() != tc.kind || k.ID() != tc.id {
			t.Errorf("ParseTargetKey(%q) = %s %q, want %s %q", tc.s, k.Kind(), k.ID(), tc.kind, tc.id)
		}
		// In records (a point's target_key) and as a map key.
		b, err := json.Marshal(struct {
			K catalog.TargetKey `json:"target_key"`
		}{k})
		if err != nil || string(b) != `{"target_key":"`+tc.s+`"}` {
			t.Errorf("JSON of %s: %s %v", tc.s, b, err)
		}
		var back struct {
			K catalog.TargetKey `json:"target_key"`
		}
		if err := json.Unmarshal(b, &back); err != nil || back.K != tc.key {
			t.Errorf("JSON round trip of %s: %v %v", tc.s, back.K, err)
		}
		if m := map[catalog.TargetKey]bool{tc.key: true}; !m[k] {
			t.Errorf("%s: the parsed key is not the built one as a map key", tc.s)
		}
	}
}

// Malformed keys are refused as invalid, never read as some target.
func TestTargetKeyRefusesMalformed(t *testing.T) {
	for _, s := range []string{"", "v-", "g-", "gold-", "x-1", "V-1", "volume:web", "guest:web", "1", "-1", "v", "go-1",
		"v-a/0000000001", "g-a/b", "v-a\x00"} {
		k, err := catalog.ParseTargetKey(s)
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ParseTargetKey(%q) = %s %q, %v; want ErrInvalid", s, k.Kind(), k.ID(), err)
		}
		if s == "" {
			continue
		}
		var rec struct {
			K catalog.TargetKey `json:"target_key"`
		}
		if err := json.Unmarshal([]byte(`{"target_key":`+quote(s)+`}`), &rec); err == nil {
			t.Errorf("a record with target_key %q was read as %s %q", s, rec.K.Kind(), rec.K.ID())
		}
	}
	if _, err := json.Marshal(catalog.NewTargetKey("pool", "x")); err == nil {
		t.Errorf("a key of unknown kind was written")
	}
	if _, err := json.Marshal(catalog.NewTargetKey(catalog.KindGuest, "")); err == nil {
		t.Errorf("a key without an ID was written")
	}
	var zero catalog.TargetKey
	if !zero.IsZero() || zero.String() != "" || catalog.GuestKey("a").IsZero() {
		t.Errorf("zero key: IsZero %v String %q", zero.IsZero(), zero.String())
	}
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }
