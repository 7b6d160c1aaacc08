package storage

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var sizeUnits = map[string]uint64{
	"": 1, "B": 1,
	"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// MaxSize is the largest size strata accepts: what a signed 64-bit file
// offset can address.
const MaxSize = math.MaxInt64

// ParseSize reads a size such as "100G", "512", "1.5GiB" or "20GB".
// K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of
// 1000; units are case-insensitive. A fraction is allowed with a unit if
// the result is a whole number of bytes. Zero, negative, overflowing and
// malformed sizes are refused with an error quoting the input.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.ToUpper(strings.TrimSpace(in[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, Errorf(ErrInvalid, "invalid size %q: write a positive whole number of bytes or use a unit: K, M, G, T (powers of 1024, also KiB...TiB) or KB, MB, GB, TB (powers of 1000), e.g. 20G", s)
	}
	whole, frac, hasFrac := strings.Cut(num, ".")
	if whole == "" || strings.Contains(frac, ".") || (hasFrac && frac == "") {
		return 0, Errorf(ErrInvalid, "invalid size %q: malformed number", s)
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil || w > MaxSize/mult {
		return 0, Errorf(ErrInvalid, "invalid size %q: larger than the largest size strata can address (%d bytes)", s, int64(MaxSize))
	}
	total := w * mult
	if hasFrac {
		// Exact decimal arithmetic; three digits times 2^40 cannot overflow.
		if len(frac) > 3 {
			return 0, Errorf(ErrInvalid, "invalid size %q: at most three decimal places", s)
		}
		f, _ := strconv.ParseUint(frac, 10, 64)
		den := uint64(math.Pow10(len(frac)))
		if (f*mult)%den != 0 {
			return 0, Errorf(ErrInvalid, "invalid size %q: not a whole number of bytes", s)
		}
		part := f * mult / den
		if total > MaxSize-part {
			return 0, Errorf(ErrInvalid, "invalid size %q: larger than the largest size strata can address (%d bytes)", s, int64(MaxSize))
		}
		total += part
	}
	if total == 0 {
		return 0, Errorf(ErrInvalid, "invalid size %q: a size must be greater than zero", s)
	}
	return int64(total), nil
}

// FormatSize prints a byte count with the largest power-of-1024 unit up
// to T that keeps it readable: "100G", "512B", or "1.5M" when inexact.
// ParseSize reads every output without a decimal point back exactly.
func FormatSize(n int64) string {
	units := []string{"B", "K", "M", "G", "T"}
	u := 0
	for u < len(units)-1 && n >= 1<<(10*(u+1)) {
		u++
	}
	unit := int64(1) << (10 * u)
	if n%unit == 0 {
		return fmt.Sprintf("%d%s", n/unit, units[u])
	}
	return fmt.Sprintf("%.1f%s", float64(n)/float64(unit), units[u])
}
