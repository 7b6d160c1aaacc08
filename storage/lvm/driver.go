package lvm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// Name is the driver's name in pool records.
const Name = "lvm"

// Default guardrails (storage.LVMPool's zero values).
const (
	DefaultDataLimit       = 85.0
	DefaultMetadataLimit   = 75.0
	DefaultSnapshotPercent = 100
)

// Driver is the LVM pool driver (see the package doc, "The pool
// driver"). Its zero value runs LVM through storage/run and reads
// device-mapper from the kernel; Client and DM, when set, do it
// otherwise (tests).
type Driver struct {
	Client *Client
	// DM answers device-mapper queries instead of QueryDM.
	DM func(DMQuery) (DMDevice, error)
}

var (
	_ storage.Driver         = Driver{}
	_ storage.PoolAdder      = Driver{}
	_ storage.PoolOverlapper = Driver{}
)

func (d Driver) dm(q DMQuery) (DMDevice, error) {
	if d.DM != nil {
		return d.DM(q)
	}
	return QueryDM(q)
}

func (d Driver) c() *Client {
	if d.Client != nil {
		return d.Client
	}
	return &Client{}
}

// lvmPool is a pool record's LVM part, checked.
func lvmPool(p storage.Pool) (*storage.LVMPool, error) {
	if p.LVM == nil || p.LVM.VG == "" {
		return nil, storage.Errorf(storage.ErrInvalid, "pool %q has no volume group in its record: add lvm pools with 'strata pool add NAME --driver lvm --vg VG'", p.Name)
	}
	return p.LVM, nil
}

func limits(lp *storage.LVMPool) (data, meta float64) {
	data, meta = lp.DataLimit, lp.MetadataLimit
	if data <= 0 {
		data = DefaultDataLimit
	}
	if meta <= 0 {
		meta = DefaultMetadataLimit
	}
	return data, meta
}

func snapshotPercent(lp *storage.LVMPool) int {
	if lp == nil || lp.SnapshotPercent <= 0 || lp.SnapshotPercent > 100 {
		return DefaultSnapshotPercent
	}
	return lp.SnapshotPercent
}

// DevPath is the device path of an LV: /dev/VG/LV.
func DevPath(vg, lv string) string { return "/dev/" + vg + "/" + lv }

// SplitDevPath reverses DevPath; ok is false for anything else.
func SplitDevPath(path string) (vg, lv string, ok bool) {
	rest, found := strings.CutPrefix(path, "/dev/")
	if !found {
		return "", "", false
	}
	vg, lv, found = strings.Cut(rest, "/")
	if !found || vg == "" || lv == "" || strings.Contains(lv, "/") || ValidVGName(vg) != nil || validPair(vg, lv) != nil {
		return "", "", false
	}
	return vg, lv, true
}

func volumeLV(v storage.Volume) (vg, lv string, err error) {
	vg, lv, ok := SplitDevPath(v.Path)
	if !ok {
		return "", "", storage.Errorf(storage.ErrInvalid, "volume %q is at %q, which is not a logical volume (/dev/VG/LV)", v.Name, v.Path)
	}
	return vg, lv, nil
}

// ref is a point's or image's "VG/LV" (PointRef.Ref).
func splitRef(ref string) (vg, lv string, err error) {
	vg, lv, ok := strings.Cut(ref, "/")
	if !ok || validPair(vg, lv) != nil {
		return "", "", storage.Errorf(storage.ErrInvalid, "invalid lvm point reference %q: want VG/LV", ref)
	}
	return vg, lv, nil
}

// lookup reports an LV, or ok false when there is none.
func (d Driver) lookup(ctx context.Context, vg, lv string) (LV, bool, error) {
	l, err := d.c().LV(ctx, vg, lv)
	if errors.Is(err, storage.ErrNotFound) {
		return LV{}, false, nil
	}
	if err != nil {
		return LV{}, false, err
	}
	return l, true, nil
}

var strataTags = []string{TagStrata}

// AddPool implements storage.PoolAdder: the VG (and thin pool) must
// exist; error-when-full is set when asked and recommended when not.
func (d Driver) AddPool(ctx context.Context, p *storage.Pool) error {
	lp, err := lvmPool(*p)
	if err != nil {
		return err
	}
	if lp.SnapshotPercent < 0 || lp.SnapshotPercent > 100 {
		return storage.Errorf(storage.ErrInvalid, "snapshot size %d%% is out of range: give 1 to 100 (percent of each volume)", lp.SnapshotPercent)
	}
	for _, l := range []float64{lp.DataLimit, lp.MetadataLimit} {
		if l < 0 || l > 100 {
			return storage.Errorf(storage.ErrInvalid, "thin pool limit %g%% is out of range: give 1 to 100", l)
		}
	}
	if lp.ThinPool == "" && lp.ErrorWhenFull {
		return storage.Errorf(storage.ErrInvalid, "--errorwhenfull applies to thin pools: give --thinpool too")
	}
	if lp.ThinPool != "" {
		if err := ValidThinPoolName(lp.ThinPool); err != nil {
			return err
		}
	}
	if _, err := d.c().VG(ctx, lp.VG); err != nil {
		return err
	}
	if lp.ThinPool == "" {
		if snapshotPercent(lp) < 100 {
			log.Warn().Str("pool", p.Name).Int("snapshot_percent", snapshotPercent(lp)).Msg("restore points smaller than their volume become invalid when the guest changes more than that: strata reports them invalid and refuses to roll back to them")
		}
		return nil
	}
	tp, err := d.c().LV(ctx, lp.VG, lp.ThinPool)
	if err != nil {
		return err
	}
	if !tp.Attr.ThinPool {
		return storage.Errorf(storage.ErrInvalid, "%q is not a thin pool (lv_attr %s): name a thin pool with --thinpool, or leave it out for thick volumes", tp.FullName(), tp.Attr.Raw)
	}
	if lp.ErrorWhenFull && tp.WhenFull != "error" {
		on := true
		if err := d.c().Change(ctx, lp.VG, lp.ThinPool, ChangeOptions{ErrorWhenFull: &on}); err != nil {
			return err
		}
	} else if tp.WhenFull != "error" {
		log.Warn().Str("thin_pool", tp.FullName()).Msg("the thin pool queues writes when its data is full, which hangs guests: add the pool with --errorwhenfull (lvchange --errorwhenfull y) so that they get I/O errors instead")
	}
	return nil
}

// Overlap implements storage.PoolOverlapper: a pool is a VG's thick LVs
// or one thin pool's thin LVs, so two pools on the same VG and thin pool
// (or both thick on one VG) would hold the same LVs under two names, with
// two sets of guardrail limits. A thick pool and thin pools on one VG,
// or pools on different thin pools of it, do not overlap: each LV is of
// one kind and, if thin, of one thin pool.
func (Driver) Overlap(existing, p storage.Pool) error {
	a, b := existing.LVM, p.LVM
	if a == nil || b == nil || a.VG != b.VG || a.ThinPool != b.ThinPool {
		return nil
	}
	if b.ThinPool != "" {
		return storage.Errorf(storage.ErrExists, "thin pool %s/%s is already pool %q: use that pool (strata volume create --pool %s), or give another --thinpool", b.VG, b.ThinPool, existing.Name, existing.Name)
	}
	return storage.Errorf(storage.ErrExists, "the thick volumes of volume group %q are already pool %q: use that pool (strata volume create --pool %s), or give a --thinpool or another --vg", b.VG, existing.Name, existing.Name)
}

// Status implements storage.Driver: the VG's (thick) or thin pool's
// (thin) space, and its usage.
func (d Driver) Status(ctx context.Context, p storage.Pool) (storage.PoolStatus, error) {
	st := storage.PoolStatus{Pool: p, Filesystem: "lvm"}
	lp, err := lvmPool(p)
	if err != nil {
		return st, err
	}
	vg, err := d.c().VG(ctx, lp.VG)
	if err != nil {
		return st, err
	}
	ls := &storage.LVMStatus{VGSize: vg.Size, VGFree: vg.Free}
	st.LVMStatus = ls
	st.TotalBytes, st.FreeBytes = uint64(vg.Size), uint64(vg.Free)
	if lp.ThinPool == "" {
		return st, nil
	}
	st.Filesystem = "lvm-thin"
	st.Capabilities = storage.Capabilities{Sparse: true, O1Snapshots: true}
	tp, err := d.c().LV(ctx, lp.VG, lp.ThinPool)
	if err != nil {
		return st, err
	}
	ls.ThinSize, ls.WhenFull = tp.Size, tp.WhenFull
	ls.DataLimit, ls.MetadataLimit = limits(lp)
	if tp.DataPercent != nil {
		ls.DataPercent = *tp.DataPercent
	}
	if tp.MetadataPercent != nil {
		ls.MetadataPercent = *tp.MetadataPercent
	}
	st.TotalBytes = uint64(tp.Size)
	st.FreeBytes = uint64(thinFree(tp))
	return st, nil
}

func thinFree(tp LV) int64 {
	used := 0.0
	if tp.DataPercent != nil {
		used = *tp.DataPercent
	}
	return int64(float64(tp.Size) * (100 - used) / 100)
}

// Features implements storage.Driver. A thin clone is a thin snapshot
// of its golden image: O(1), yet it does not depend on the golden (thin
// snapshots are independent LVs), so it is a full clone at O(1).
func (d Driver) Features(_ context.Context, p storage.Pool) (storage.Features, error) {
	lp, err := lvmPool(p)
	if err != nil {
		return storage.Features{}, err
	}
	f := storage.Features{Points: pointMethods, FreeSpace: true, BlockDevices: true}
	f.FullCloneO1 = lp.ThinPool != ""
	return f, nil
}

// FreeBytes implements storage.Driver: the VG's free space (thick), or
// the thin pool's data not yet used (thin).
func (d Driver) FreeBytes(ctx context.Context, p storage.Pool) (int64, error) {
	lp, err := lvmPool(p)
	if err != nil {
		return 0, err
	}
	if lp.ThinPool == "" {
		vg, err := d.c().VG(ctx, lp.VG)
		if err != nil {
			return 0, err
		}
		return vg.Free, nil
	}
	tp, err := d.c().LV(ctx, lp.VG, lp.ThinPool)
	if err != nil {
		return 0, err
	}
	return thinFree(tp), nil
}

// checkVGFree refuses what would take more than the VG has free.
func (d Driver) checkVGFree(ctx context.Context, vgName string, need int64, what string) error {
	vg, err := d.c().VG(ctx, vgName)
	if err != nil {
		return err
	}
	if need > vg.Free {
		return vgFull(vg, need, what, nil)
	}
	return nil
}

func vgFull(vg VG, need int64, what string, cause error) error {
	msg := fmt.Sprintf("%s needs %s but volume group %q has %s free (of %s): add space (vgextend) or remove logical volumes or restore points",
		what, storage.FormatSize(need), vg.Name, storage.FormatSize(vg.Free), storage.FormatSize(vg.Size))
	if cause != nil {
		return storage.Errorf(storage.ErrPrecondition, "%s (%w)", msg, cause)
	}
	return storage.Errorf(storage.ErrPrecondition, "%s", msg)
}

// spaceRefused is the guardrail for thick LVs: LVM's own refusal, which
// is atomic (two strata commands cannot both count the same free
// extents), told with the numbers. Only a refusal costs a report of the
// VG; any other error is returned as it is.
func (d Driver) spaceRefused(ctx context.Context, err error, vgName string, need int64, what string) error {
	if !errors.Is(err, ErrNoSpace) {
		return err
	}
	vg, verr := d.c().VG(ctx, vgName)
	if verr != nil {
		return err
	}
	return vgFull(vg, need, what, err)
}

// thinUse is how full a thin pool is, from lvs or from its
// device-mapper status.
type thinUse struct {
	name       string   // VG/POOL
	data, meta *float64 // percent used
	health     byte     // lv_attr's health letter: '-' fine
	state      string   // where health came from, for a message
}

func thinUseOfLV(tp LV) thinUse {
	return thinUse{name: tp.FullName(), data: tp.DataPercent, meta: tp.MetadataPercent, health: tp.Attr.Health, state: "lv_attr " + tp.Attr.Raw}
}

func thinUseOfStatus(name string, st ThinPoolStatus) thinUse {
	data, meta := st.DataPercent(), st.MetadataPercent()
	u := thinUse{name: name, health: st.Health(), state: "device-mapper mode " + st.Mode}
	if st.TotalData > 0 {
		u.data, u.meta = &data, &meta
	}
	return u
}

// thinPoolStatus reads the status of the thin-pool target of device
// dev (or, dev 0, of name); ok is false when it is not one.
func (d Driver) thinPoolStatus(q DMQuery) (thinUse, bool) {
	dev, err := d.dm(q)
	if err != nil {
		return thinUse{}, false
	}
	t, ok := dev.Single("thin-pool")
	if !ok {
		return thinUse{}, false
	}
	st, err := ParseThinPoolStatus(t.Params)
	if err != nil {
		return thinUse{}, false
	}
	name := dev.Name
	if vg, lv, _, ok := SplitDMName(dev.Name); ok {
		name = vg + "/" + lv
	}
	return thinUseOfStatus(name, st), true
}

// thinPoolUse is how full thin pool vg/thin is: from device-mapper while
// it is active (its "-tpool" layer once it has thin LVs, the pool's own
// device before), else from lvs.
func (d Driver) thinPoolUse(ctx context.Context, vg, thin string) (thinUse, error) {
	for _, n := range []string{dmName(vg, thin) + "-tpool", dmName(vg, thin)} {
		if u, ok := d.thinPoolStatus(DMQuery{Name: n}); ok {
			u.name = vg + "/" + thin
			return u, nil
		}
	}
	tp, err := d.c().LV(ctx, vg, thin)
	if err != nil {
		return thinUse{}, err
	}
	return thinUseOfLV(tp), nil
}

// activeLV is what device-mapper tells of an active LV.
type activeLV struct {
	thin    bool
	poolDev uint64 // thin: its pool's thin-pool device
	size    int64
}

// active reads an active LV's device-mapper table; ok is false when it
// has no device (inactive) or its table is not read (ask lvs).
func (d Driver) activeLV(vg, lv string) (activeLV, bool) {
	num, ok := devOf(DevPath(vg, lv))
	if !ok {
		return activeLV{}, false
	}
	dev, err := d.dm(DMQuery{Dev: num, Table: true})
	if err != nil || len(dev.Targets) == 0 {
		return activeLV{}, false
	}
	var a activeLV
	for _, t := range dev.Targets {
		a.size += int64(t.Length) * 512
	}
	if t, ok := dev.Single("thin"); ok {
		f := strings.Fields(t.Params)
		if len(f) < 2 {
			return activeLV{}, false
		}
		if a.poolDev, ok = parseDevNum(f[0]); !ok {
			return activeLV{}, false
		}
		a.thin = true
	}
	for _, t := range dev.Targets {
		if t.Type == "thin" && !a.thin {
			return activeLV{}, false // a thin target among others: not an LV strata knows
		}
	}
	return a, true
}

// checkThin refuses new data in pool p's thin pool past its limits.
func (d Driver) checkThin(ctx context.Context, p storage.Pool, what string) error {
	lp, err := lvmPool(p)
	if err != nil || lp.ThinPool == "" {
		return err
	}
	return d.checkThinPool(ctx, p, lp.VG, lp.ThinPool, what)
}

// checkThinPool refuses new data in thin pool vg/thin past pool p's
// limits (the defaults when p has none).
func (d Driver) checkThinPool(ctx context.Context, p storage.Pool, vg, thin, what string) error {
	u, err := d.thinPoolUse(ctx, vg, thin)
	if err != nil {
		return err
	}
	return thinLimits(p, u, what)
}

// thinLimits refuses new data in a thin pool used as u past pool p's
// limits.
func thinLimits(p storage.Pool, u thinUse, what string) error {
	lp := p.LVM
	if lp == nil {
		lp = &storage.LVMPool{}
	}
	dl, ml := limits(lp)
	if u.data != nil && *u.data >= dl {
		return storage.Errorf(storage.ErrPrecondition, "%s refused: thin pool %q is %.2f%% full (data), at or over strata's limit of %g%% for pool %q: extend it (lvextend -L +SIZE %s) or delete volumes or restore points",
			what, u.name, *u.data, dl, p.Name, u.name)
	}
	if u.meta != nil && *u.meta >= ml {
		return storage.Errorf(storage.ErrPrecondition, "%s refused: the metadata of thin pool %q is %.2f%% full, at or over strata's limit of %g%% for pool %q: extend it (lvextend --poolmetadatasize +SIZE %s) or delete restore points",
			what, u.name, *u.meta, ml, p.Name, u.name)
	}
	if u.health == 'D' || u.health == 'M' || u.health == 'F' {
		return storage.Errorf(storage.ErrPrecondition, "%s refused: thin pool %q reports it is out of space or failed (%s): repair or extend it first", what, u.name, u.state)
	}
	return nil
}

// VolumePath implements storage.Driver: /dev/VG/strata.vol.ID (golden
// images too).
func (Driver) VolumePath(p storage.Pool, id string, _ storage.Format) string {
	vg := ""
	if p.LVM != nil {
		vg = p.LVM.VG
	}
	name, err := LVName(KindVolume, id)
	if err != nil {
		return "" // an ID strata never makes; Create refuses ""
	}
	return DevPath(vg, name)
}

func rawOnly(f storage.Format, what string) error {
	if f != storage.FormatRaw {
		return storage.Errorf(storage.ErrNotSupported, "%s: lvm pools hold raw volumes only (a logical volume is a raw block device); use --format raw", what)
	}
	return nil
}

// Create implements storage.Driver: a thin LV in the pool's thin pool,
// or a thick LV in its VG, tagged strata, active.
func (d Driver) Create(ctx context.Context, p storage.Pool, path string, f storage.Format, size int64) error {
	if err := rawOnly(f, "create "+path); err != nil {
		return err
	}
	lp, err := lvmPool(p)
	if err != nil {
		return err
	}
	vg, lv, ok := SplitDevPath(path)
	if !ok || vg != lp.VG {
		return storage.Errorf(storage.ErrInvalid, "%q is not a logical volume of volume group %q", path, lp.VG)
	}
	if lp.ThinPool != "" {
		if err := d.checkThin(ctx, p, "a new volume"); err != nil {
			return err
		}
		return d.c().Create(ctx, CreateOptions{VG: vg, Name: lv, Size: size, ThinPool: lp.ThinPool, Tags: strataTags})
	}
	err = d.c().Create(ctx, CreateOptions{VG: vg, Name: lv, Size: size, Tags: strataTags})
	return d.spaceRefused(ctx, err, vg, size, "a new volume")
}

// Resize implements storage.Driver: grow only (lvextend); LVM would cut
// off whatever the guest kept past a smaller size.
func (d Driver) Resize(ctx context.Context, p storage.Pool, path string, f storage.Format, size int64, shrink bool) error {
	vg, lv, ok := SplitDevPath(path)
	if !ok {
		return storage.Errorf(storage.ErrInvalid, "%q is not a logical volume", path)
	}
	l, err := d.c().LV(ctx, vg, lv)
	if err != nil {
		return err
	}
	if size == l.Size {
		return nil
	}
	if size < l.Size {
		return storage.Errorf(storage.ErrNotSupported, "logical volume %q cannot shrink from %d to %d bytes through strata (lvreduce cuts off the end of the disk): shrink the guest's filesystem and the lv yourself, or copy the volume", l.FullName(), l.Size, size)
	}
	if !l.Attr.Thin {
		return d.spaceRefused(ctx, d.c().Extend(ctx, vg, lv, size), vg, size-l.Size, "growing "+l.FullName())
	}
	if err := d.checkThin(ctx, p, "growing "+l.FullName()); err != nil {
		return err
	}
	return d.c().Extend(ctx, vg, lv, size)
}

// Backing implements storage.Driver: an LV reads from nothing else (a
// thin clone shares blocks with its golden but does not depend on it).
func (Driver) Backing(context.Context, storage.Pool, storage.Volume) (string, error) {
	return "", nil
}

// Delete implements storage.Driver: only LVs strata made (TagStrata),
// an imported one only with purge; absent is success.
func (d Driver) Delete(ctx context.Context, _ storage.Pool, v storage.Volume, purge bool) error {
	vg, lv, err := volumeLV(v)
	if err != nil {
		return err
	}
	l, ok, err := d.lookup(ctx, vg, lv)
	if err != nil || !ok {
		return err
	}
	if !l.HasTag(TagStrata) {
		log.Info().Str("lv", l.FullName()).Msg("the volume is deleted from the catalog; its logical volume was not made by strata and is left alone")
		return nil
	}
	if v.Imported && !purge {
		log.Info().Str("lv", l.FullName()).Msg("the volume is deleted from the catalog; its imported logical volume is left (--purge removes it)")
		return nil
	}
	return d.c().Remove(ctx, vg, lv)
}

// Fingerprint implements storage.Driver. An LV's state is told by the
// device-mapper UUID of its device (LVM's VG and LV UUIDs: a rename
// keeps it, a replacement by another LV changes it), its size, and the
// sectors written to its device since it was activated
// (/sys/dev/block/M:m/stat): a write changes it, and so does a
// reactivation that follows writes (the count starts again), which
// recovery reads as "changed" — the safe side. An inactive LV has no
// device: UUID (from lvs) and size only.
func (d Driver) Fingerprint(_ storage.Pool, v storage.Volume) (storage.Fingerprint, bool, error) {
	vg, lv, err := volumeLV(v)
	if err != nil {
		return storage.Fingerprint{}, false, err
	}
	return d.fingerprintLV(vg, lv)
}

func (d Driver) fingerprintLV(vg, lv string) (storage.Fingerprint, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(DevPath(vg, lv), &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
		sys := fmt.Sprintf("/sys/dev/block/%d:%d/", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		uuid, err1 := os.ReadFile(sys + "dm/uuid")
		size, err2 := os.ReadFile(sys + "size")
		stat, err3 := os.ReadFile(sys + "stat")
		if err := errors.Join(err1, err2, err3); err == nil {
			fp := storage.Fingerprint{Ino: hash(strings.TrimSpace(string(uuid)))}
			sectors, _ := strconv.ParseInt(strings.TrimSpace(string(size)), 10, 64)
			fp.Size = sectors * 512
			// stat field 7: sectors written (Documentation/block/stat.rst).
			if f := strings.Fields(string(stat)); len(f) > 6 {
				fp.Mtime, _ = strconv.ParseInt(f[6], 10, 64)
			}
			return fp, true, nil
		}
	}
	l, ok, err := d.lookup(context.Background(), vg, lv)
	if err != nil || !ok {
		return storage.Fingerprint{}, false, err
	}
	return storage.Fingerprint{Ino: hash("LVM-" + l.UUID), Size: l.Size, Mtime: -1}, true, nil
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(strings.ReplaceAll(s, "-", "")))
	return h.Sum64()
}

// Locations implements storage.Driver: the LV's path, the device node
// it leads to now (in-use checks follow no links: /dev/VG/LV is one),
// its device-mapper name, and the names a rollback gives it for a
// moment.
func (Driver) Locations(_ storage.Pool, v storage.Volume) []string {
	out := []string{v.Path}
	vg, lv, ok := SplitDevPath(v.Path)
	if !ok {
		return out
	}
	if real, err := filepath.EvalSymlinks(v.Path); err == nil && real != v.Path {
		out = append(out, real)
	}
	out = append(out, filepath.Join("/dev/mapper", dmName(vg, lv)))
	if aside, err := LVName(KindAside, v.ID, "restore"); err == nil {
		out = append(out, DevPath(vg, aside))
	}
	return out
}

// dmName is device-mapper's name of an LV: VG-LV with '-' doubled.
func dmName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}
