package inuse

import (
	"context"
	"errors"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
)

// RBDWatchers finds the clients that have an RBD image open (an rbd
// pool's volume, path rbd:...): `rbd status` lists its watchers, on
// whichever host they run (a guest's QEMU, librbd in any process, or
// another host's strata; never this strata process itself). Images that
// are files are not its to answer.
type RBDWatchers struct {
	// Client asks (nil: rbd.DefaultOps, the strata-rbd helper or the
	// tools).
	Client *rbd.Client
}

// Holders implements Source.
func (w RBDWatchers) Holders(ctx context.Context, imgs []Image) ([][]Holder, error) {
	out := make([][]Holder, len(imgs))
	var c rbd.Ops
	if w.Client != nil {
		c = w.Client
	}
	for i, img := range imgs {
		if !strings.HasPrefix(img.Path, "rbd:") {
			continue
		}
		s, err := rbd.ParsePath(img.Path)
		if err != nil {
			return nil, err
		}
		if c == nil {
			c = rbd.DefaultOps() // only once an image is RBD's
		}
		addrs, err := c.Watchers(ctx, s)
		if errors.Is(err, storage.ErrNotFound) {
			continue // no image under that name: nobody holds it
		}
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			out[i] = append(out[i], Holder{Toolstack: "ceph", How: "rbd watcher at " + a + " (a client has the image open)"})
		}
	}
	return out, nil
}
