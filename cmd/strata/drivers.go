package main

import (
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/boot"
	lvboot "github.com/strata-vm/strata/hvm/boot/libvirt"
	"github.com/strata-vm/strata/hvm/boot/qemu"
	"github.com/strata-vm/strata/hvm/boot/xl"
	"github.com/strata-vm/strata/storage/inuse"
)

// drivers returns the boot drivers of this host; none probes anything
// until asked.
func drivers(c *cli.Context) *boot.Set {
	a := appOf(c)
	if a.drivers != nil {
		return a.drivers
	}
	a.drivers = boot.NewSet(xl.New(xl.Config{}), lvboot.New(lvboot.Config{}), qemu.New(qemu.Config{
		Home: c.String("home"),
		// The watcher that records why a guest's QEMU stopped is this
		// binary's hidden `guest __watch`.
		WatcherArgv: func(runDir string) []string {
			return []string{executable(), "guest", "__watch", runDir}
		},
	}))
	return a.drivers
}

// inUseChecker is the in-use check of every command: the host's own
// sources (image locks, writers, block claims, loop devices), libvirt's
// domains (strata's or not: in this process through the libvirt driver,
// and through virsh for another local URI that LIBVIRT_DEFAULT_URI
// names), the watchers of RBD images (a client on any host), and the
// guests the qemu and xl drivers run (xl's replace inuse's own xl source:
// one xl list parser, one holder per domain); the drivers' orphans are
// ended before any of them is asked.
func inUseChecker(ds *boot.Set) *inuse.Checker {
	var own []boot.Driver
	virsh := inuse.NewLibvirt()
	var srcs []inuse.Source
	for _, d := range ds.Drivers() {
		if lv, ok := d.(*lvboot.Driver); ok {
			srcs = append(srcs, lv.InUse())
			virsh.Except = lv.URI()
			continue
		}
		own = append(own, d)
	}
	// A guest a killed `guest start` left paused (it never ran) is ended
	// first: it must not hold a disk for ever.
	srcs = append(srcs, inuse.Processes{}, inuse.BlockClaim{}, inuse.LoopDevices{}, virsh, inuse.RBDWatchers{})
	// The device-mapper open count is read alone, after the orphans are
	// gone and before the other sources open the image to look.
	return &inuse.Checker{First: []inuse.Source{boot.Reaping(ds), inuse.DeviceMapper{}}, Sources: append(srcs, boot.InUseSources(boot.NewSet(own...))...)}
}
