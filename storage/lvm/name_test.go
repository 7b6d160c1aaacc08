package lvm_test

import (
	"errors"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
)

// Every name LVName makes is one LVM accepts, holds no '_' (so none of
// LVM's reserved infixes), and ParseLVName gives back the kind and IDs,
// whatever bytes the IDs hold.
func TestLVNamesRoundTripAndAreValidLVMNames(t *testing.T) {
	cases := [][]string{
		{"0123456789abcdef"},
		{"0123456789abcdef", "a1b2c3d4e5f6"},
		{"vol.with_under+plus"},
		{"snapshot"}, {"pvmove"}, {"-leading"}, {"."}, {".."},
		{"_tmeta", "_tdata", "x_mlog"},
		{"a/b c", "é", "\x00\xff"},
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		b := make([]byte, 1+r.Intn(20))
		r.Read(b)
		cases = append(cases, []string{string(b)})
	}
	for _, ids := range cases {
		for _, kind := range []string{lvm.KindVolume, lvm.KindPoint, lvm.KindGolden, lvm.KindAside, lvm.KindTemp} {
			n, err := lvm.LVName(kind, ids...)
			if err != nil {
				if errors.Is(err, storage.ErrInvalid) && strings.Contains(err.Error(), "longer than") {
					continue
				}
				t.Fatalf("LVName(%q, %q): %v", kind, ids, err)
			}
			if err := lvm.ValidLVName(n); err != nil {
				t.Fatalf("LVName(%q, %q) = %q, which lvm refuses: %v", kind, ids, n, err)
			}
			if strings.Contains(n, "_") {
				t.Fatalf("%q holds '_'", n)
			}
			k, got, ok := lvm.ParseLVName(n)
			if !ok || k != kind || !slices.Equal(got, ids) {
				t.Fatalf("ParseLVName(%q) = %q %q %v, want %q %q", n, k, got, ok, kind, ids)
			}
		}
	}
	if n, _ := lvm.LVName(lvm.KindPoint, "0123456789abcdef", "a1b2c3d4e5f6"); n != "strata.point.0123456789abcdef.a1b2c3d4e5f6" {
		t.Fatalf("a point of hex ids is named %q", n)
	}
	if n, _ := lvm.LVName(lvm.KindVolume, "a.b_c"); n != "strata.vol.a+2Eb+5Fc" {
		t.Fatalf("escaped name %q", n)
	}
}

// Names strata did not make, or spelled another way than LVName would,
// are not strata's: one object, one name.
func TestParseLVNameRejectsNamesStrataDidNotMake(t *testing.T) {
	for _, n := range []string{"root", "swap_1", "strata", "strata.", "strata.vol", "strata.vol.", "strata.Vol.x", "strata.v1.x",
		"strata.vol.a+2d", "strata.vol.a+2", "strata.vol.a+zz", "strata.vol.a_b", "strata.vol..x", "strata.vol.x.", "Strata.vol.x", "strata.vol.a+2e"} {
		if k, ids, ok := lvm.ParseLVName(n); ok {
			t.Errorf("ParseLVName(%q) = %q %q, want not strata's", n, k, ids)
		}
	}
}

func TestLVNameRefusesBadKindsEmptyAndTooLongIDs(t *testing.T) {
	for _, c := range []struct {
		kind string
		ids  []string
	}{{"", []string{"a"}}, {"Vol", []string{"a"}}, {"v.x", []string{"a"}}, {"vol", nil}, {"vol", []string{""}}, {"vol", []string{strings.Repeat("é", 40)}}} {
		if n, err := lvm.LVName(c.kind, c.ids...); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("LVName(%q, %q) = %q, %v; want invalid", c.kind, c.ids, n, err)
		}
	}
}

// lvm(8)'s rules for new names.
func TestValidLVNameFollowsLVMRules(t *testing.T) {
	for _, n := range []string{"root", "a-b", "a+b", "a_b", "a.b", "snap", "my_snapshot", "x_t"} {
		if err := lvm.ValidLVName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range []string{"", ".", "..", "-a", "a/b", "a b", "é", "snapshot1", "pvmove0", "x_tmeta", "x_tdata", "x_mlog", "lvol0_pmspare", "a_rimage_0", "a_cdata", strings.Repeat("a", 101)} {
		if err := lvm.ValidLVName(n); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%q: want invalid, got %v", n, err)
		}
	}
	for _, n := range []string{"", "-vg", "a b", "a/b"} {
		if err := lvm.ValidVGName(n); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("vg %q: want invalid, got %v", n, err)
		}
	}
	for _, tag := range []string{"", "-x", "a b", "a,b", strings.Repeat("a", 1025)} {
		if err := lvm.ValidTag(tag); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("tag %q: want invalid, got %v", tag, err)
		}
	}
	if err := lvm.ValidTag("strata.home=h1:x/y#z&!"); err != nil {
		t.Error(err)
	}
}
