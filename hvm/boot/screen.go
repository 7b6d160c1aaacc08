package boot

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
)

// WritePNG writes a screen image a toolstack handed over to w as PNG: a
// PNG as it is, a binary PPM (P6, maxval 255, what QEMU's screendump
// writes) converted.
func WritePNG(b []byte, w io.Writer) error {
	if bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		_, err := w.Write(b)
		return err
	}
	img, err := DecodePPM(b)
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

// DecodePPM reads a binary PPM (P6, maxval 255) as screendump writes it.
func DecodePPM(b []byte) (image.Image, error) {
	var magic string
	var wd, ht, maxv int
	r := bytes.NewReader(b)
	if _, err := fmt.Fscan(r, &magic, &wd, &ht, &maxv); err != nil || magic != "P6" || maxv != 255 || wd <= 0 || ht <= 0 {
		return nil, fmt.Errorf("not a P6 PPM with maxval 255 (%v)", err)
	}
	r.ReadByte() // the single whitespace before the pixels
	pix := b[len(b)-r.Len():]
	if len(pix) < wd*ht*3 {
		return nil, fmt.Errorf("PPM holds %d bytes of pixels, want %d", len(pix), wd*ht*3)
	}
	img := image.NewNRGBA(image.Rect(0, 0, wd, ht))
	for i := 0; i < wd*ht; i++ {
		copy(img.Pix[i*4:], pix[i*3:i*3+3])
		img.Pix[i*4+3] = 0xff
	}
	return img, nil
}
