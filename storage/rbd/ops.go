package rbd

import (
	"context"
	"os"
	"sync"

	"github.com/rs/zerolog/log"
)

// Ops are the calls of the rollback's and the point create's hot paths:
// the ones a rollback and a point create make, and the reads of the
// journal's fingerprint; and the listing of a pool doctor makes. Two implementations: *Client (one rbd or rados
// process per call) and *Helper (one strata-rbd process per strata
// process, on one connection to the cluster). Every other call (create,
// resize, delete, clone, flatten, copy, usage, pool checks) stays with
// *Client: none is timed against a peer where a process per call
// matters.
type Ops interface {
	SnapCreate(ctx context.Context, s Spec, snap string) error
	SnapRollback(ctx context.Context, s Spec, snap string) error
	Rename(ctx context.Context, s Spec, to string) error
	// Snapshots lists an image's snapshots (ErrNotFound: no image).
	Snapshots(ctx context.Context, s Spec) ([]Snapshot, error)
	Exists(ctx context.Context, s Spec) (bool, error)
	// List names the images of s's pool and namespace (doctor's one
	// listing per pool).
	List(ctx context.Context, s Spec) ([]string, error)
	// Watchers lists the addresses of the clients that have the image
	// open, never this strata process itself.
	Watchers(ctx context.Context, s Spec) ([]string, error)
	Generation(ctx context.Context, s Spec) (string, error)
	SetGeneration(ctx context.Context, s Spec, gen string) error
	// State reads what the fingerprint hashes of the image, or of it at
	// its snapshot snap ("": the image itself).
	State(ctx context.Context, s Spec, snap string) (State, error)
}

var (
	_ Ops = (*Client)(nil)
	_ Ops = (*Helper)(nil)
)

// State is what Driver.Fingerprint reads of an image (or of it at one of
// its snapshots), in the very text rbd prints it: the fingerprint is a
// hash of that text, persisted in journals and compared by processes
// that may have read it on the other path, so the helper reproduces the
// CLI's text to the byte (ctime(3) for the timestamp, rbd's JSON for the
// diff).
type State struct {
	ID   string `json:"id"`
	Size int64  `json:"size"`
	// Modified is rbd info's modify_timestamp ("Mon Nov 30 20:05:14 2026",
	// local time).
	Modified string `json:"modified"`
	// Diff is the output of rbd diff --whole-object --format json.
	Diff []byte `json:"diff"`
}

// State implements Ops: rbd info and rbd diff, at once.
func (c *Client) State(ctx context.Context, s Spec, snap string) (State, error) {
	var (
		img  Image
		diff []byte
	)
	err := together(
		func() (err error) {
			if snap == "" {
				img, err = c.Info(ctx, s)
			} else {
				img, err = c.InfoAt(ctx, s, snap)
			}
			return err
		},
		func() (err error) {
			if snap == "" {
				diff, err = c.Diff(ctx, s)
			} else {
				diff, err = c.DiffAt(ctx, s, snap)
			}
			return err
		})
	return State{ID: img.ID, Size: img.Size, Modified: img.Modified, Diff: diff}, err
}

// ClientEnv chooses how strata reaches a cluster on the hot paths:
// "cli" (the rbd and rados tools, one process per call), "helper" (the
// strata-rbd program beside the strata executable, and no fallback: a
// helper that cannot run fails the call), or unset / "auto": the helper
// when it is there and works, else the tools.
const ClientEnv = "STRATA_RBD_CLIENT"

// HelperName is the helper program's name, looked for only in the
// directory of the running executable.
const HelperName = "strata-rbd"

var (
	defaultOnce sync.Once
	defaultOps  Ops
)

// DefaultOps is the process's choice of Ops (ClientEnv): the helper
// beside the executable, started at most once per process and only on
// the first call that goes to it, or the tools.
func DefaultOps() Ops {
	defaultOnce.Do(func() {
		mode := os.Getenv(ClientEnv)
		switch mode {
		case "cli":
			defaultOps = &Client{}
			return
		case "", "auto", "helper":
		default:
			log.Warn().Str(ClientEnv, mode).Msg("unknown value: want cli, helper or auto; using auto")
			mode = "auto"
		}
		path, err := HelperBesideExecutable()
		h := NewHelper(path, &Client{})
		h.Strict = mode == "helper"
		if err != nil {
			h.fail(err)
		}
		defaultOps = h
	})
	return defaultOps
}
