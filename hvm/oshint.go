package hvm

import (
	"strings"

	"github.com/strata-vm/strata/storage/pattern"
)

var (
	xpName    = pattern.New(`(^|[^a-z0-9])(win)?xp([^a-z]|$)|winxp`)
	w2k3Name  = pattern.New(`2003|2k3|w2k3`)
	w2kName   = pattern.New(`(^|[^a-z0-9])w2k([^0-9]|$)|win2000|windows2000|win2k([^0-9]|$)`)
	winName   = pattern.New(`win|vista|w7|w10|w2k|w2008|w2012|w2016|w2019|w2022`)
	linuxName = pattern.New(`linux|debian|ubuntu|centos|rhel|fedora|suse|sles|alpine|arch|gentoo|slackware|mint`)
)

// GuessOS returns the OS hint (Guest.OS) an imported config suggests, for
// a guest whose config gives none: a Windows family when it has Windows
// hints (viridian, an RTC in local time, a name, disk or CD that says
// Windows, XP or 2003), "linux" when its names say Linux, else "other",
// which lint treats as not Windows.
func GuessOS(g *Guest) string {
	names := []string{strings.ToLower(g.Name)}
	for _, d := range g.Disks {
		_, src := d.Source()
		names = append(names, strings.ToLower(src))
	}
	for _, n := range names {
		switch {
		case xpName.MatchString(n):
			return "winxp"
		case w2k3Name.MatchString(n):
			return "win2003"
		case w2kName.MatchString(n):
			return "win2000"
		}
	}
	for _, n := range names {
		if winName.MatchString(n) {
			return "windows"
		}
	}
	if v := g.Features.Viridian; v != nil && v.Enabled || Val(g.Localtime, false) || strings.TrimSpace(g.Extra["localtime"]) == "1" {
		return "windows"
	}
	for _, n := range names {
		if linuxName.MatchString(n) {
			return "linux"
		}
	}
	return "other"
}
