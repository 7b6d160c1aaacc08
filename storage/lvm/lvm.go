package lvm

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

// Client runs LVM commands. The zero value runs them through storage/run:
// reports with run.Output, changes with run.Critical (a change runs to its
// end even when strata is interrupted: LVM commits its metadata at once,
// and the caller's journal finishes or undoes the step).
type Client struct {
	// Exec, when set, runs argv instead of storage/run; change says
	// whether the command changes LVM's state. Tests record or replay
	// real outputs with it; an error it returns should be a *run.Error
	// for Classify to read.
	Exec func(ctx context.Context, argv []string, change bool) ([]byte, error)
}

func (c *Client) exec(ctx context.Context, change bool, argv ...string) ([]byte, error) {
	if c != nil && c.Exec != nil {
		return c.Exec(ctx, argv, change)
	}
	if change {
		return nil, run.Critical(ctx, argv...)
	}
	return run.Output(ctx, argv...)
}

// change runs an LVM command that changes state; its failure is
// classified, described as what.
func (c *Client) change(ctx context.Context, what string, argv ...string) error {
	if _, err := c.exec(ctx, true, argv...); err != nil {
		return Classify(err, what)
	}
	return nil
}

// reportArgs is the tail every report command gets: JSON, sizes in bytes
// without a unit, the columns asked for.
func reportArgs(fields []string) []string {
	return []string{"--reportformat", "json", "--units", "b", "--nosuffix", "-o", strings.Join(fields, ",")}
}

// The commands: each is `lvm COMMAND ...` (one binary, one thing to
// install: lvm2), with the arguments built by the *Args functions so that
// tests check them without running LVM.

// VGArgs is the argv of VG.
func VGArgs(vg string) []string {
	return append(append([]string{"lvm", "vgs"}, reportArgs(vgFields)...), vg)
}

// VG reports a volume group: its size, free space and extent size.
func (c *Client) VG(ctx context.Context, vg string) (VG, error) {
	if err := ValidVGName(vg); err != nil {
		return VG{}, err
	}
	out, err := c.exec(ctx, false, VGArgs(vg)...)
	if err != nil {
		return VG{}, Classify(err, fmt.Sprintf("volume group %q", vg))
	}
	vgs, err := ParseVGs(out)
	if err != nil {
		return VG{}, err
	}
	if len(vgs) != 1 {
		return VG{}, storage.Errorf(storage.ErrNotFound, "volume group %q not found (lvm reported %d)", vg, len(vgs))
	}
	return vgs[0], nil
}

// LVsArgs is the argv of LVs: all LVs of vg, or the one named.
func LVsArgs(vg, name string) []string {
	target := vg
	if name != "" {
		target = vg + "/" + name
	}
	return append(append([]string{"lvm", "lvs"}, reportArgs(lvFields)...), target)
}

// LVs reports the visible LVs of vg (not the hidden parts of thin pools).
func (c *Client) LVs(ctx context.Context, vg string) ([]LV, error) {
	if err := ValidVGName(vg); err != nil {
		return nil, err
	}
	out, err := c.exec(ctx, false, LVsArgs(vg, "")...)
	if err != nil {
		return nil, Classify(err, fmt.Sprintf("logical volumes of %q", vg))
	}
	return ParseLVs(out)
}

// LV reports one LV; storage.ErrNotFound when there is none.
func (c *Client) LV(ctx context.Context, vg, name string) (LV, error) {
	if err := validPair(vg, name); err != nil {
		return LV{}, err
	}
	out, err := c.exec(ctx, false, LVsArgs(vg, name)...)
	if err != nil {
		return LV{}, Classify(err, fmt.Sprintf("logical volume %q", vg+"/"+name))
	}
	lvs, err := ParseLVs(out)
	if err != nil {
		return LV{}, err
	}
	if len(lvs) != 1 {
		return LV{}, storage.Errorf(storage.ErrNotFound, "logical volume %q not found", vg+"/"+name)
	}
	return lvs[0], nil
}

func validPair(vg, name string) error {
	if err := ValidVGName(vg); err != nil {
		return err
	}
	// Existing LVs may have names strata would not give (lvm's own rules
	// are looser about old names); only what could break argv is refused.
	if name == "" || name[0] == '-' || strings.ContainsAny(name, "/ \t\n") {
		return storage.Errorf(storage.ErrInvalid, "invalid lv name %q", name)
	}
	return nil
}

func tagArgs(flag string, tags []string) []string {
	var a []string
	for _, t := range tags {
		a = append(a, flag, t)
	}
	return a
}

func sizeArg(bytes int64) string { return strconv.FormatInt(bytes, 10) + "b" }

// CreateOptions describes a new LV.
type CreateOptions struct {
	VG, Name string
	// Size in bytes; LVM rounds it up to whole extents (thick) or
	// chunks (thin).
	Size int64
	// ThinPool, when set, makes a thin LV in that pool of VG; else the LV
	// is thick.
	ThinPool string
	Tags     []string
}

// CreateArgs is the argv of Create.
func CreateArgs(o CreateOptions) []string {
	a := []string{"lvm", "lvcreate", "--yes", "-n", o.Name}
	if o.ThinPool != "" {
		a = append(a, "-V", sizeArg(o.Size), "--thinpool", o.VG+"/"+o.ThinPool)
	} else {
		a = append(a, "-L", sizeArg(o.Size), o.VG)
	}
	return append(a, tagArgs("--addtag", o.Tags)...)
}

// Create makes an LV (thick, or thin in a pool), active.
func (c *Client) Create(ctx context.Context, o CreateOptions) error {
	if err := ValidVGName(o.VG); err != nil {
		return err
	}
	if err := ValidLVName(o.Name); err != nil {
		return err
	}
	if o.Size <= 0 {
		return storage.Errorf(storage.ErrInvalid, "the size of lv %q must be positive", o.Name)
	}
	return c.change(ctx, fmt.Sprintf("create logical volume %q", o.VG+"/"+o.Name), CreateArgs(o)...)
}

// ThinPoolOptions describes a new thin pool.
type ThinPoolOptions struct {
	VG, Name string
	Size     int64 // data size in bytes
	// MetadataSize in bytes; 0 lets LVM choose.
	MetadataSize int64
	// ErrorWhenFull makes writes fail at once when the pool's data is
	// full, instead of queueing (hanging guests) for up to 60 s.
	ErrorWhenFull bool
	Tags          []string
}

// CreateThinPoolArgs is the argv of CreateThinPool.
func CreateThinPoolArgs(o ThinPoolOptions) []string {
	a := []string{"lvm", "lvcreate", "--yes", "--type", "thin-pool", "-n", o.Name, "-L", sizeArg(o.Size)}
	if o.MetadataSize > 0 {
		a = append(a, "--poolmetadatasize", sizeArg(o.MetadataSize))
	}
	return append(append(a, tagArgs("--addtag", o.Tags)...), o.VG)
}

// CreateThinPool makes a thin pool.
func (c *Client) CreateThinPool(ctx context.Context, o ThinPoolOptions) error {
	if err := ValidVGName(o.VG); err != nil {
		return err
	}
	if err := ValidLVName(o.Name); err != nil {
		return err
	}
	if err := c.change(ctx, fmt.Sprintf("create thin pool %q", o.VG+"/"+o.Name), CreateThinPoolArgs(o)...); err != nil {
		return err
	}
	if !o.ErrorWhenFull {
		return nil
	}
	// lvcreate of LVM 2.03.16 refuses --errorwhenfull for thin pools
	// ("unsupported with thin pools"); lvchange sets it.
	on := true
	return c.Change(ctx, o.VG, o.Name, ChangeOptions{ErrorWhenFull: &on})
}

// ThinSnapshotOptions describes a thin snapshot of a thin LV.
type ThinSnapshotOptions struct {
	VG, Origin, Name string
	// ReadOnly makes it read-only (a restore point); else writable (a
	// clone, or a rollback's new live LV).
	ReadOnly bool
	// Activate makes it active now. Without it the snapshot keeps LVM's
	// default for thin snapshots: the activation-skip flag set, inactive
	// (a restore point costs no device until it is used).
	Activate bool
	// KeepSkip keeps the activation-skip flag on an activated snapshot
	// (activated with -K); without it an activated snapshot loses the
	// flag and comes up with its VG like any LV.
	KeepSkip bool
	Tags     []string
}

// ThinSnapshotArgs is the argv of ThinSnapshot.
func ThinSnapshotArgs(o ThinSnapshotOptions) []string {
	a := []string{"lvm", "lvcreate", "--yes", "-s", "-n", o.Name}
	if o.ReadOnly {
		a = append(a, "-p", "r")
	} else {
		a = append(a, "-p", "rw")
	}
	switch {
	case !o.Activate:
		a = append(a, "-k", "y", "-a", "n")
	case o.KeepSkip:
		a = append(a, "-k", "y", "-K", "-a", "y")
	default:
		a = append(a, "-k", "n", "-a", "y")
	}
	return append(append(a, tagArgs("--addtag", o.Tags)...), o.VG+"/"+o.Origin)
}

// ThinSnapshot makes a thin snapshot of a thin LV: O(1), no size.
func (c *Client) ThinSnapshot(ctx context.Context, o ThinSnapshotOptions) error {
	if err := validPair(o.VG, o.Origin); err != nil {
		return err
	}
	if err := ValidLVName(o.Name); err != nil {
		return err
	}
	return c.change(ctx, fmt.Sprintf("thin snapshot %q of %q", o.VG+"/"+o.Name, o.VG+"/"+o.Origin), ThinSnapshotArgs(o)...)
}

// SnapshotOptions describes a classic (thick) snapshot of a thick LV.
type SnapshotOptions struct {
	VG, Origin, Name string
	// Size is the copy-on-write space in bytes; when 0, PercentOrigin
	// (1-100) of the origin's size. A snapshot whose origin changes more
	// than its size becomes invalid; 100 % of the origin (plus LVM's
	// small overhead, which LVM adds itself for 100%ORIGIN) never does.
	Size          int64
	PercentOrigin int
	ReadOnly      bool
	Tags          []string
}

// SnapshotArgs is the argv of Snapshot.
func SnapshotArgs(o SnapshotOptions) []string {
	a := []string{"lvm", "lvcreate", "--yes", "-s", "-n", o.Name}
	if o.Size > 0 {
		a = append(a, "-L", sizeArg(o.Size))
	} else {
		a = append(a, "-l", strconv.Itoa(o.PercentOrigin)+"%ORIGIN")
	}
	if o.ReadOnly {
		a = append(a, "-p", "r")
	}
	return append(append(a, tagArgs("--addtag", o.Tags)...), o.VG+"/"+o.Origin)
}

// Snapshot makes a classic snapshot, active.
func (c *Client) Snapshot(ctx context.Context, o SnapshotOptions) error {
	if err := validPair(o.VG, o.Origin); err != nil {
		return err
	}
	if err := ValidLVName(o.Name); err != nil {
		return err
	}
	if o.Size <= 0 && (o.PercentOrigin < 1 || o.PercentOrigin > 100) {
		return storage.Errorf(storage.ErrInvalid, "snapshot %q needs a size or a percentage of its origin from 1 to 100", o.Name)
	}
	return c.change(ctx, fmt.Sprintf("snapshot %q of %q", o.VG+"/"+o.Name, o.VG+"/"+o.Origin), SnapshotArgs(o)...)
}

// ExtendArgs is the argv of Extend.
func ExtendArgs(vg, name string, size int64) []string {
	return []string{"lvm", "lvextend", "--yes", "-L", sizeArg(size), vg + "/" + name}
}

// Extend grows an LV (a volume, or a thin pool's data) to size bytes,
// rounded up as at creation. There is no shrink: lvreduce cuts off
// whatever the guest kept past the new end.
func (c *Client) Extend(ctx context.Context, vg, name string, size int64) error {
	if err := validPair(vg, name); err != nil {
		return err
	}
	if size <= 0 {
		return storage.Errorf(storage.ErrInvalid, "the new size of lv %q must be positive", vg+"/"+name)
	}
	return c.change(ctx, fmt.Sprintf("extend logical volume %q", vg+"/"+name), ExtendArgs(vg, name, size)...)
}

// RenameArgs is the argv of Rename.
func RenameArgs(vg, from, to string) []string { return []string{"lvm", "lvrename", vg, from, to} }

// Rename renames an LV within its VG (its device path changes at once,
// even while active).
func (c *Client) Rename(ctx context.Context, vg, from, to string) error {
	if err := validPair(vg, from); err != nil {
		return err
	}
	if err := ValidLVName(to); err != nil {
		return err
	}
	return c.change(ctx, fmt.Sprintf("rename logical volume %q to %q", vg+"/"+from, to), RenameArgs(vg, from, to)...)
}

// RemoveArgs is the argv of Remove.
func RemoveArgs(vg, name string) []string {
	return []string{"lvm", "lvremove", "--yes", vg + "/" + name}
}

// Remove removes an LV (deactivating it first); storage.ErrInUse when
// its device is open.
func (c *Client) Remove(ctx context.Context, vg, name string) error {
	if err := validPair(vg, name); err != nil {
		return err
	}
	return c.change(ctx, fmt.Sprintf("remove logical volume %q", vg+"/"+name), RemoveArgs(vg, name)...)
}

// MergeArgs is the argv of Merge: LVM polls the merge itself (no
// lvmpolld needed) every second until it is done.
func MergeArgs(vg, snapshot string) []string {
	return []string{"lvm", "lvconvert", "--yes", "--merge", "--interval", "1", vg + "/" + snapshot}
}

// Merge merges a classic snapshot into its origin, which consumes the
// snapshot. When the origin is in use (open, mounted) LVM only marks the
// merge, which happens at the origin's next activation: deferred is then
// true, the origin reads Attr.Merging and the snapshot lives on as a
// hidden LV ("[name]" in lvs -a, not found by name) until the merge is
// done.
func (c *Client) Merge(ctx context.Context, vg, snapshot string) (deferred bool, err error) {
	snap, err := c.LV(ctx, vg, snapshot)
	if err != nil {
		return false, err
	}
	if !snap.Attr.Snapshot || snap.Origin == "" {
		return false, storage.Errorf(storage.ErrInvalid, "%q is not a classic snapshot: only those merge into their origin", vg+"/"+snapshot)
	}
	if err := c.change(ctx, fmt.Sprintf("merge snapshot %q", vg+"/"+snapshot), MergeArgs(vg, snapshot)...); err != nil {
		return false, err
	}
	origin, err := c.LV(ctx, vg, snap.Origin)
	if err != nil {
		return false, err
	}
	return origin.Attr.Merging, nil
}

// ActivateArgs is the argv of Activate (-K: also an LV with the
// activation-skip flag) and of Deactivate.
func ActivateArgs(vg, name string, on bool) []string {
	if on {
		return []string{"lvm", "lvchange", "-a", "y", "-K", vg + "/" + name}
	}
	return []string{"lvm", "lvchange", "-a", "n", vg + "/" + name}
}

// Activate activates an LV, even one with the activation-skip flag.
func (c *Client) Activate(ctx context.Context, vg, name string) error {
	if err := validPair(vg, name); err != nil {
		return err
	}
	return c.change(ctx, fmt.Sprintf("activate logical volume %q", vg+"/"+name), ActivateArgs(vg, name, true)...)
}

// Deactivate deactivates an LV; storage.ErrInUse when it is open.
func (c *Client) Deactivate(ctx context.Context, vg, name string) error {
	if err := validPair(vg, name); err != nil {
		return err
	}
	return c.change(ctx, fmt.Sprintf("deactivate logical volume %q", vg+"/"+name), ActivateArgs(vg, name, false)...)
}

// ChangeOptions are the lvchange settings Change sets; nil leaves one as
// it is.
type ChangeOptions struct {
	AddTags, DelTags []string
	Writable         *bool // -p rw / -p r
	SkipActivation   *bool // -k y / -k n
	// ErrorWhenFull: a thin pool's writes fail at once when its data is
	// full (y), or queue (n).
	ErrorWhenFull *bool
}

// ChangeArgs is the argv of Change.
func ChangeArgs(vg, name string, o ChangeOptions) []string {
	a := []string{"lvm", "lvchange"}
	a = append(a, tagArgs("--addtag", o.AddTags)...)
	a = append(a, tagArgs("--deltag", o.DelTags)...)
	if o.Writable != nil {
		a = append(a, "-p", map[bool]string{true: "rw", false: "r"}[*o.Writable])
	}
	if o.SkipActivation != nil {
		a = append(a, "-k", map[bool]string{true: "y", false: "n"}[*o.SkipActivation])
	}
	if o.ErrorWhenFull != nil {
		a = append(a, "--errorwhenfull", map[bool]string{true: "y", false: "n"}[*o.ErrorWhenFull])
	}
	return append(a, vg+"/"+name)
}

// Change sets an LV's tags, permission, activation-skip flag or (thin
// pool) behaviour when full in one
// command (one metadata commit).
func (c *Client) Change(ctx context.Context, vg, name string, o ChangeOptions) error {
	if err := validPair(vg, name); err != nil {
		return err
	}
	for _, t := range append(append([]string{}, o.AddTags...), o.DelTags...) {
		if err := ValidTag(t); err != nil {
			return err
		}
	}
	if len(o.AddTags)+len(o.DelTags) == 0 && o.Writable == nil && o.SkipActivation == nil && o.ErrorWhenFull == nil {
		return nil
	}
	return c.change(ctx, fmt.Sprintf("change logical volume %q", vg+"/"+name), ChangeArgs(vg, name, o)...)
}

// ValidTag reports whether LVM accepts t as a tag: 1-1024 characters of
// [A-Za-z0-9_+.-/=!:&#], not starting with '-'.
func ValidTag(t string) error {
	if t == "" || len(t) > 1024 || t[0] == '-' {
		return storage.Errorf(storage.ErrInvalid, "invalid lvm tag %q", t)
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_+.-/=!:&#", c)) {
			return storage.Errorf(storage.ErrInvalid, "invalid lvm tag %q: character %q is not allowed", t, c)
		}
	}
	return nil
}

// CreateVGArgs is the argv of CreateVG.
func CreateVGArgs(vg string, devices []string) []string {
	return append([]string{"lvm", "vgcreate", "--yes", vg}, devices...)
}

// CreateVG makes a VG on block devices (vgcreate makes them PVs). strata
// never does this to a user's disks; tests and benchmarks do.
func (c *Client) CreateVG(ctx context.Context, vg string, devices ...string) error {
	if err := ValidVGName(vg); err != nil {
		return err
	}
	if len(devices) == 0 {
		return storage.Errorf(storage.ErrInvalid, "volume group %q needs at least one device", vg)
	}
	return c.change(ctx, fmt.Sprintf("create volume group %q", vg), CreateVGArgs(vg, devices)...)
}

// Version returns LVM's version ("2.03.16(2) (2022-05-18)").
func (c *Client) Version(ctx context.Context) (string, error) {
	out, err := c.exec(ctx, false, "lvm", "version")
	if err != nil {
		return "", Classify(err, "lvm version")
	}
	return ParseVersion(out)
}

// ParseVersion reads the "LVM version:" line of `lvm version`.
func ParseVersion(out []byte) (string, error) {
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "LVM version:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("lvm version printed no version: %q", out)
}
