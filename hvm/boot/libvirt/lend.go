package libvirt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog/log"
	"github.com/strata-vm/strata/hvm/boot"
	"libvirt.org/go/libvirtxml"
)

// libvirt's dynamic ownership chowns every image of a guest to its QEMU
// user at start, but at stop gives back only the writable top images: a
// read-only image (an install CD) or a backing file (a golden image under
// a linked clone) stays the QEMU user's, readable by every guest libvirt
// runs, since libvirt cannot tell whether another domain still uses it.
// strata knows which of its guests run, so it gives those files back
// itself when the guest that borrowed them stops and no running domain
// holds them.

// lentFile is a file libvirt handed to the guest's QEMU and will not give
// back.
type lentFile struct {
	Path string `json:"path"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

// Keys in RunState.Extra.
const (
	extraLent  = "lent"       // JSON list of lentFile
	extraLabel = "image_user" // uid:gid libvirt gave the images
)

// owners records the owner of each read-only disk's file before start.
func owners(g *boot.Guest) map[string][2]int {
	out := map[string][2]int{}
	for _, k := range g.Def.Disks {
		if !k.ReadOnly() {
			continue
		}
		if _, p := k.Source(); p != "" {
			if st, err := os.Stat(p); err == nil {
				s := st.Sys().(*syscall.Stat_t)
				out[p] = [2]int{int(s.Uid), int(s.Gid)}
			}
		}
	}
	return out
}

// imageLabel is the uid and gid libvirt's DAC driver gave the images of
// a running domain (<seclabel model='dac'><imagelabel>+UID:+GID).
func imageLabel(x *libvirtxml.Domain) (uid, gid int, ok bool) {
	for _, s := range x.SecLabel {
		if s.Model != "dac" || s.ImageLabel == "" {
			continue
		}
		u, g, found := strings.Cut(s.ImageLabel, ":")
		uid, err1 := strconv.Atoi(strings.TrimPrefix(u, "+"))
		gid, err2 := strconv.Atoi(strings.TrimPrefix(g, "+"))
		if found && err1 == nil && err2 == nil {
			return uid, gid, true
		}
	}
	return 0, 0, false
}

// lent lists what libvirt will not give back: the files of read-only
// disks and every backing file, each with the owner to give it back to:
// the one it had before start, or, for a file already lent to another
// guest then (or a backing file, first seen after start), its directory's.
func lent(x *libvirtxml.Domain, before map[string][2]int) []lentFile {
	uid, gid, ok := imageLabel(x)
	if !ok || x.Devices == nil {
		return nil
	}
	var out []lentFile
	add := func(src *libvirtxml.DomainDiskSource) {
		if src == nil || src.File == nil || src.File.File == "" {
			return
		}
		p := src.File.File
		if slices.ContainsFunc(out, func(l lentFile) bool { return l.Path == p }) {
			return
		}
		o, ok := before[p]
		if !ok || (o[0] == uid && o[1] == gid) {
			st, err := os.Stat(filepath.Dir(p))
			if err != nil {
				return
			}
			s := st.Sys().(*syscall.Stat_t)
			o = [2]int{int(s.Uid), int(s.Gid)}
		}
		out = append(out, lentFile{Path: p, UID: o[0], GID: o[1]})
	}
	for _, k := range x.Devices.Disks {
		if k.ReadOnly != nil {
			add(k.Source)
		}
		for b := k.BackingStore; b != nil; b = b.BackingStore {
			add(b.Source)
		}
	}
	return out
}

// recordLent keeps the lent files in the run state.
func recordLent(rs *boot.RunState, x *libvirtxml.Domain, before map[string][2]int) {
	ls := lent(x, before)
	if len(ls) == 0 {
		return
	}
	uid, gid, _ := imageLabel(x)
	b, err := json.Marshal(ls)
	if err != nil {
		return
	}
	rs.Extra[extraLent] = string(b)
	rs.Extra[extraLabel] = fmt.Sprintf("%d:%d", uid, gid)
}

// giveBack returns the files the stopped guest borrowed to their owners,
// except those a running domain holds (it borrowed them too) and those
// whose owner changed since (not libvirt's doing).
func (d *Driver) giveBack(c *conn, rs *boot.RunState) {
	if rs == nil || rs.Extra[extraLent] == "" {
		return
	}
	var ls []lentFile
	if json.Unmarshal([]byte(rs.Extra[extraLent]), &ls) != nil {
		return
	}
	var label [2]int
	if _, err := fmt.Sscanf(rs.Extra[extraLabel], "%d:%d", &label[0], &label[1]); err != nil {
		return
	}
	held := map[string]bool{}
	if running, err := d.listRunning(c); err == nil {
		for _, r := range running {
			for _, p := range r.Disks {
				held[p] = true
			}
		}
	} else {
		return // cannot tell who holds what: leave them
	}
	for _, l := range ls {
		st, err := os.Stat(l.Path)
		if err != nil || held[l.Path] {
			continue
		}
		s := st.Sys().(*syscall.Stat_t)
		if int(s.Uid) != label[0] || int(s.Gid) != label[1] {
			continue
		}
		if err := os.Chown(l.Path, l.UID, l.GID); err != nil {
			log.Warn().Err(err).Str("file", l.Path).Msg("cannot give a file libvirt lent to a guest back to its owner")
		}
	}
}
