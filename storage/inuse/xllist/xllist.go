// Package xllist reads what Xen's `xl list` prints: the JSON of `xl list
// -l` (one libxl_domain_config per domain, as libxl generates it) and the
// table of plain `xl list` (the state letters). It is the one parser of
// both, shared by the in-use check (storage/inuse) and the xl guest driver
// (hvm/boot/xl); it imports nothing of strata's, so both can.
//
// Vocabulary: a domain is a Xen guest (dom0, the host's own, included);
// its domid is the number Xen gives it at creation (a domain that reboots
// under xl's on_reboot=restart is created again with a new one).
//
// Invariants: only the fields strata uses are kept. `xl list -l` prints
// the whole configuration, VNC and SPICE passwords included: nothing here
// keeps a password, and callers must not log the raw output.
package xllist

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Domain is one entry of `xl list -l`.
type Domain struct {
	DomID int
	Name  string
	UUID  string
	Type  string // hvm, pv or pvh
	Disks []Disk
	// VNC is the HVM console as configured (b_info."type.hvm".vnc).
	VNC VNC
	// Lifecycle actions (destroy, restart, preserve, ...); "" means
	// libxl's default, destroy, which libxl leaves out of the JSON.
	OnPoweroff, OnReboot, OnCrash string
}

// Disk is one disk of a domain.
type Disk struct {
	// Path is what the backend opens: a file, a block device, or a
	// script's argument; "" for an empty CD-ROM drive.
	Path    string
	Vdev    string
	Backend string // phy, qdisk, tap, standalone; "" when libxl chose
	Format  string // raw, qcow2, ..., empty
	Script  string
	CDROM   bool
	// ReadWrite is libxl's readwrite flag.
	ReadWrite bool
}

// VNC is a domain's configured VNC console.
type VNC struct {
	Enabled bool
	// Listen is vnclisten: an address, or "address:display" as libxl
	// also accepts.
	Listen string
	// Display is vncdisplay (port 5900+Display) when set.
	Display *int
	// FindUnused is vncunused: QEMU picks a free port at start, which
	// only xenstore (console/vnc-port) knows afterwards.
	FindUnused bool
}

// defbool reads libxl's defbool, which its JSON writes as the strings
// "True", "False" or "<default>".
type defbool string

func (b defbool) true() bool { return b == "True" }

type rawDomain struct {
	DomID  *int `json:"domid"`
	Config struct {
		CInfo struct {
			Type string `json:"type"`
			Name string `json:"name"`
			UUID string `json:"uuid"`
		} `json:"c_info"`
		BInfo struct {
			HVM *struct {
				VNC *struct {
					Enable     defbool `json:"enable"`
					Listen     string  `json:"listen"`
					Display    *int    `json:"display"`
					FindUnused defbool `json:"findunused"`
				} `json:"vnc"`
			} `json:"type.hvm"`
		} `json:"b_info"`
		Disks []struct {
			PdevPath string `json:"pdev_path"`
			// Target is xl.cfg's name for the path; libxl's JSON says
			// pdev_path. Read in case a toolstack writes it.
			Target    string `json:"target"`
			Vdev      string `json:"vdev"`
			Backend   string `json:"backend"`
			Format    string `json:"format"`
			Script    string `json:"script"`
			IsCDROM   int    `json:"is_cdrom"`
			ReadWrite int    `json:"readwrite"`
		} `json:"disks"`
		OnPoweroff string `json:"on_poweroff"`
		OnReboot   string `json:"on_reboot"`
		OnCrash    string `json:"on_crash"`
	} `json:"config"`
}

// ParseLong reads the output of `xl list -l [DOMAIN]` (JSON, xl's
// default output format): an array of {"domid": N, "config": {...}}.
// A domain whose configuration xl could not read is left out by xl
// itself (it says so on stderr).
func ParseLong(out []byte) ([]Domain, error) {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return nil, nil
	}
	if out[0] == '(' {
		return nil, fmt.Errorf("xl list -l printed S-expressions (output_format=\"sxp\" in xl.conf?): strata reads JSON; set output_format=\"json\" in /etc/xen/xl.conf")
	}
	var raw []rawDomain
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("xl list -l printed JSON strata cannot read: %w", err)
	}
	doms := make([]Domain, 0, len(raw))
	for i, r := range raw {
		if r.DomID == nil {
			return nil, fmt.Errorf("xl list -l: entry %d has no domid", i)
		}
		c := r.Config
		d := Domain{
			DomID:      *r.DomID,
			Name:       c.CInfo.Name,
			UUID:       c.CInfo.UUID,
			Type:       c.CInfo.Type,
			OnPoweroff: c.OnPoweroff,
			OnReboot:   c.OnReboot,
			OnCrash:    c.OnCrash,
		}
		if h := c.BInfo.HVM; h != nil && h.VNC != nil {
			d.VNC = VNC{Enabled: h.VNC.Enable.true(), Listen: h.VNC.Listen, Display: h.VNC.Display, FindUnused: h.VNC.FindUnused.true()}
		}
		for _, k := range c.Disks {
			p := k.PdevPath
			if p == "" {
				p = k.Target
			}
			d.Disks = append(d.Disks, Disk{Path: p, Vdev: k.Vdev, Backend: k.Backend, Format: k.Format, Script: k.Script, CDROM: k.IsCDROM != 0, ReadWrite: k.ReadWrite != 0})
		}
		doms = append(doms, d)
	}
	return doms, nil
}

// Entry is one line of plain `xl list`.
type Entry struct {
	Name   string
	DomID  int
	MemMiB int
	VCPUs  int
	// State is xl's six state columns: r (running on a CPU), b (blocked),
	// p (paused), s (shut down), the shutdown reason (- poweroff or none,
	// r reboot, s suspend, c crash, w watchdog, S soft reset) and d
	// (dying); "-" where a column does not hold.
	State string
	// CPUSeconds is the CPU time the domain has used (not its uptime).
	CPUSeconds float64
}

// Has reports whether the state column letter c is set ('r', 'b', 'p',
// 's', 'd'; the reason column is ShutdownReason).
func (e Entry) Has(c byte) bool {
	if len(e.State) != 6 {
		return false
	}
	i := strings.IndexByte("rbps-d", c)
	return i >= 0 && c != '-' && e.State[i] == c
}

// ShutdownReason is the fifth column: '-' (none or poweroff), 'r', 's',
// 'c', 'w' or 'S'.
func (e Entry) ShutdownReason() byte {
	if len(e.State) != 6 {
		return '-'
	}
	return e.State[4]
}

// ParseTable reads the output of plain `xl list [DOMAIN]`: a header line,
// then "NAME ID MEM VCPUS STATE TIME" per domain (xl_info.c's
// list_domains, no -v/-Z/-c/-n columns).
func ParseTable(out []byte) ([]Entry, error) {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "Name") {
		return nil, fmt.Errorf("xl list printed no header line (%q)", firstLine(out))
	}
	var es []Entry
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 6 {
			return nil, fmt.Errorf("xl list: cannot read line %q", l)
		}
		t := f[len(f)-5:]
		var e Entry
		var err error
		e.Name = strings.Join(f[:len(f)-5], " ")
		if e.DomID, err = strconv.Atoi(t[0]); err != nil {
			return nil, fmt.Errorf("xl list: line %q: domain id %q", l, t[0])
		}
		if e.MemMiB, err = strconv.Atoi(t[1]); err != nil {
			return nil, fmt.Errorf("xl list: line %q: memory %q", l, t[1])
		}
		if e.VCPUs, err = strconv.Atoi(t[2]); err != nil {
			return nil, fmt.Errorf("xl list: line %q: vcpus %q", l, t[2])
		}
		if len(t[3]) != 6 {
			return nil, fmt.Errorf("xl list: line %q: state %q is not six letters", l, t[3])
		}
		e.State = t[3]
		if e.CPUSeconds, err = strconv.ParseFloat(t[4], 64); err != nil {
			return nil, fmt.Errorf("xl list: line %q: time %q", l, t[4])
		}
		es = append(es, e)
	}
	return es, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
