package media

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/strata-vm/strata/storage"
)

// strata reads the trees of an image itself rather than through go-diskfs:
// go-diskfs picks one tree (Rock Ridge, else Joliet) and cannot be asked
// for another, and a reader that shares the writer's mistakes would hide
// them (the Joliet bug of go-diskfs v1.9.4 is read back "correctly" by its
// own reader only where it happens to agree with itself).

// Extensions of an image, as Medium.Extensions names them.
const (
	ExtISO9660   = "iso9660"
	ExtRockRidge = "rock_ridge"
	ExtJoliet    = "joliet"
	ExtElTorito  = "el_torito"
	ExtUDF       = "udf"
)

// Tree is one view of an image's files: the plain ISO9660 names, the Rock
// Ridge names (POSIX names, modes, symlinks) or the Joliet names (what
// Windows reads).
type Tree struct {
	Extension string `json:"extension"` // iso9660, rock_ridge or joliet
	Files     []File `json:"files"`
}

// record is one ISO9660 directory record.
type record struct {
	name     []byte // file identifier as stored
	date     [7]byte
	extent   int64 // logical block
	size     int64 // bytes (all extents of a multi-extent file)
	dir      bool
	su       []byte // system use area
	more     bool   // multi-extent: another record of this file follows
	selfLike bool   // "." or ".."
}

// isoVolume is an open image: where its trees start.
type isoVolume struct {
	r         io.ReaderAt
	what      string
	blockSize int64
	size      int64
	pvdRoot   *record
	jolietRt  *record
	// rockRidge: the root's "." record starts with a SUSP SP entry and
	// carries Rock Ridge entries; suspSkip is SP's LEN_SKP.
	rockRidge bool
	suspSkip  int
	elTorito  bool
	udf       bool
}

func parseRecord(b []byte) (record, int, error) {
	n := int(b[0])
	if n < 34 || n > len(b) {
		return record{}, 0, fmt.Errorf("directory record of %d bytes", n)
	}
	nl := int(b[32])
	if 33+nl > n {
		return record{}, 0, fmt.Errorf("directory record name of %d bytes overruns its record of %d", nl, n)
	}
	r := record{
		name:   b[33 : 33+nl],
		extent: int64(binary.LittleEndian.Uint32(b[2:6])),
		size:   int64(binary.LittleEndian.Uint32(b[10:14])),
		dir:    b[25]&0x02 != 0,
		more:   b[25]&0x80 != 0,
	}
	copy(r.date[:], b[18:25])
	r.selfLike = nl == 1 && (b[33] == 0 || b[33] == 1)
	su := 33 + nl
	if nl%2 == 0 {
		su++
	}
	if su < n {
		r.su = b[su:n]
	}
	return r, n, nil
}

// openVolume reads the volume descriptors: the primary's root, a Joliet
// supplementary descriptor's root, El Torito and UDF markers, and whether
// the primary tree carries Rock Ridge.
func openVolume(r io.ReaderAt, h Header, what string) (*isoVolume, error) {
	v := &isoVolume{r: r, what: what, blockSize: h.BlockSize, size: h.Size(), elTorito: h.CatalogOffset != 0, udf: h.UDF}
	sec := make([]byte, sectorSize)
	for i := 0; i < maxDescriptors; i++ {
		if n, _ := r.ReadAt(sec, int64(descriptorStart+i*sectorSize)); n < sectorSize {
			break
		}
		id := string(sec[1:6])
		if id != "CD001" {
			if id == "BEA01" || id == "NSR02" || id == "NSR03" || id == "BOOT2" || id == "CDW02" {
				continue
			}
			break
		}
		if sec[0] == vdTerminator {
			break
		}
		if sec[0] != vdPrimary && sec[0] != 2 {
			continue
		}
		root, _, err := parseRecord(sec[156:190])
		if err != nil {
			return nil, storage.Errorf(storage.ErrInvalid, "%q has a corrupt volume descriptor at sector %d: root %v", what, 16+i, err)
		}
		switch {
		case sec[0] == vdPrimary && v.pvdRoot == nil:
			v.pvdRoot = &root
		case sec[0] == 2 && v.jolietRt == nil && isJolietEscape(sec[88:120]):
			v.jolietRt = &root
		}
	}
	if v.pvdRoot == nil {
		return nil, storage.Errorf(storage.ErrInvalid, "%q has no ISO9660 primary volume descriptor", what)
	}
	// Rock Ridge: SUSP's SP entry first in the root's "." record, and a
	// Rock Ridge entry (ER naming RRIP, or PX/NM/RR) in its system use.
	self, err := v.readDir(*v.pvdRoot)
	if err != nil {
		return nil, storage.Errorf(storage.ErrInvalid, "cannot read the root directory of %q: %v", what, err)
	}
	if len(self) > 0 && len(self[0].su) >= 7 && string(self[0].su[:2]) == "SP" && self[0].su[4] == 0xbe && self[0].su[5] == 0xef {
		v.suspSkip = int(self[0].su[6])
		entries, err := v.susp(self[0].su)
		if err == nil {
			for _, e := range entries {
				switch string(e[:2]) {
				case "PX", "NM", "RR", "SL", "TF":
					v.rockRidge = true
				case "ER":
					if len(e) >= 8 {
						idLen := int(e[4])
						if 8+idLen <= len(e) {
							id := string(e[8 : 8+idLen])
							v.rockRidge = v.rockRidge || strings.HasPrefix(id, "RRIP") || strings.HasPrefix(id, "IEEE_P1282") || strings.HasPrefix(id, "IEEE_1282")
						}
					}
				}
			}
		}
	}
	return v, nil
}

// isJolietEscape tells whether a supplementary descriptor's escape
// sequences name UCS-2 level 1, 2 or 3.
func isJolietEscape(esc []byte) bool {
	for i := 0; i+3 <= len(esc); i++ {
		if esc[i] == '%' && esc[i+1] == '/' && (esc[i+2] == '@' || esc[i+2] == 'C' || esc[i+2] == 'E') {
			return true
		}
	}
	return false
}

// Extensions lists what the image has, in a fixed order.
func (v *isoVolume) Extensions() []string {
	out := []string{ExtISO9660}
	if v.rockRidge {
		out = append(out, ExtRockRidge)
	}
	if v.jolietRt != nil {
		out = append(out, ExtJoliet)
	}
	if v.elTorito {
		out = append(out, ExtElTorito)
	}
	if v.udf {
		out = append(out, ExtUDF)
	}
	return out
}

// readDir reads a directory extent's records, "." and ".." included;
// records never cross a 2048-byte sector (ECMA-119 6.8.1.1).
func (v *isoVolume) readDir(d record) ([]record, error) {
	off := d.extent * v.blockSize
	if d.size <= 0 || d.size > 64<<20 || off+d.size > v.size {
		return nil, fmt.Errorf("directory extent at block %d of %d bytes lies outside the volume", d.extent, d.size)
	}
	buf := make([]byte, d.size)
	if n, err := v.r.ReadAt(buf, off); n < len(buf) {
		return nil, fmt.Errorf("read directory extent at block %d: %v", d.extent, err)
	}
	var out []record
	for p := 0; p < len(buf); {
		if buf[p] == 0 {
			p = (p/sectorSize + 1) * sectorSize
			continue
		}
		end := min(len(buf), (p/sectorSize+1)*sectorSize)
		r, n, err := parseRecord(buf[p:end])
		if err != nil {
			return nil, fmt.Errorf("directory at block %d, byte %d: %v", d.extent, p, err)
		}
		if len(out) > 0 && out[len(out)-1].more && !r.dir {
			// the next extent of a multi-extent file
			out[len(out)-1].size += r.size
			out[len(out)-1].more = r.more
		} else {
			out = append(out, r)
		}
		p += n
	}
	return out, nil
}

// susp returns the System Use Sharing Protocol entries of a system use
// area, following continuation areas (CE).
func (v *isoVolume) susp(su []byte) ([][]byte, error) {
	var out [][]byte
	area := su
	if len(area) >= v.suspSkip {
		area = area[v.suspSkip:]
	}
	for hops := 0; hops < 32 && area != nil; hops++ {
		next := []byte(nil)
		for len(area) >= 4 {
			l := int(area[2])
			if l < 4 || l > len(area) {
				break
			}
			e := area[:l]
			area = area[l:]
			switch string(e[:2]) {
			case "ST":
				area = nil
			case "CE":
				if l >= 28 {
					blk := int64(binary.LittleEndian.Uint32(e[4:8]))
					off := int64(binary.LittleEndian.Uint32(e[12:16]))
					n := int64(binary.LittleEndian.Uint32(e[20:24]))
					at := blk*v.blockSize + off
					if n <= 0 || n > 1<<16 || at+n > v.size {
						return out, fmt.Errorf("continuation area at block %d outside the volume", blk)
					}
					next = make([]byte, n)
					if k, err := v.r.ReadAt(next, at); int64(k) < n {
						return out, fmt.Errorf("read continuation area at block %d: %v", blk, err)
					}
				}
			default:
				out = append(out, e)
			}
			if area == nil {
				break
			}
		}
		area = next
	}
	return out, nil
}

// dirAt returns the "." record of the directory whose extent starts at
// block extent (a Rock Ridge CL entry gives only the block).
func (v *isoVolume) dirAt(extent int64) (record, error) {
	recs, err := v.readDir(record{extent: extent, size: sectorSize})
	if err != nil || len(recs) == 0 || !recs[0].selfLike || !recs[0].dir {
		return record{}, fmt.Errorf("no directory at block %d (%v)", extent, err)
	}
	r := recs[0]
	r.selfLike = false
	return r, nil
}

// rrInfo is what Rock Ridge says about one record.
type rrInfo struct {
	name      string
	hasName   bool
	mode      uint32
	hasMode   bool
	symlink   string
	isSymlink bool
	child     int64 // CL: the relocated directory's extent
	relocated bool  // RE: shown through its CL entry, not here
}

func (v *isoVolume) rockRidgeOf(r record) (rrInfo, error) {
	var ri rrInfo
	entries, err := v.susp(r.su)
	if err != nil {
		return ri, err
	}
	var name []byte
	var comps []string
	var cur []byte
	for _, e := range entries {
		switch string(e[:2]) {
		case "NM":
			if len(e) >= 5 && e[4]&0x06 == 0 {
				name = append(name, e[5:]...)
				ri.hasName = true
			}
		case "PX":
			if len(e) >= 12 {
				ri.mode, ri.hasMode = binary.LittleEndian.Uint32(e[4:8]), true
			}
		case "SL":
			ri.isSymlink = true
			for p := 5; p+2 <= len(e); {
				fl, n := e[p], int(e[p+1])
				if p+2+n > len(e) {
					break
				}
				switch {
				case fl&0x02 != 0:
					comps = append(comps, ".")
				case fl&0x04 != 0:
					comps = append(comps, "..")
				case fl&0x08 != 0:
					comps = append(comps, "")
				default:
					cur = append(cur, e[p+2:p+2+n]...)
					if fl&0x01 == 0 {
						comps = append(comps, string(cur))
						cur = nil
					}
				}
				p += 2 + n
			}
		case "CL":
			if len(e) >= 8 {
				ri.child = int64(binary.LittleEndian.Uint32(e[4:8]))
			}
		case "RE":
			ri.relocated = true
		}
	}
	ri.name = string(name)
	ri.symlink = strings.Join(comps, "/")
	if len(comps) > 0 && comps[0] == "" {
		ri.symlink = "/" + strings.Join(comps[1:], "/")
	}
	return ri, nil
}

// plainName turns an ISO9660 file identifier into its name: the version
// (";1") and a trailing "." of a name without extension removed.
func plainName(id []byte) string {
	s := string(id)
	if i := strings.LastIndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSuffix(s, ".")
}

// jolietName decodes a Joliet (UCS-2 big-endian) file identifier.
func jolietName(id []byte) (string, error) {
	if len(id)%2 != 0 {
		return "", fmt.Errorf("Joliet name of odd length %d", len(id))
	}
	u := make([]uint16, len(id)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(id[2*i:])
	}
	s := string(utf16.Decode(u))
	if i := strings.LastIndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return s, nil
}

// ReadTree reads one tree of the image: ext is ExtISO9660, ExtRockRidge or
// ExtJoliet. Entries come depth first in name order. A tree the image does
// not have, or cannot be read, is an error (storage.ErrInvalid for a corrupt
// one): never an empty list.
func (v *isoVolume) ReadTree(ext string) ([]File, error) {
	root := *v.pvdRoot
	switch ext {
	case ExtISO9660:
	case ExtRockRidge:
		if !v.rockRidge {
			return nil, storage.Errorf(storage.ErrNotFound, "%q has no Rock Ridge tree", v.what)
		}
	case ExtJoliet:
		if v.jolietRt == nil {
			return nil, storage.Errorf(storage.ErrNotFound, "%q has no Joliet tree", v.what)
		}
		root = *v.jolietRt
	default:
		return nil, storage.Errorf(storage.ErrInvalid, "unknown tree %q: use iso9660, rock_ridge or joliet", ext)
	}
	w := &treeWalk{v: v, ext: ext, out: []File{}, seen: map[int64]bool{}, primary: map[int64]bool{}}
	if ext == ExtJoliet {
		for blk := range v.primaryDirs() {
			w.primary[blk] = true
		}
	}
	if err := w.walk(root, "/", 0, root.extent); err != nil {
		return nil, storage.Errorf(storage.ErrInvalid, "the %s tree of %q is unreadable (a corrupt image): %v", ExtensionName(ext), v.what, err)
	}
	return w.out, nil
}

// treeWalk is one ReadTree: the tree read (ext), the entries so far,
// the directories seen (a loop is an error) and, for a Joliet tree, the
// directories of the primary tree (a Joliet tree has directories of its
// own: one that lands in the primary tree reads its 8-bit names as
// UCS-2).
type treeWalk struct {
	v       *isoVolume
	ext     string
	out     []File
	seen    map[int64]bool
	primary map[int64]bool
}

// walk reads directory d (at path dir) and, depth first in name order,
// its subdirectories. parent is the extent of the directory that lists
// d; -1 when d was reached through a Rock Ridge CL entry (its ".." is
// RR_MOVED's).
func (w *treeWalk) walk(d record, dir string, depth int, parent int64) error {
	recs, err := w.readDir(d, dir, depth, parent)
	if err != nil {
		return err
	}
	byPath := map[string]int64{} // relocated directories: -1
	var files []File
	dirs := map[string]record{}
	names := map[string]bool{}
	for _, r := range recs {
		if r.selfLike {
			continue
		}
		f, r, moved, skip, err := w.entry(r, dir)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if moved {
			byPath[f.Path] = -1
		}
		name := path.Base(f.Path)
		if names[name] {
			return fmt.Errorf("directory %q: name %q twice", dir, name)
		}
		names[name] = true
		if r.dir {
			f.Type, f.Size = "dir", 0
			dirs[f.Path] = r
		}
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		w.out = append(w.out, f)
		if f.Type == "dir" {
			parent, moved := byPath[f.Path]
			if !moved {
				parent = d.extent
			}
			if err := w.walk(dirs[f.Path], f.Path, depth+1, parent); err != nil {
				return err
			}
		}
	}
	return nil
}

// readDir reads the records of directory d, refusing loops, trees
// nested too deep, cross-linked trees and extents that are no directory.
func (w *treeWalk) readDir(d record, dir string, depth int, parent int64) ([]record, error) {
	if depth > 64 || w.seen[d.extent] {
		return nil, fmt.Errorf("directory %q: directories nested deeper than 64 or in a loop", dir)
	}
	w.seen[d.extent] = true
	if w.primary[d.extent] {
		return nil, fmt.Errorf("directory %q at block %d is a directory of the ISO9660 tree (a cross-linked tree)", dir, d.extent)
	}
	recs, err := w.v.readDir(d)
	if err != nil {
		return nil, fmt.Errorf("directory %q: %v", dir, err)
	}
	// A directory's "." and ".." records point at itself and at the
	// directory that lists it; a tree whose records point into
	// another tree (go-diskfs v1.9.4's Joliet) fails here.
	if len(recs) < 2 || !recs[0].selfLike || !recs[1].selfLike {
		return nil, fmt.Errorf("directory %q at block %d: no \".\" and \"..\" records (not a directory)", dir, d.extent)
	}
	// (libisofs points a Joliet subdirectory's ".." at itself:
	// readers follow the path, so that is let pass.)
	if recs[0].extent != d.extent || (parent >= 0 && recs[1].extent != parent && recs[1].extent != d.extent) {
		return nil, fmt.Errorf("directory %q at block %d: its \".\" and \"..\" records point at blocks %d and %d, not at itself and its parent (a cross-linked tree)", dir, d.extent, recs[0].extent, recs[1].extent)
	}
	return recs, nil
}

// entry is record r of directory dir as the tree names it. With Rock
// Ridge, a relocated directory's CL entry gives the record of the
// directory itself (moved); the relocated placeholder is skipped.
func (w *treeWalk) entry(r record, dir string) (f File, _ record, moved, skip bool, err error) {
	f = File{Type: "file", Size: r.size}
	var name string
	switch w.ext {
	case ExtISO9660:
		name = plainName(r.name)
	case ExtJoliet:
		if name, err = jolietName(r.name); err != nil {
			return f, r, false, false, fmt.Errorf("directory %q: %v", dir, err)
		}
	case ExtRockRidge:
		ri, err := w.v.rockRidgeOf(r)
		if err != nil {
			return f, r, false, false, fmt.Errorf("directory %q: %v", dir, err)
		}
		if ri.relocated {
			return f, r, false, true, nil
		}
		name = plainName(r.name)
		if ri.hasName {
			name = ri.name
		}
		if ri.hasMode {
			f.Mode = modeString(ri.mode)
		}
		if ri.child != 0 {
			if r, err = w.v.dirAt(ri.child); err != nil {
				return f, r, false, false, fmt.Errorf("directory %q: relocated directory %q: %v", dir, name, err)
			}
			moved = true
		}
		if ri.isSymlink {
			f.Type, f.Target, f.Size = "symlink", ri.symlink, 0
		}
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return f, r, false, false, fmt.Errorf("directory %q: invalid name %q", dir, name)
	}
	f.Path = path.Join(dir, name)
	return f, r, moved, false, nil
}

// ExtensionName is an extension as prose ("Rock Ridge").
func ExtensionName(ext string) string {
	switch ext {
	case ExtRockRidge:
		return "Rock Ridge"
	case ExtJoliet:
		return "Joliet"
	case ExtElTorito:
		return "El Torito"
	case ExtUDF:
		return "UDF"
	}
	return "ISO9660"
}

// modeString renders a POSIX mode's permission bits as ls does
// ("-rwxr-xr-x"), with the type letter for directories and symlinks.
func modeString(m uint32) string {
	var b bytes.Buffer
	switch m & 0o170000 {
	case 0o040000:
		b.WriteByte('d')
	case 0o120000:
		b.WriteByte('l')
	default:
		b.WriteByte('-')
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) != 0 {
			b.WriteByte(rwx[i])
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// fileExtents maps the byte offset of each regular file's data to its
// path in the image's preferred tree, to name boot images.
func (v *isoVolume) fileExtents() map[int64]string {
	out := map[int64]string{}
	root := *v.pvdRoot
	var walk func(d record, dir string, depth int)
	walk = func(d record, dir string, depth int) {
		if depth > 64 {
			return
		}
		recs, err := v.readDir(d)
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.selfLike {
				continue
			}
			name := plainName(r.name)
			if v.rockRidge {
				if ri, err := v.rockRidgeOf(r); err == nil {
					if ri.hasName {
						name = ri.name
					}
					if ri.relocated || ri.isSymlink {
						continue
					}
					if ri.child != 0 {
						if r, err = v.dirAt(ri.child); err != nil {
							continue
						}
					}
				}
			}
			p := path.Join(dir, name)
			if r.dir {
				walk(r, p, depth+1)
			} else if r.size > 0 && r.extent != 0 {
				out[r.extent*v.blockSize] = p
			}
		}
	}
	walk(root, "/", 0)
	return out
}

// primaryDirs returns the extents of the primary tree's directories.
func (v *isoVolume) primaryDirs() map[int64]bool {
	out := map[int64]bool{}
	var walk func(d record, depth int)
	walk = func(d record, depth int) {
		if depth > 64 || out[d.extent] {
			return
		}
		out[d.extent] = true
		recs, err := v.readDir(d)
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.dir && !r.selfLike {
				walk(r, depth+1)
			}
		}
	}
	walk(*v.pvdRoot, 0)
	return out
}
