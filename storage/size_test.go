package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"1": 1, "512": 512, "512B": 512, "1K": 1024, "1k": 1024, "4M": 4 << 20, "20G": 20 << 30, "2T": 2 << 40,
		"1KiB": 1024, "3MiB": 3 << 20, "1GiB": 1 << 30, "1tib": 1 << 40,
		"1KB": 1000, "1MB": 1e6, "20GB": 20e9, "1TB": 1e12, "1.5G": 3 << 29, "0.5K": 512, " 7G ": 7 << 30,
		"8388607T": 8388607 << 40,
	}
	for in, want := range good {
		got, err := storage.ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := []string{"", "0", "0G", "-1", "-5G", "G", "1X", "1.2.3G", "1.G", ".5G", "abc", "10 000",
		"9223372036854775808", "8388608T", "99999999999999999999", "1e9", "0x10", "1.1B", "1.0001G", "+5G"}
	for _, in := range bad {
		_, err := storage.ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
			continue
		}
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseSize(%q) error %q: want an invalid-argument error quoting the input", in, err)
		}
	}
}

func TestFormatSizeRoundTrip(t *testing.T) {
	for _, n := range []int64{1, 1023, 1024, 20 << 30, 3 << 29, 100 << 40} {
		back, err := storage.ParseSize(storage.FormatSize(n))
		if err != nil || back != n {
			t.Errorf("FormatSize(%d) = %q reads back as %d, %v", n, storage.FormatSize(n), back, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "20G", "1.5GiB", "7TB", "-1", "", "9223372036854775807", "0.001K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := storage.ParseSize(s)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("ParseSize(%q): error of the wrong kind: %v", s, err)
			}
			return
		}
		if n <= 0 {
			t.Fatalf("ParseSize(%q) accepted %d", s, n)
		}
		// Every accepted size round-trips: as bytes exactly...
		if back, err := storage.ParseSize(strings.TrimSpace(itoa(n))); err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, but %d reads back as %d, %v", s, n, n, back, err)
		}
		// ...and through FormatSize where that is exact (whole units).
		if f := storage.FormatSize(n); !strings.Contains(f, ".") {
			if back, err := storage.ParseSize(f); err != nil || back != n {
				t.Fatalf("FormatSize(%d) = %q reads back as %d, %v", n, f, back, err)
			}
		}
	})
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "falstaff", "win2k3.img", "A-b_c.1", strings.Repeat("x", 64), "0day"} {
		if err := storage.ValidateName("volume", ok); err != nil {
			t.Errorf("ValidateName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".hidden", "-rf", "a/b", "../etc", "a b", "a;rm", "ä", "$(x)", "a\x00b", strings.Repeat("x", 65), "a\nb"} {
		err := storage.ValidateName("volume", bad)
		if err == nil || !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "volume name") {
			t.Errorf("ValidateName(%q) = %v; want an invalid-argument error naming the volume name", bad, err)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "..", "a/b", "-x", "ok.name", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if storage.ValidateName("volume", s) != nil {
			return
		}
		if len(s) == 0 || len(s) > 64 || s[0] == '.' || s[0] == '-' || strings.ContainsAny(s, "/\\ \x00\n$;`'\"") || strings.Contains(s, "..") && len(strings.Trim(s, ".")) == 0 {
			t.Fatalf("ValidateName accepted %q", s)
		}
		for _, r := range s {
			if r > 127 {
				t.Fatalf("ValidateName accepted non-ASCII %q", s)
			}
		}
	})
}
