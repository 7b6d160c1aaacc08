package main

import (
	"context"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
)

// attached is what guest attach and detach print: the device as the
// definition records it (or recorded it), and whether the running guest
// got the change live.
type attached struct {
	Guest  string    `json:"guest"`
	Action string    `json:"action"` // attached or detached
	Disk   *hvm.Disk `json:"disk,omitempty"`
	NIC    *hvm.NIC  `json:"nic,omitempty"`
	Live   bool      `json:"live"`
}

func newGuestAttachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "add a disk, CD-ROM drive or NIC to a guest: live when it runs (where its driver can), and always in its definition",
		ArgsUsage: "NAME (--disk VOLUME | --cdrom ISO | --nic SPEC)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "disk", Usage: "a volume (or the path of an image file) as a new disk"},
			&cli.StringFlag{Name: "cdrom", Usage: "an iso name or an ISO file, in a new CD-ROM drive"},
			&cli.StringFlag{Name: "vdev", Usage: "the device the guest sees (default: the first free xvdX for a disk, which every driver hot-plugs; hdc, hdd, hdb, then sdX for a CD-ROM drive)"},
			&cli.StringFlag{Name: "nic", Usage: "a vif spec: bridge=xenbr0[,mac=00:16:3e:..][,model=e1000] (a MAC is generated when none is given)"},
		},
		Action: guestAttachAction,
	}
}

func guestAttachAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	nic, disk, err := attachedDevice(c)
	if err != nil {
		return err
	}
	out := attached{Guest: name, Action: "attached"}
	if nic != nil {
		got, live, err := lm.AttachNIC(c.Context, name, *nic)
		out.NIC, out.Live = &got, live
		return printResult(c, printAttached)(out, err)
	}
	got, live, err := lm.AttachDisk(c.Context, name, *disk)
	out.Disk, out.Live = &got, live
	return printResult(c, printAttached)(out, err)
}

// attachedDevice reads guest attach's device: exactly one of --disk,
// --cdrom (with --vdev) and --nic.
func attachedDevice(c *cli.Context) (*hvm.NIC, *hvm.Disk, error) {
	n := 0
	for _, f := range []string{"disk", "cdrom", "nic"} {
		if c.IsSet(f) {
			n++
		}
	}
	if n != 1 {
		return nil, nil, storage.Errorf(storage.ErrInvalid, "guest attach takes exactly one of --disk VOLUME, --cdrom ISO, --nic SPEC")
	}
	if c.IsSet("nic") {
		if c.IsSet("vdev") {
			return nil, nil, storage.Errorf(storage.ErrInvalid, "--vdev is for --disk and --cdrom, not --nic")
		}
		spec := c.String("nic")
		if hvm.SecretValue(spec) {
			return nil, nil, storage.Errorf(storage.ErrInvalid, "--nic holds a password, which is not taken on the command line (ps shows it): add the NIC with strata guest set from a file instead")
		}
		nic, _, err := xlcfg.ParseVif(spec)
		return &nic, nil, err
	}
	d := hvm.Disk{Vdev: c.String("vdev")}
	src := c.String("disk")
	if c.IsSet("cdrom") {
		d.CDROM, src = true, c.String("cdrom")
	}
	switch {
	case src == "":
		return nil, nil, storage.Errorf(storage.ErrInvalid, "give the volume or ISO to attach (an empty CD-ROM drive is added with strata guest set)")
	case strings.ContainsRune(src, '/'):
		d.Path = src
	case d.CDROM:
		d.Media = src
	default:
		d.Volume = src
	}
	return nil, &d, nil
}

func newGuestDetachCommand() *cli.Command {
	return &cli.Command{
		Name:      "detach",
		Usage:     "remove a disk (by its vdev) or NIC (by its MAC) from a guest: live when it runs (where its driver can and the guest lets it go), and always from its definition",
		ArgsUsage: "NAME VDEV|MAC",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "how long a running guest has to let the device go (a hot-unplug needs its consent)"},
		},
		Action: guestDetachAction,
	}
}

func guestDetachAction(c *cli.Context) error {
	if c.NArg() != 2 {
		return storage.Errorf(storage.ErrInvalid, "guest detach takes NAME VDEV|MAC (got %d arguments)", c.NArg())
	}
	lm, err := openLifecycle(c)
	if err != nil {
		return err
	}
	name, dev := c.Args().Get(0), c.Args().Get(1)
	if c.Duration("timeout") <= 0 {
		return storage.Errorf(storage.ErrInvalid, "--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	out := attached{Guest: name, Action: "detached"}
	if strings.ContainsRune(dev, ':') {
		got, live, err := lm.DetachNIC(ctx, name, dev)
		out.NIC, out.Live = &got, live
		return printResult(c, printAttached)(out, err)
	}
	if !hvm.VdevPattern.MatchString(dev) {
		return storage.Errorf(storage.ErrInvalid, "%q is neither a vdev (hdX, sdX, xvdX) nor a MAC address", dev)
	}
	got, live, err := lm.DetachDisk(ctx, name, dev)
	out.Disk, out.Live = &got, live
	return printResult(c, printAttached)(out, err)
}

func printAttached(c *cli.Context, a attached) error {
	return emit(c, a, func(w *tabwriter.Writer) {
		row(w, "guest:", a.Guest)
		if d := a.Disk; d != nil {
			kind, src := d.Source()
			what := "disk:"
			if d.CDROM {
				what = "cdrom:"
			}
			row(w, what, d.Vdev, kind, orEmpty(src))
		}
		if n := a.NIC; n != nil {
			row(w, "nic:", n.MAC, n.Bridge, n.Model)
		}
		row(w, a.Action+":", map[bool]string{true: "live and in the definition", false: "in the definition (the guest is not running)"}[a.Live])
	})
}
