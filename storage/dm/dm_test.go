package dm_test

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/dm"
)

// header is a reply's dm_ioctl as the kernel writes it (offsets of
// linux/dm-ioctl.h).
func header(open int32, flags uint32, targets uint32) []byte {
	buf := make([]byte, 4096)
	le := binary.LittleEndian
	le.PutUint32(buf[0:], 4)
	le.PutUint32(buf[16:], dm.HeaderSize) // data_start
	le.PutUint32(buf[20:], targets)       // target_count
	le.PutUint32(buf[24:], uint32(open))  // open_count
	le.PutUint32(buf[28:], flags)
	le.PutUint64(buf[40:], 0xfd05)
	copy(buf[48:], "vg-lv")
	copy(buf[176:], "LVM-abc")
	return buf
}

// The reply of DM_TABLE_STATUS is decoded at the offsets of
// linux/dm-ioctl.h.
func TestTableStatusReplyDecodes(t *testing.T) {
	buf := header(0, 0, 2)
	le := binary.LittleEndian
	spec := func(off int, start, length uint64, next uint32, typ, params string) {
		le.PutUint64(buf[off:], start)
		le.PutUint64(buf[off+8:], length)
		le.PutUint32(buf[off+20:], next)
		copy(buf[off+24:], typ)
		copy(buf[off+40:], params)
	}
	spec(312, 0, 8, 48, "linear", "253:1 0")
	spec(360, 8, 16, 96, "thin", "253:4 1")
	dev, err := dm.ParseReply(buf)
	if err != nil || dev.Name != "vg-lv" || dev.UUID != "LVM-abc" || dev.Dev != 0xfd05 || len(dev.Targets) != 2 ||
		dev.Targets[0] != (dm.Target{Start: 0, Length: 8, Type: "linear", Params: "253:1 0"}) ||
		dev.Targets[1] != (dm.Target{Start: 8, Length: 16, Type: "thin", Params: "253:4 1"}) {
		t.Fatalf("%+v %v", dev, err)
	}
	if _, ok := dev.Single("thin"); ok {
		t.Fatal("a device of two targets has a single one")
	}
	le.PutUint32(buf[16:], 5000)
	if _, err := dm.ParseReply(buf); err == nil {
		t.Fatal("a reply with targets past its end decoded")
	}
}

// DM_DEV_STATUS's reply is a header alone: its target_count counts the
// live table's targets, none of which follow; open_count and the
// suspended flag are what the in-use check reads.
func TestDevStatusReplyDecodesTheOpenCount(t *testing.T) {
	buf := header(3, 1<<1|1<<5, 1)[:dm.HeaderSize]
	dev, err := dm.ParseHeader(buf)
	if err != nil || dev.OpenCount != 3 || !dev.Suspended || dev.Name != "vg-lv" || dev.UUID != "LVM-abc" || dev.Dev != 0xfd05 || dev.Targets != nil {
		t.Fatalf("%+v %v", dev, err)
	}
	dev, err = dm.ParseHeader(header(0, 1<<5, 1))
	if err != nil || dev.OpenCount != 0 || dev.Suspended {
		t.Fatalf("%+v %v", dev, err)
	}
	if _, err := dm.ParseHeader(buf[:300]); err == nil {
		t.Fatal("a reply shorter than its header decoded")
	}
}

// Where the host has no device-mapper (these machines), asking says so
// as ErrNotSupported; with one, a device number no dm device has is
// ErrNotFound.
func TestNoDeviceMapperIsNotSupported(t *testing.T) {
	_, err := dm.Info(dm.Query{Dev: 7 << 8})
	if _, serr := os.Stat(dm.Control); serr != nil {
		if !errors.Is(err, storage.ErrNotSupported) {
			t.Fatalf("no %s: %v", dm.Control, err)
		}
		return
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("loop device 7:0 asked of device-mapper: %v", err)
	}
}
