package lvm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// LV is one line of `lvs`: what the pool driver needs of a logical volume.
type LV struct {
	VG     string `json:"vg"`
	Name   string `json:"name"`
	UUID   string `json:"uuid"`
	Size   int64  `json:"size_bytes"`
	Attr   Attr   `json:"attr"`
	Origin string `json:"origin,omitempty"`  // a snapshot's origin LV
	Pool   string `json:"pool_lv,omitempty"` // a thin LV's thin pool
	// DataPercent is a snapshot's, thin LV's or thin pool's data usage
	// (a classic snapshot's COW space); MetadataPercent a thin pool's
	// metadata usage. Both are nil where LVM reports none.
	DataPercent     *float64 `json:"data_percent,omitempty"`
	MetadataPercent *float64 `json:"metadata_percent,omitempty"`
	Tags            []string `json:"tags,omitempty"`
	// DeviceOpen: something holds the LV's device open (a guest, a
	// mount); lv_device_open.
	DeviceOpen bool   `json:"device_open"`
	SegType    string `json:"segtype"`
	Path       string `json:"path,omitempty"`    // /dev/VG/LV (empty when hidden)
	DMPath     string `json:"dm_path,omitempty"` // /dev/mapper/VG-LV
	// WhenFull is a thin pool's behaviour when its data is full:
	// "error" (writes fail at once) or "queue" (writes hang, up to 60 s
	// by default, then fail).
	WhenFull string `json:"when_full,omitempty"`
}

// HasTag reports whether the LV carries tag.
func (l LV) HasTag(tag string) bool {
	for _, t := range l.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// FullName is "VG/LV", as LVM's commands take it.
func (l LV) FullName() string { return l.VG + "/" + l.Name }

// Attr is lv_attr decoded (lvs(8), "lv_attr bits").
type Attr struct {
	Raw string `json:"raw"`
	// Type is the first character: 'V' thin volume, 't' thin pool, 's'
	// classic snapshot, 'S' merging snapshot, 'o' origin, 'O' origin
	// with a merging snapshot, '-' plain, and others.
	Type byte `json:"-"`
	// ThinPool, Thin: a thin pool, a thin LV (thin snapshots included).
	ThinPool bool `json:"thin_pool"`
	Thin     bool `json:"thin"`
	// Snapshot: a classic (thick) snapshot; Merging: one being merged
	// into its origin (also set on the origin).
	Snapshot bool `json:"snapshot"`
	Merging  bool `json:"merging"`
	// Writable is false for a read-only LV.
	Writable bool `json:"writable"`
	Active   bool `json:"active"`
	// Invalid: a classic snapshot that overflowed (or whose merge
	// failed); it holds nothing usable.
	Invalid bool `json:"invalid"`
	Open    bool `json:"open"`
	// Health is the ninth character: 'D' thin pool out of data space,
	// 'M' metadata read-only, 'F' failed, 'p' partial, '-' fine.
	Health byte `json:"-"`
	// SkipActivation: the LV is not activated unless asked with
	// --ignoreactivationskip (-K); thin snapshots are made so.
	SkipActivation bool `json:"skip_activation"`
}

// ParseAttr decodes an lv_attr string (10 characters in LVM 2.03).
func ParseAttr(s string) (Attr, error) {
	if len(s) < 10 {
		return Attr{}, fmt.Errorf("lv_attr %q: want 10 characters", s)
	}
	a := Attr{Raw: s, Type: s[0], Health: s[8]}
	a.ThinPool = s[0] == 't'
	a.Thin = s[0] == 'V'
	a.Snapshot = s[0] == 's' || s[0] == 'S'
	a.Merging = s[0] == 'S' || s[0] == 'O'
	a.Writable = s[1] == 'w'
	switch s[4] {
	case 'a':
		a.Active = true
	case 'I', 'S':
		a.Invalid = true
	case 'm', 'M':
		a.Invalid = true // snapshot merge failed
	}
	a.Open = s[5] == 'o'
	a.SkipActivation = s[9] == 'k'
	return a, nil
}

// VG is one line of `vgs`.
type VG struct {
	Name        string   `json:"name"`
	UUID        string   `json:"uuid"`
	Size        int64    `json:"size_bytes"`
	Free        int64    `json:"free_bytes"`
	ExtentSize  int64    `json:"extent_size_bytes"`
	ExtentCount int64    `json:"extent_count"`
	FreeCount   int64    `json:"free_extent_count"`
	LVCount     int64    `json:"lv_count"`
	Tags        []string `json:"tags,omitempty"`
	Attr        string   `json:"attr"`
}

// lvFields and vgFields are the report columns asked for, in the JSON
// keys LVM gives them.
var (
	lvFields = []string{"vg_name", "lv_name", "lv_uuid", "lv_attr", "lv_size", "origin", "pool_lv", "data_percent", "metadata_percent", "lv_tags", "lv_device_open", "segtype", "lv_path", "lv_dm_path", "lv_when_full"}
	vgFields = []string{"vg_name", "vg_uuid", "vg_size", "vg_free", "vg_extent_size", "vg_extent_count", "vg_free_count", "lv_count", "vg_tags", "vg_attr"}
)

// report is LVM's JSON report: {"report": [{"lv": [{...}]}]} (or "vg").
type report struct {
	Report []map[string][]map[string]string `json:"report"`
}

func parseRows(out []byte, kind string) ([]map[string]string, error) {
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("reading the lvm %s report: %w", kind, err)
	}
	var rows []map[string]string
	for _, sec := range r.Report {
		rows = append(rows, sec[kind]...)
	}
	return rows, nil
}

// ParseLVs reads the JSON of `lvs --reportformat json --units b
// --nosuffix -o` lvFields.
func ParseLVs(out []byte) ([]LV, error) {
	rows, err := parseRows(out, "lv")
	if err != nil {
		return nil, err
	}
	lvs := make([]LV, 0, len(rows))
	for _, r := range rows {
		l := LV{VG: r["vg_name"], Name: r["lv_name"], UUID: r["lv_uuid"], Origin: r["origin"], Pool: r["pool_lv"],
			SegType: r["segtype"], Path: r["lv_path"], DMPath: r["lv_dm_path"], WhenFull: r["lv_when_full"]}
		if l.Attr, err = ParseAttr(r["lv_attr"]); err != nil {
			return nil, fmt.Errorf("lv %q: %w", l.Name, err)
		}
		if l.Size, err = parseBytes(r["lv_size"]); err != nil {
			return nil, fmt.Errorf("lv %q: lv_size: %w", l.Name, err)
		}
		if l.DataPercent, err = parsePercent(r["data_percent"]); err != nil {
			return nil, fmt.Errorf("lv %q: data_percent: %w", l.Name, err)
		}
		if l.MetadataPercent, err = parsePercent(r["metadata_percent"]); err != nil {
			return nil, fmt.Errorf("lv %q: metadata_percent: %w", l.Name, err)
		}
		l.Tags = splitTags(r["lv_tags"])
		// "open", "" (closed) or "unknown" (inactive: no device).
		l.DeviceOpen = r["lv_device_open"] == "open"
		lvs = append(lvs, l)
	}
	return lvs, nil
}

// ParseVGs reads the JSON of `vgs --reportformat json --units b
// --nosuffix -o` vgFields.
func ParseVGs(out []byte) ([]VG, error) {
	rows, err := parseRows(out, "vg")
	if err != nil {
		return nil, err
	}
	vgs := make([]VG, 0, len(rows))
	for _, r := range rows {
		v := VG{Name: r["vg_name"], UUID: r["vg_uuid"], Attr: r["vg_attr"], Tags: splitTags(r["vg_tags"])}
		for _, f := range []struct {
			key string
			dst *int64
		}{{"vg_size", &v.Size}, {"vg_free", &v.Free}, {"vg_extent_size", &v.ExtentSize}, {"vg_extent_count", &v.ExtentCount}, {"vg_free_count", &v.FreeCount}, {"lv_count", &v.LVCount}} {
			if *f.dst, err = parseBytes(r[f.key]); err != nil {
				return nil, fmt.Errorf("vg %q: %s: %w", v.Name, f.key, err)
			}
		}
		vgs = append(vgs, v)
	}
	return vgs, nil
}

// parseBytes reads a size in bytes (--units b --nosuffix), or a count.
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// parsePercent reads "12.50"; "" (not applicable) is nil.
func parsePercent(s string) (*float64, error) {
	if s == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

func splitTags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
