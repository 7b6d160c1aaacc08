package boot_test

import (
	"context"
	"io"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
)

// fakeDriver is a driver whose probe answers what a test says. It runs
// nothing: the tests using it check choices made over drivers (which one
// auto picks, what Supports says), not a toolstack.
type fakeDriver struct {
	name   string
	avail  error
	probes *int // counts Available calls when set
}

var _ boot.Driver = fakeDriver{}

func (f fakeDriver) Name() string { return f.name }

func (f fakeDriver) Available(context.Context) error {
	if f.probes != nil {
		*f.probes++
	}
	return f.avail
}

func (f fakeDriver) Supports(g *hvm.Guest, ft boot.Feature) error {
	if ft == boot.Pause {
		return nil
	}
	return storage.Errorf(storage.ErrNotSupported, "the %s driver cannot do %s: use the qemu driver (strata guest start NAME --driver qemu)", f.name, ft)
}

func (f fakeDriver) Start(context.Context, *boot.Guest, boot.StartOptions) (boot.Status, error) {
	return boot.Status{}, nil
}

func (f fakeDriver) Stop(context.Context, *boot.Guest, boot.StopOptions) (boot.Status, error) {
	return boot.Status{}, nil
}
func (f fakeDriver) Kill(context.Context, *boot.Guest) error   { return nil }
func (f fakeDriver) Pause(context.Context, *boot.Guest) error  { return nil }
func (f fakeDriver) Resume(context.Context, *boot.Guest) error { return nil }
func (f fakeDriver) Status(context.Context, *boot.Guest) (boot.Status, error) {
	return boot.Status{State: boot.Stopped}, nil
}

func (f fakeDriver) Screenshot(_ context.Context, g *boot.Guest, _ io.Writer) error {
	return f.Supports(g.Def, boot.Screenshot)
}

func (f fakeDriver) Console(_ context.Context, g *boot.Guest) (io.ReadWriteCloser, error) {
	return nil, f.Supports(g.Def, boot.Console)
}
func (f fakeDriver) Running(context.Context) ([]boot.RunningGuest, error) { return nil, nil }
