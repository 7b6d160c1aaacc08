package image

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestUnion(t *testing.T) {
	type r = [2]int64
	cases := []struct {
		name string
		a, b [][2]int64
		want [][2]int64
	}{
		{"both empty", nil, nil, [][2]int64{}},
		{"one empty", []r{{0, 4}, {8, 12}}, nil, []r{{0, 4}, {8, 12}}},
		{"other empty", nil, []r{{0, 4}, {8, 12}}, []r{{0, 4}, {8, 12}}},
		{"disjoint, interleaved", []r{{0, 1}, {10, 11}, {20, 21}}, []r{{5, 6}, {15, 16}}, []r{{0, 1}, {5, 6}, {10, 11}, {15, 16}, {20, 21}}},
		{"overlapping", []r{{0, 10}, {20, 30}}, []r{{5, 25}}, []r{{0, 30}}},
		{"adjacent", []r{{0, 4}, {8, 12}}, []r{{4, 8}}, []r{{0, 12}}},
		{"adjacent across lists", []r{{0, 4}}, []r{{4, 6}, {7, 9}}, []r{{0, 6}, {7, 9}}},
		{"contained", []r{{0, 100}}, []r{{10, 20}, {30, 40}, {99, 100}}, []r{{0, 100}}},
		{"same start", []r{{0, 4}, {10, 12}}, []r{{0, 8}, {10, 11}}, []r{{0, 8}, {10, 12}}},
		{"identical", []r{{0, 4}, {8, 12}}, []r{{0, 4}, {8, 12}}, []r{{0, 4}, {8, 12}}},
		{"one range spans many", []r{{2, 3}, {5, 6}, {9, 10}, {40, 50}}, []r{{0, 12}}, []r{{0, 12}, {40, 50}}},
	}
	for _, c := range cases {
		for _, swap := range []bool{false, true} {
			a, b := c.a, c.b
			if swap {
				a, b = b, a
			}
			got := union(a, b)
			if len(got) == 0 && len(c.want) == 0 {
				continue
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s (swapped %v): union(%v, %v) = %v, want %v", c.name, swap, a, b, got, c.want)
			}
		}
	}
}

// union of long lists is linear: 1,000,000 ranges take milliseconds, not
// the hours of a quadratic sort.
func TestUnionLong(t *testing.T) {
	const n = 500_000
	a := make([][2]int64, n)
	b := make([][2]int64, n)
	for i := range n {
		a[i] = [2]int64{int64(4 * i), int64(4*i + 1)}
		b[i] = [2]int64{int64(4*i + 2), int64(4*i + 3)}
	}
	start := time.Now()
	got := union(a, b)
	if d := time.Since(start); d > time.Second {
		t.Errorf("union of %d ranges took %v", 2*n, d)
	}
	if len(got) != 2*n || got[1] != [2]int64{2, 3} || got[2*n-1] != [2]int64{4*n - 2, 4*n - 1} {
		t.Errorf("union: %d ranges, %v ... %v", len(got), got[:2], got[len(got)-1])
	}
}

// manyExtents writes a file of count alternating 4 KiB data and hole
// extents (data first), with data of byte fill; last is the data byte of
// the final extent.
func manyExtents(t *testing.T, path string, count int, fill, last byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(2 * count * 4096)); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for i := range block {
		block[i] = fill
	}
	for i := range count {
		if i == count-1 {
			for j := range block {
				block[j] = last
			}
		}
		if _, err := f.WriteAt(block, int64(2*i*4096)); err != nil {
			t.Fatal(err)
		}
	}
}

// SameContent on files of 20,000 data extents each finishes well under a
// second: its union of the two files' data ranges was quadratic (2.2 s
// here before, 7.7 s for 51,200 extents).
func TestSameContentManyExtents(t *testing.T) {
	dir := t.TempDir()
	const count = 20_000
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	manyExtents(t, a, count, 1, 1)
	manyExtents(t, b, count, 1, 1)
	manyExtents(t, c, count, 1, 2) // differs in the last extent only
	f, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := dataRanges(f, 2*count*4096)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(ranges) != count {
		t.Skipf("the filesystem merged the extents (%d data ranges): cannot measure", len(ranges))
	}
	start := time.Now()
	same, err := SameContent(a, b)
	if err != nil || !same {
		t.Fatalf("SameContent of equal files: %v %v", same, err)
	}
	same, err = SameContent(a, c)
	if err != nil || same {
		t.Fatalf("SameContent of files differing at the end: %v %v", same, err)
	}
	d := time.Since(start)
	t.Logf("two comparisons of files with %d extents: %v", count, d)
	if d > time.Second {
		t.Errorf("SameContent of files with %d extents took %v", count, d)
	}
}
