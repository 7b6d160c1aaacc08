package boot_test

import (
	"bytes"
	"fmt"
	"image/color"
	"testing"

	"github.com/strata-vm/strata/hvm/boot"
)

// screendump's PPM (QEMU without PNG support) converts to an image.
func TestDecodePPM(t *testing.T) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "P6\n%d %d\n255\n", 2, 1)
	b.Write([]byte{255, 0, 0, 0, 0, 255})
	img, err := boot.DecodePPM(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 2 || img.Bounds().Dy() != 1 {
		t.Fatalf("bounds %v", img.Bounds())
	}
	if c := color.NRGBAModel.Convert(img.At(1, 0)).(color.NRGBA); c != (color.NRGBA{0, 0, 255, 255}) {
		t.Fatalf("pixel %v", c)
	}
	if _, err := boot.DecodePPM([]byte("P6\n2 2\n255\n\x00\x00")); err == nil {
		t.Fatal("a short PPM decoded")
	}
	if _, err := boot.DecodePPM([]byte("P3\n1 1\n255\n0 0 0")); err == nil {
		t.Fatal("an ASCII PPM decoded")
	}
}
