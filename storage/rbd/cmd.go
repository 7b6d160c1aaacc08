package rbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

// BusyRetries is how many times a command that failed with EBUSY runs
// again (after BusyWait, doubling) before the failure is returned: a
// client handing over an image's exclusive lock makes EBUSY transient;
// watchers, children and protected snapshots keep it.
var (
	BusyRetries = 3
	BusyWait    = 100 * time.Millisecond
)

// MountTimeout bounds how long a command waits for the cluster's
// monitors (rbd's default is 300 s), and OpTimeout how long one object
// operation may wait for its OSD (librados' default is forever: a full
// cluster blocks writes until space is freed): an unreachable or full
// cluster is reported (busy), not a hang. Every operation strata runs is
// made of object operations far shorter than OpTimeout.
const (
	MountTimeout = 15
	OpTimeout    = 120
)

// Features are the image features strata asks for (whatever the
// cluster's rbd_default_features say): layering for clones,
// exclusive-lock + object-map + fast-diff for cheap usage and diffs,
// deep-flatten so that a flatten completes the clone's snapshots too.
const Features = "layering,exclusive-lock,object-map,fast-diff,deep-flatten"

// Client runs rbd and ceph. The zero value runs them through storage/run:
// reports with run.Output, changes with run.Critical (a change runs to
// its end even when strata is interrupted; the caller's journal finishes
// or undoes its step).
type Client struct {
	// Exec, when set, runs argv instead of storage/run; change says
	// whether the command changes the cluster. Tests replay recorded
	// outputs with it; an error it returns should be a *run.Error for
	// Classify to read.
	Exec func(ctx context.Context, argv []string, change bool) ([]byte, error)
}

func (c *Client) exec(ctx context.Context, change bool, argv []string) ([]byte, error) {
	wait := BusyWait
	for try := 0; ; try++ {
		var out []byte
		var err error
		switch {
		case c != nil && c.Exec != nil:
			out, err = c.Exec(ctx, argv, change)
		case change:
			err = run.Critical(ctx, argv...)
		default:
			out, err = run.Output(ctx, argv...)
		}
		var re *run.Error
		if err == nil || try >= BusyRetries || !errors.As(err, &re) || re.ExitCode != errBUSY {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// base is the start of every rbd argv: the cluster's ceph.conf and
// client ID, and the monitor timeout.
func base(tool string, c Conn) []string {
	argv := []string{tool, "--client-mount-timeout", fmt.Sprint(MountTimeout), "--rados-osd-op-timeout", fmt.Sprint(OpTimeout)}
	if c.Conf != "" {
		argv = append(argv, "--conf", c.Conf)
	}
	if c.ID != "" {
		argv = append(argv, "--id", c.ID)
	}
	return argv
}

// Argv builders: tests check them without a cluster.

func InfoArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "info", "--format", "json", s.String())
}
func SnapsArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "snap", "ls", "--format", "json", s.String())
}
func CreateArgs(s Spec, size int64) []string {
	return append(base("rbd", s.Conn), "create", "--size", fmt.Sprintf("%dB", size), "--image-feature", Features, s.String())
}
func ResizeArgs(s Spec, size int64, shrink bool) []string {
	argv := append(base("rbd", s.Conn), "resize", "--no-progress", "--size", fmt.Sprintf("%dB", size))
	if shrink {
		argv = append(argv, "--allow-shrink")
	}
	return append(argv, s.String())
}
func RemoveArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "rm", "--no-progress", s.String())
}
func RenameArgs(s Spec, to string) []string {
	return append(base("rbd", s.Conn), "rename", s.String(), s.WithImage(to).String())
}
func SnapCreateArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "snap", "create", "--no-progress", s.Snap(snap))
}
func SnapRemoveArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "snap", "rm", "--no-progress", s.Snap(snap))
}
func SnapRollbackArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "snap", "rollback", "--no-progress", s.Snap(snap))
}
func SnapProtectArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "snap", "protect", s.Snap(snap))
}
func SnapUnprotectArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "snap", "unprotect", s.Snap(snap))
}
func CloneArgs(parent Spec, snap string, child Spec) []string {
	return append(base("rbd", parent.Conn), "clone", "--image-feature", Features, parent.Snap(snap), child.String())
}
func ChildrenArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "children", "--format", "json", s.Snap(snap))
}
func FlattenArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "flatten", "--no-progress", s.String())
}

// CopyArgs copies an image's data (at a snapshot when snap is set) into
// a new image: `rbd cp` copies no snapshots (`deep cp` would copy them
// all, the source's restore points with it).
func CopyArgs(src Spec, snap string, dst Spec) []string {
	from := src.String()
	if snap != "" {
		from = src.Snap(snap)
	}
	return append(base("rbd", src.Conn), "cp", "--no-progress", from, dst.String())
}
func StatusArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "status", "--format", "json", s.String())
}

// GenerationObject is the RADOS object, in each pool (and namespace)
// strata's images are in, whose omap maps an image's live name to its
// restore generation (see Driver.Fingerprint). An object of its own,
// read with rados and not with rbd image-meta: rbd opens an image for
// its metadata, and an open image has a watcher, which a concurrent
// check would take for a running guest.
const GenerationObject = "strata_restored"

func radosBase(s Spec) []string {
	argv := append(base("rados", s.Conn), "--pool", s.Pool)
	if s.Namespace != "" {
		argv = append(argv, "--namespace", s.Namespace)
	}
	return argv
}

// GenerationArgs reads image s's generation (to stdout), SetGenerationArgs
// sets it, ForgetGenerationArgs removes it.
func GenerationArgs(s Spec) []string {
	return append(radosBase(s), "getomapval", GenerationObject, liveName(s.Image), "/dev/stdout")
}
func SetGenerationArgs(s Spec, gen string) []string {
	return append(radosBase(s), "setomapval", GenerationObject, liveName(s.Image), gen)
}
func ForgetGenerationArgs(s Spec) []string {
	return append(radosBase(s), "rmomapkey", GenerationObject, liveName(s.Image))
}

// liveName is an image's name without the suffix a rollback under way
// gives it.
func liveName(image string) string { return strings.TrimSuffix(image, ApplyingSuffix) }

func DiffArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "diff", "--whole-object", "--format", "json", s.String())
}

// InfoAtArgs and DiffAtArgs report an image at one of its snapshots:
// the snapshot's size and allocated objects, the image's ID and
// modify_timestamp.
func InfoAtArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "info", "--format", "json", s.Snap(snap))
}
func DiffAtArgs(s Spec, snap string) []string {
	return append(base("rbd", s.Conn), "diff", "--whole-object", "--format", "json", s.Snap(snap))
}

// DUArgs reports the usage of one image (s.Image set) or of every image
// of the pool or namespace.
// (A POOL/NAMESPACE argument would be read as POOL/IMAGE: the pool and
// namespace go as options.)
func DUArgs(s Spec) []string {
	argv := append(base("rbd", s.Conn), "du", "--format", "json")
	if s.Image != "" {
		return append(argv, s.String())
	}
	argv = append(argv, "--pool", s.Pool)
	if s.Namespace != "" {
		argv = append(argv, "--namespace", s.Namespace)
	}
	return argv
}
func ListArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "ls", "--format", "json", s.PoolSpec())
}
func PoolStatsArgs(s Spec) []string {
	return append(base("rbd", s.Conn), "pool", "stats", "--format", "json", s.PoolSpec())
}
func PoolsArgs(c Conn) []string {
	return append(base("ceph", c), "osd", "pool", "ls", "detail", "--format", "json")
}
func DFArgs(c Conn) []string {
	return append(base("ceph", c), "df", "--format", "json")
}

// Image is what `rbd info` reports that strata uses.
type Image struct {
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	Size     int64    `json:"size"`
	Objects  int64    `json:"objects"`
	Snaps    int      `json:"snapshot_count"`
	Features []string `json:"features"`
	Modified string   `json:"modify_timestamp"`
	Parent   *Parent  `json:"parent,omitempty"`
}

// Parent is a clone's parent snapshot.
type Parent struct {
	Pool      string `json:"pool"`
	Namespace string `json:"pool_namespace"`
	Image     string `json:"image"`
	Snapshot  string `json:"snapshot"`
}

// Snapshot is one line of `rbd snap ls`.
type Snapshot struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Protected bool   `json:"-"`
	Raw       string `json:"protected"` // "true" or "false"
}

// Child is a clone `rbd children` lists.
type Child struct {
	Pool      string `json:"pool"`
	Namespace string `json:"pool_namespace"`
	Image     string `json:"image"`
}

// Usage is `rbd du`'s count for one image or snapshot.
type Usage struct {
	Name        string `json:"name"`
	Snapshot    string `json:"snapshot,omitempty"`
	Provisioned int64  `json:"provisioned_size"`
	Used        int64  `json:"used_size"`
}

// PoolStats is `rbd pool stats`.
type PoolStats struct {
	Images      int64 `json:"count"`
	Provisioned int64 `json:"provisioned_bytes"`
	Snapshots   int64 `json:"snap_count"`
}

// CephPool is a pool of `ceph osd pool ls detail`.
type CephPool struct {
	Name       string `json:"pool_name"`
	ID         int64  `json:"pool_id"`
	Size       int    `json:"size"`
	QuotaBytes int64  `json:"quota_max_bytes"`
	// Applications are the tags `rbd pool init` sets ("rbd").
	Applications map[string]json.RawMessage `json:"application_metadata"`
}

// DF is what `ceph df` reports; zero totals when no manager reports.
type DF struct {
	Stats struct {
		Total int64 `json:"total_bytes"`
		Avail int64 `json:"total_avail_bytes"`
	} `json:"stats"`
	Pools []struct {
		Name  string `json:"name"`
		Stats struct {
			Stored   int64 `json:"stored"`
			MaxAvail int64 `json:"max_avail"`
		} `json:"stats"`
	} `json:"pools"`
}

func parse[T any](out []byte, what string) (T, error) {
	var v T
	if err := json.Unmarshal(out, &v); err != nil {
		return v, fmt.Errorf("read %s: %w", what, err)
	}
	return v, nil
}

// ParseSnapshots reads `rbd snap ls --format json`.
func ParseSnapshots(out []byte) ([]Snapshot, error) {
	snaps, err := parse[[]Snapshot](out, "rbd snap ls")
	for i := range snaps {
		snaps[i].Protected = snaps[i].Raw == "true"
	}
	return snaps, err
}

// ParseUsage reads `rbd du --format json`.
func ParseUsage(out []byte) ([]Usage, error) {
	du, err := parse[struct {
		Images []Usage `json:"images"`
	}](out, "rbd du")
	return du.Images, err
}

// ParseStatus reads the watchers of `rbd status --format json`.
func ParseStatus(out []byte) ([]string, error) {
	st, err := parse[struct {
		Watchers []struct {
			Address string `json:"address"`
		} `json:"watchers"`
	}](out, "rbd status")
	var w []string
	for _, x := range st.Watchers {
		w = append(w, x.Address)
	}
	return w, err
}

// The commands.

func (c *Client) report(ctx context.Context, what string, argv []string) ([]byte, error) {
	out, err := c.exec(ctx, false, argv)
	return out, Classify(err, what)
}

func (c *Client) change(ctx context.Context, what string, argv []string) error {
	_, err := c.exec(ctx, true, argv)
	return Classify(err, what)
}

// Info reports an image (storage.ErrNotFound: there is none).
func (c *Client) Info(ctx context.Context, s Spec) (Image, error) {
	out, err := c.report(ctx, fmt.Sprintf("rbd image %q", s.String()), InfoArgs(s))
	if err != nil {
		return Image{}, err
	}
	return parse[Image](out, "rbd info")
}

// InfoAt reports an image at its snapshot snap (storage.ErrNotFound:
// no such image or snapshot).
func (c *Client) InfoAt(ctx context.Context, s Spec, snap string) (Image, error) {
	out, err := c.report(ctx, fmt.Sprintf("snapshot %q", s.Snap(snap)), InfoAtArgs(s, snap))
	if err != nil {
		return Image{}, err
	}
	return parse[Image](out, "rbd info")
}

// Exists tells whether the image is there.
func (c *Client) Exists(ctx context.Context, s Spec) (bool, error) {
	_, err := c.Info(ctx, s)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Snapshots lists an image's snapshots.
func (c *Client) Snapshots(ctx context.Context, s Spec) ([]Snapshot, error) {
	out, err := c.report(ctx, fmt.Sprintf("snapshots of rbd image %q", s.String()), SnapsArgs(s))
	if err != nil {
		return nil, err
	}
	return ParseSnapshots(out)
}

// Create makes an empty image of size bytes.
func (c *Client) Create(ctx context.Context, s Spec, size int64) error {
	return c.change(ctx, fmt.Sprintf("create rbd image %q", s.String()), CreateArgs(s, size))
}

// Resize sets an image's size (smaller only with shrink).
func (c *Client) Resize(ctx context.Context, s Spec, size int64, shrink bool) error {
	return c.change(ctx, fmt.Sprintf("resize rbd image %q", s.String()), ResizeArgs(s, size, shrink))
}

// Remove removes an image (it must have no snapshots).
func (c *Client) Remove(ctx context.Context, s Spec) error {
	return c.change(ctx, fmt.Sprintf("remove rbd image %q", s.String()), RemoveArgs(s))
}

// Rename gives an image another name in its pool.
func (c *Client) Rename(ctx context.Context, s Spec, to string) error {
	return c.change(ctx, fmt.Sprintf("rename rbd image %q to %q", s.String(), to), RenameArgs(s, to))
}

func (c *Client) SnapCreate(ctx context.Context, s Spec, snap string) error {
	return c.change(ctx, fmt.Sprintf("create snapshot %q", s.Snap(snap)), SnapCreateArgs(s, snap))
}
func (c *Client) SnapRemove(ctx context.Context, s Spec, snap string) error {
	return c.change(ctx, fmt.Sprintf("remove snapshot %q", s.Snap(snap)), SnapRemoveArgs(s, snap))
}
func (c *Client) SnapRollback(ctx context.Context, s Spec, snap string) error {
	return c.change(ctx, fmt.Sprintf("roll back to snapshot %q", s.Snap(snap)), SnapRollbackArgs(s, snap))
}
func (c *Client) SnapProtect(ctx context.Context, s Spec, snap string) error {
	return c.change(ctx, fmt.Sprintf("protect snapshot %q", s.Snap(snap)), SnapProtectArgs(s, snap))
}
func (c *Client) SnapUnprotect(ctx context.Context, s Spec, snap string) error {
	return c.change(ctx, fmt.Sprintf("unprotect snapshot %q", s.Snap(snap)), SnapUnprotectArgs(s, snap))
}

// Clone makes child a clone of parent@snap (a protected snapshot).
func (c *Client) Clone(ctx context.Context, parent Spec, snap string, child Spec) error {
	return c.change(ctx, fmt.Sprintf("clone %q to %q", parent.Snap(snap), child.String()), CloneArgs(parent, snap, child))
}

// Children lists the clones of s@snap.
func (c *Client) Children(ctx context.Context, s Spec, snap string) ([]Child, error) {
	out, err := c.report(ctx, fmt.Sprintf("clones of %q", s.Snap(snap)), ChildrenArgs(s, snap))
	if err != nil {
		return nil, err
	}
	return parse[[]Child](out, "rbd children")
}

// Flatten copies a clone's parent data into it and cuts the link.
func (c *Client) Flatten(ctx context.Context, s Spec) error {
	return c.change(ctx, fmt.Sprintf("flatten rbd image %q", s.String()), FlattenArgs(s))
}

// Copy copies src (at snap, if set) into the new image dst.
func (c *Client) Copy(ctx context.Context, src Spec, snap string, dst Spec) error {
	return c.change(ctx, fmt.Sprintf("copy rbd image %q to %q", src.String(), dst.String()), CopyArgs(src, snap, dst))
}

// Watchers lists the clients that have the image open.
func (c *Client) Watchers(ctx context.Context, s Spec) ([]string, error) {
	out, err := c.report(ctx, fmt.Sprintf("status of rbd image %q", s.String()), StatusArgs(s))
	if err != nil {
		return nil, err
	}
	return ParseStatus(out)
}

// Generation reads image s's restore generation ("": none set).
func (c *Client) Generation(ctx context.Context, s Spec) (string, error) {
	out, err := c.exec(ctx, false, GenerationArgs(s))
	var re *run.Error
	if errors.As(err, &re) && (strings.Contains(re.Stderr, "No such file or directory") || strings.Contains(string(out), "No such key")) {
		return "", nil // no object (no image of the pool has one) or no key
	}
	if err != nil {
		return "", Classify(err, fmt.Sprintf("restore generation of rbd image %q", s.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// SetGeneration sets image s's restore generation.
func (c *Client) SetGeneration(ctx context.Context, s Spec, gen string) error {
	return c.change(ctx, fmt.Sprintf("set the restore generation of rbd image %q", s.String()), SetGenerationArgs(s, gen))
}

// ForgetGeneration removes image s's restore generation (none: success).
func (c *Client) ForgetGeneration(ctx context.Context, s Spec) error {
	_, err := c.exec(ctx, true, ForgetGenerationArgs(s))
	var re *run.Error
	if errors.As(err, &re) && strings.Contains(re.Stderr, "No such file or directory") {
		return nil
	}
	return Classify(err, fmt.Sprintf("remove the restore generation of rbd image %q", s.String()))
}

// Diff is the raw `rbd diff --whole-object` of an image: the objects that
// hold data (read from the object map: cheap).
func (c *Client) Diff(ctx context.Context, s Spec) ([]byte, error) {
	return c.report(ctx, fmt.Sprintf("allocation of rbd image %q", s.String()), DiffArgs(s))
}

// DiffAt is Diff of the image at its snapshot snap.
func (c *Client) DiffAt(ctx context.Context, s Spec, snap string) ([]byte, error) {
	return c.report(ctx, fmt.Sprintf("allocation of snapshot %q", s.Snap(snap)), DiffAtArgs(s, snap))
}

// DU reports usage (s.Image "" : every image of the pool or namespace).
func (c *Client) DU(ctx context.Context, s Spec) ([]Usage, error) {
	out, err := c.report(ctx, fmt.Sprintf("usage of %q", s.PoolSpec()), DUArgs(s))
	if err != nil {
		return nil, err
	}
	return ParseUsage(out)
}

// List names the images of the pool or namespace.
func (c *Client) List(ctx context.Context, s Spec) ([]string, error) {
	out, err := c.report(ctx, fmt.Sprintf("images of %q", s.PoolSpec()), ListArgs(s))
	if err != nil {
		return nil, err
	}
	return parse[[]string](out, "rbd ls")
}

// PoolStats reports the images of the pool or namespace.
func (c *Client) PoolStats(ctx context.Context, s Spec) (PoolStats, error) {
	out, err := c.report(ctx, fmt.Sprintf("rbd pool %q", s.PoolSpec()), PoolStatsArgs(s))
	if err != nil {
		return PoolStats{}, err
	}
	st, err := parse[struct {
		Images PoolStats `json:"images"`
	}](out, "rbd pool stats")
	return st.Images, err
}

// Pools reports the cluster's pools (quota, size, applications).
func (c *Client) Pools(ctx context.Context, conn Conn) ([]CephPool, error) {
	out, err := c.report(ctx, "ceph pools", PoolsArgs(conn))
	if err != nil {
		return nil, err
	}
	return parse[[]CephPool](out, "ceph osd pool ls detail")
}

// DF is `ceph df` (zeros without a manager).
func (c *Client) DF(ctx context.Context, conn Conn) (DF, error) {
	out, err := c.report(ctx, "ceph df", DFArgs(conn))
	if err != nil {
		return DF{}, err
	}
	return parse[DF](out, "ceph df")
}
