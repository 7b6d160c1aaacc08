// Package xlcfg reads and writes Xen guest configs: xl.cfg (xl.cfg(5)) and
// the older xm dialect (xmdomain.cfg(5)), and converts them to and from
// hvm.Guest.
//
// Decode parses syntax only (key = value, +=, lists, numbers read like
// strtol base 0, quoted strings with C escapes, libvirt's triple quotes);
// Parse also converts to a guest, refusing PV/PVH guests and any code.
// xm configs were Python programs: the classic preamble that computes
// device_model from os.uname() is recognised and skipped with a warning,
// and nothing is ever executed. ParseDisk and ParseVif read one disk or
// vif spec; Render and RenderXM write a guest back.
//
// Every key of xl.cfg(5) and of xm is modelled, kept verbatim, dropped
// with a warning or refused with an error naming it and why (keys.go);
// testdata/hvm/xl-keys.tsv lists them all and a test holds the importer
// to it. ConvertSetting reads one setting on its own, as guest set takes
// it.
//
// Work is bounded: inputs over MaxSize bytes and lists nested deeper than
// MaxDepth are refused with an error naming the line.
package xlcfg
