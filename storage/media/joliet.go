package media

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/strata-vm/strata/storage"
)

// strata writes the Joliet tree itself. go-diskfs v1.9.4 (and its main
// branch as of July 2026) writes a Joliet tree whose subdirectory records
// point at the primary (ISO9660) directories instead of the Joliet ones:
// every reader that follows them (Windows, xorriso -read_fs norock,
// libarchive) decodes 8-bit ISO9660 names as UCS-2 below the root, and
// libarchive rejects the tree for directories placed before their parents.
// Its supplementary descriptor also records the volume size in bytes and
// the label in 8-bit characters, and its directories are in ISO9660 order,
// not Joliet's. So go-diskfs builds the image with Joliet enabled (which
// reserves the supplementary descriptor's sector), then jolietFix appends a
// correct Joliet tree, built from the image's own Rock Ridge tree (the same
// names, the same file extents), and rewrites the descriptor to point at it.
// go-diskfs's Joliet sectors stay in the image, unreferenced.

// MaxJolietName is the longest name, in UCS-2 characters, that Joliet
// holds (Joliet specification, section 3.3). Longer names are refused, not
// shortened: a shortened name is a different name to a Windows guest (and
// to scripts that look for it), and two shortened names can collide.
const MaxJolietName = 64

// checkJolietName tells why name cannot be a Joliet name, or "" if it can.
func checkJolietName(name string) string {
	n := 0
	for _, c := range name {
		switch {
		case c > 0xffff:
			return fmt.Sprintf("character %q is outside the range Joliet (UCS-2) holds", c)
		case c < 0x20 || strings.ContainsRune("*/:;?\\", c):
			return fmt.Sprintf("character %q is not allowed in Joliet names (nor in Windows file names)", c)
		}
		n++
	}
	if n > MaxJolietName {
		return fmt.Sprintf("the name has %d characters, more than the %d Joliet holds", n, MaxJolietName)
	}
	return ""
}

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// ucs2Field fills dst with s in UCS-2, padded with UCS-2 spaces.
func ucs2Field(dst []byte, s string) {
	for i := 0; i+1 < len(dst); i += 2 {
		dst[i], dst[i+1] = 0, ' '
	}
	if len(dst)%2 == 1 {
		dst[len(dst)-1] = 0
	}
	b := ucs2(s)
	copy(dst, b[:min(len(b), len(dst)&^1)])
}

// jnode is a directory or file of the Joliet tree being written.
type jnode struct {
	name     []byte // UCS-2 big-endian
	rec      record // the primary record: extent, size, date
	children []*jnode
	loc      int64 // directory: its Joliet extent; file: rec.extent
	size     int64 // directory: its Joliet extent's bytes
	num      int   // directory: its path table number
	parent   *jnode
}

// buildJolietTree reads the image's Rock Ridge tree into jnodes. Symlinks
// are left out (Joliet cannot hold them, as mkisofs leaves them out).
func buildJolietTree(v *isoVolume) (*jnode, int, error) {
	root := &jnode{rec: *v.pvdRoot}
	dirs := 1
	var walk func(n *jnode, dir string, depth int) error
	walk = func(n *jnode, dir string, depth int) error {
		if depth > 64 {
			return fmt.Errorf("directories nested deeper than 64 at %q", dir)
		}
		recs, err := v.readDir(n.rec)
		if err != nil {
			return fmt.Errorf("directory %q: %v", dir, err)
		}
		for _, r := range recs {
			if r.selfLike {
				continue
			}
			ri, err := v.rockRidgeOf(r)
			if err != nil {
				return fmt.Errorf("directory %q: %v", dir, err)
			}
			if ri.relocated || ri.isSymlink {
				continue
			}
			if ri.child != 0 {
				if r, err = v.dirAt(ri.child); err != nil {
					return fmt.Errorf("directory %q: %v", dir, err)
				}
			}
			name := plainName(r.name)
			if ri.hasName {
				name = ri.name
			}
			p := strings.TrimPrefix(dir+"/"+name, "/")
			if why := checkJolietName(name); why != "" {
				return storage.Errorf(storage.ErrInvalid, "%q cannot be named in Joliet: %s", p, why)
			}
			c := &jnode{name: ucs2(name), rec: r, parent: n, loc: r.extent, size: r.size}
			n.children = append(n.children, c)
			if r.dir {
				dirs++
				if err := walk(c, p, depth+1); err != nil {
					return err
				}
			}
		}
		sort.Slice(n.children, func(i, j int) bool { return bytes.Compare(n.children[i].name, n.children[j].name) < 0 })
		return nil
	}
	return root, dirs, walk(root, "", 0)
}

// jolietRecord encodes a directory record without system use.
func jolietRecord(name []byte, loc, size int64, date [7]byte, dir bool) []byte {
	n := 33 + len(name)
	if n%2 == 1 {
		n++
	}
	b := make([]byte, n)
	b[0] = byte(n)
	binary.LittleEndian.PutUint32(b[2:], uint32(loc))
	binary.BigEndian.PutUint32(b[6:], uint32(loc))
	binary.LittleEndian.PutUint32(b[10:], uint32(size))
	binary.BigEndian.PutUint32(b[14:], uint32(size))
	copy(b[18:25], date[:])
	if dir {
		b[25] = 0x02
	}
	binary.LittleEndian.PutUint16(b[28:], 1)
	binary.BigEndian.PutUint16(b[30:], 1)
	b[32] = byte(len(name))
	copy(b[33:], name)
	return b
}

// dirExtent lays out a directory's records in sectors, none crossing a
// sector boundary.
func dirExtent(n *jnode) []byte {
	var buf []byte
	add := func(r []byte) {
		if used := len(buf) % sectorSize; used+len(r) > sectorSize {
			buf = append(buf, make([]byte, sectorSize-used)...)
		}
		buf = append(buf, r...)
	}
	parent := n.parent
	if parent == nil {
		parent = n
	}
	add(jolietRecord([]byte{0}, n.loc, n.size, n.rec.date, true))
	add(jolietRecord([]byte{1}, parent.loc, parent.size, parent.rec.date, true))
	for _, c := range n.children {
		add(jolietRecord(c.name, c.loc, c.size, c.rec.date, c.rec.dir))
	}
	if r := len(buf) % sectorSize; r != 0 || len(buf) == 0 {
		buf = append(buf, make([]byte, sectorSize-r)...)
	}
	return buf
}

// jolietFix writes a correct Joliet tree at the end of the image go-diskfs
// built with Joliet enabled, and points the Joliet descriptor at it. label
// is the volume identifier (the first 16 characters fit Joliet's field).
func jolietFix(f *os.File, what, label string) error {
	h, err := ReadHeader(f, what)
	if err != nil {
		return err
	}
	if h.BlockSize != sectorSize {
		return fmt.Errorf("go-diskfs wrote logical blocks of %d bytes, not %d", h.BlockSize, sectorSize)
	}
	v, err := openVolume(f, h, what)
	if err != nil {
		return err
	}
	if !v.rockRidge {
		return fmt.Errorf("the image has no Rock Ridge tree to name its Joliet tree from")
	}
	pvdAt, svdAt := findDescriptors(f)
	if pvdAt < 0 || svdAt < 0 {
		return fmt.Errorf("go-diskfs wrote no Joliet volume descriptor")
	}
	root, _, err := buildJolietTree(v)
	if err != nil {
		return err
	}
	order, loc, err := layoutJoliet(root, h.Blocks)
	if err != nil {
		return err
	}
	ptL, ptM := pathTables(order)
	ptSize := int64(len(ptL))
	ptBlocks := (ptSize + sectorSize - 1) / sectorSize
	ptLAt, ptMAt := loc, loc+ptBlocks
	total := ptMAt + ptBlocks

	for _, d := range order {
		if _, err := f.WriteAt(dirExtent(d), d.loc*sectorSize); err != nil {
			return err
		}
	}
	pad := func(b []byte) []byte { return append(b, make([]byte, ptBlocks*sectorSize-int64(len(b)))...) }
	if _, err := f.WriteAt(pad(ptL), ptLAt*sectorSize); err != nil {
		return err
	}
	if _, err := f.WriteAt(pad(ptM), ptMAt*sectorSize); err != nil {
		return err
	}

	pvd := make([]byte, sectorSize)
	if _, err := f.ReadAt(pvd, pvdAt*sectorSize); err != nil {
		return err
	}
	svd := jolietDescriptor(pvd, label, root, ptSize, ptLAt, ptMAt)
	for _, vd := range [][]byte{pvd, svd} {
		binary.LittleEndian.PutUint32(vd[80:], uint32(total))
		binary.BigEndian.PutUint32(vd[84:], uint32(total))
	}
	if _, err := f.WriteAt(svd, svdAt*sectorSize); err != nil {
		return err
	}
	if _, err := f.WriteAt(pvd, pvdAt*sectorSize); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < total*sectorSize {
		return f.Truncate(total * sectorSize)
	}
	return nil
}

// findDescriptors finds the sectors of the primary and the Joliet
// supplementary volume descriptors (-1: none). The list ends at the
// terminator, at a sector that is no descriptor, or at the end of the
// file (a short read).
func findDescriptors(f *os.File) (pvdAt, svdAt int64) {
	pvdAt, svdAt = -1, -1
	sec := make([]byte, sectorSize)
	for i := int64(0); i < maxDescriptors; i++ {
		if _, err := f.ReadAt(sec, descriptorStart+i*sectorSize); err != nil || string(sec[1:6]) != "CD001" || sec[0] == vdTerminator {
			break
		}
		switch {
		case sec[0] == vdPrimary && pvdAt < 0:
			pvdAt = 16 + i
		case sec[0] == 2 && svdAt < 0 && isJolietEscape(sec[88:120]):
			svdAt = 16 + i
		}
	}
	return pvdAt, svdAt
}

// layoutJoliet numbers the directories of the tree in level order (what
// the path table lists, and parents before children on the disc, which
// libarchive requires) and places their extents from block start on;
// end is the first block after them.
func layoutJoliet(root *jnode, start int64) (order []*jnode, end int64, err error) {
	order = []*jnode{root}
	for i := 0; i < len(order); i++ {
		order[i].num = i + 1
		for _, c := range order[i].children {
			if c.rec.dir {
				order = append(order, c)
			}
		}
	}
	if len(order) > 0xffff {
		return nil, 0, storage.Errorf(storage.ErrNotSupported, "%d directories are more than a Joliet path table can number (65535)", len(order))
	}
	// Sizes first (a directory's size depends only on its children's
	// names), then locations.
	for _, d := range order {
		d.size = int64(len(dirExtent(d)))
	}
	end = start
	for _, d := range order {
		d.loc = end
		end += d.size / sectorSize
	}
	return order, end, nil
}

// pathTables are the little- and big-endian path tables of the
// directories in level order.
func pathTables(order []*jnode) (ptL, ptM []byte) {
	for _, d := range order {
		name := d.name
		if d.parent == nil {
			name = []byte{0}
		}
		parent := 1
		if d.parent != nil {
			parent = d.parent.num
		}
		e := make([]byte, 8+len(name)+len(name)%2)
		e[0] = byte(len(name))
		copy(e[8:], name)
		m := bytes.Clone(e)
		binary.LittleEndian.PutUint32(e[2:], uint32(d.loc))
		binary.LittleEndian.PutUint16(e[6:], uint16(parent))
		binary.BigEndian.PutUint32(m[2:], uint32(d.loc))
		binary.BigEndian.PutUint16(m[6:], uint16(parent))
		ptL, ptM = append(ptL, e...), append(ptM, m...)
	}
	return ptL, ptM
}

// jolietDescriptor is the supplementary descriptor: the primary's dates
// and structure, identifiers in UCS-2, this tree's root and path tables.
func jolietDescriptor(pvd []byte, label string, root *jnode, ptSize, ptLAt, ptMAt int64) []byte {
	svd := bytes.Clone(pvd)
	svd[0] = 2
	copy(svd[88:120], make([]byte, 32))
	copy(svd[88:], "%/E") // UCS-2 level 3
	ucs2Field(svd[8:40], trimLabel(pvd[8:40]))
	ucs2Field(svd[40:72], string([]rune(label)[:min(len([]rune(label)), 16)]))
	for _, fld := range [][2]int{{190, 318}, {318, 446}, {446, 574}, {574, 702}, {702, 739}, {739, 776}, {776, 813}} {
		ucs2Field(svd[fld[0]:fld[1]], trimLabel(pvd[fld[0]:fld[1]]))
	}
	binary.LittleEndian.PutUint32(svd[132:], uint32(ptSize))
	binary.BigEndian.PutUint32(svd[136:], uint32(ptSize))
	binary.LittleEndian.PutUint32(svd[140:], uint32(ptLAt))
	binary.LittleEndian.PutUint32(svd[144:], 0)
	binary.BigEndian.PutUint32(svd[148:], uint32(ptMAt))
	binary.BigEndian.PutUint32(svd[152:], 0)
	copy(svd[156:190], jolietRecord([]byte{0}, root.loc, root.size, root.rec.date, true))
	return svd
}
