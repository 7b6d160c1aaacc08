package xlcfg

import (
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
)

// How the importer treats each key of xl.cfg(5) and of the xm dialect it
// replaced (xmdomain.cfg(5), xm's create.py and xmexample.hvm). Every key
// is exactly one of:
//
//   - modelled: read into a field of hvm.Guest, validated, and rendered
//     to xl (and to libvirt and QEMU where they have it);
//   - verbatim: kept in Guest.Extra as written and rendered back to xl
//     (the default for any key not listed here);
//   - dropped: it has no effect on an HVM guest (xl ignores it, or it
//     belonged to xm's own tooling): dropped with a warning naming it;
//   - refused: strata cannot honour it safely: the import fails with an
//     error naming the key and why.
//
// testdata/hvm/xl-keys.tsv lists every key with its treatment and an
// example value; a test checks the parser against it.

// Treatment is how the importer treats a key.
type Treatment string

// Treatments.
const (
	Modelled Treatment = "modelled"
	Verbatim Treatment = "verbatim"
	Dropped  Treatment = "dropped"
	Refused  Treatment = "refused"
)

// modelledKeys are the keys conv reads into the guest.
var modelledKeys = []string{
	"name", "uuid", "type", "builder", "memory", "maxmem", "vcpus", "maxvcpus", "vcpu_avail",
	"acpi", "apic", "pae", "hap", "hpet", "nx", "viridian",
	"bios", "firmware", "bios_path_override", "boot", "kernel", "ramdisk", "cmdline", "root", "extra",
	"disk", "vif",
	"vnc", "vnclisten", "vncdisplay", "vncunused", "vncpasswd", "sdl", "keymap", "vga", "stdvga", "videoram",
	"spice", "spicehost", "spiceport", "spicetls_port", "spicedisable_ticketing", "spicepasswd",
	"spiceagent_mouse", "spicevdagent", "spice_clipboard_sharing",
	"usb", "usbdevice", "serial", "parallel", "soundhw", "pci",
	"on_poweroff", "on_reboot", "on_crash",
	"device_model_version", "device_model_override", "device_model",
	"localtime", "rtc_timeoffset", "passthrough",
}

// droppedKeys have no effect on an HVM guest; the value is why.
var droppedKeys = map[string]string{
	"vncviewer":                     "xm started a VNC viewer with the guest; run one yourself (strata guest console)",
	"vncconsole":                    "xm started a VNC viewer with the guest; run one yourself (strata guest console)",
	"bootloader":                    "it runs a PV bootloader (pygrub); an HVM guest boots from its disks and xl ignores it",
	"bootloader_args":               "it belongs to a PV bootloader, which xl ignores for an HVM guest",
	"bootloader_restrict":           "it belongs to a PV bootloader, which xl ignores for an HVM guest",
	"bootloader_user":               "it belongs to a PV bootloader, which xl ignores for an HVM guest",
	"vif2":                          "netchannel2 is gone; xl ignores vif2 (use vif)",
	"on_xend_start":                 "xend is gone: xl has no daemon that starts guests",
	"on_xend_stop":                  "xend is gone: xl has no daemon that stops guests",
	"guest_os_type":                 "xm passed it to nothing in an HVM guest; strata's os hint (os: windows, ...) is the place for it",
	"description":                   "xm kept it as a note; xl has no such key",
	"monitor":                       "xm put QEMU's monitor on the console; strata reaches QEMU through its own QMP socket",
	"monitor_path":                  "xm put QEMU's monitor on a socket; strata reaches QEMU through its own QMP socket",
	"isa":                           "xm's ISA-only machine is not supported by xl's device model",
	"restart":                       "xm's restart policy is on_poweroff, on_reboot and on_crash in xl",
	"blkif":                         "it made a PV driver domain in xm; xl ignores it",
	"netif":                         "it made a PV driver domain in xm; xl ignores it",
	"tpmif":                         "it made a PV driver domain in xm; xl ignores it",
	"dhcp":                          "it configured a PV kernel's network on its command line; xl ignores it for HVM",
	"ip":                            "it configured a PV kernel's network on its command line (the vif's ip= is per NIC); xl ignores it",
	"netmask":                       "it configured a PV kernel's network on its command line; xl ignores it",
	"gateway":                       "it configured a PV kernel's network on its command line; xl ignores it",
	"hostname":                      "it configured a PV kernel's network on its command line; xl ignores it",
	"interface":                     "it configured a PV kernel's network on its command line; xl ignores it",
	"nfs_server":                    "it configured a PV kernel's NFS root; xl ignores it",
	"nfs_root":                      "it configured a PV kernel's NFS root; xl ignores it",
	"nics":                          "xm's count of NICs; the vif list says how many",
	"bootargs":                      "it belongs to a PV bootloader, which xl ignores for an HVM guest",
	"bootentry":                     "it belongs to a PV bootloader, which xl ignores for an HVM guest",
	"loader":                        "xm's loader is the HVM firmware, which xl chooses itself (bios, firmware)",
	"features":                      "xm's PV kernel features; xl ignores it for HVM",
	"pvshim":                        "the PV shim runs PV guests in PVH mode; it does not apply to an HVM guest",
	"pvshim_path":                   "the PV shim runs PV guests in PVH mode; it does not apply to an HVM guest",
	"pvshim_cmdline":                "the PV shim runs PV guests in PVH mode; it does not apply to an HVM guest",
	"pvshim_extra":                  "the PV shim runs PV guests in PVH mode; it does not apply to an HVM guest",
	"e820_host":                     "it gives a PV guest the host's memory map; xl ignores it for HVM",
	"vhpt":                          "it sized an IA-64 hash table; x86 has none",
	"cpuid_check":                   "xm checked CPUID on restore; xl has no such key",
	"access_control":                "xm's security policy label; xl uses seclabel",
	"target":                        "xm's device model stub domain target; xl ignores it",
	"cpu":                           "xm pinned the first vCPU to this host CPU; set cpus to pin vCPUs in xl",
	"superpages":                    "it asked for superpages for a PV guest; xl ignores it",
	"memory_sharing":                "xm's memory sharing switch; xl has no such key",
	"s3_integrity":                  "it belonged to tboot's S3 integrity check under xm; xl has no such key",
	"machine_address_size":          "it limited a PV guest's machine addresses; xl ignores it for HVM",
	"suppress_spurious_page_faults": "it worked around a PV kernel bug; xl ignores it",
}

// xmRenamed are xm keys whose xl name differs: the importer keeps the
// value under the xl name, with a warning.
var xmRenamed = map[string]string{
	"cpu_cap": "cap",
	"irq":     "irqs",
}

// refusedKeys cannot be honoured safely; the value says why and what to do.
var refusedKeys = map[string]string{
	"fda":                    "a floppy image: strata's guests have no floppy drive; attach the image as a CD-ROM or disk instead, or remove the key",
	"fdb":                    "a floppy image: strata's guests have no floppy drive; attach the image as a CD-ROM or disk instead, or remove the key",
	"vscsi":                  "PV SCSI passthrough of host devices is not supported by xl's HVM guests nor by strata; give the device as a disk (phy:) instead",
	"vusb":                   "xm's PV USB is not supported by xl; use usbctrl and usbdev",
	"gic_version":            "an ARM interrupt controller: strata manages x86 HVM guests",
	"vuart":                  "an ARM UART: strata manages x86 HVM guests",
	"sve":                    "an ARM vector extension: strata manages x86 HVM guests",
	"nr_spis":                "ARM interrupts: strata manages x86 HVM guests",
	"trap_unmapped_accesses": "an ARM setting: strata manages x86 HVM guests",
	"arm_sci":                "an ARM firmware interface: strata manages x86 HVM guests",
	"dtdev":                  "an ARM device tree passthrough: strata manages x86 HVM guests",
	"device_tree":            "an ARM device tree: strata manages x86 HVM guests",
	"tee":                    "an ARM trusted execution environment: strata manages x86 HVM guests",
}

// KeyTreatment says how the importer treats an xl or xm key (and why, for
// dropped and refused keys).
func KeyTreatment(key string) (Treatment, string) {
	if r, ok := refusedKeys[key]; ok {
		return Refused, r
	}
	if r, ok := droppedKeys[key]; ok {
		return Dropped, r
	}
	for _, k := range modelledKeys {
		if k == key {
			return Modelled, ""
		}
	}
	if k, ok := xmRenamed[key]; ok {
		return Verbatim, "kept as xl's " + k
	}
	return Verbatim, ""
}

// knownKey tells whether key is one of xl.cfg(5) or xm: listed above or
// one xl keeps verbatim.
func knownKey(key string) bool {
	if t, _ := KeyTreatment(key); t != Verbatim {
		return true
	}
	_, renamed := xmRenamed[key]
	return verbatimKeys[key] || renamed
}

// verbatimKeys are the xl.cfg(5) keys strata keeps verbatim (any other
// unknown key is kept too; this list lets a hyphenated spelling be
// recognised).
var verbatimKeys = map[string]bool{}

func init() {
	for _, k := range []string{
		"pool", "cpus", "cpus_soft", "cpu_weight", "cap", "vnuma", "on_watchdog", "on_soft_reset",
		"seclabel", "init_seclabel", "max_grant_frames", "max_maptrack_frames", "max_grant_version",
		"nomigrate", "driver_domain", "xend_suspend_evtchn_compat", "vmtrace_buf_kb", "vpmu",
		"xenstore_feature_mask", "xenstore_quota", "vtpm", "p9", "pvcalls", "vfb", "channel", "rdm",
		"usbctrl", "usbdev", "pci_permissive", "pci_msitranslate", "pci_seize", "pci_power_mgmt",
		"gfx_passthru", "rdm_mem_boundary", "ioports", "iomem", "irqs", "max_event_channels", "vdispl",
		"dm_restrict", "device_model_user", "vsnd", "vkb", "virtio", "hdtype", "oos", "shadow_memory",
		"acpi_s3", "acpi_s4", "acpi_laptop_slate", "altp2m", "altp2mhvm", "altp2m_count", "nestedhvm",
		"cpuid", "acpi_firmware", "smbios_firmware", "smbios", "ms_vm_genid", "tsc_mode", "vpt_align",
		"timer_mode", "mmio_hole", "xen_platform_pci", "xen_platform_pci_bar_uc", "hvm_pirq",
		"nographic", "display", "xauthority", "opengl", "spiceusbredirection", "spice_image_compression",
		"spice_streaming_video", "vkb_device", "usbversion", "vendor_device", "stubdomain_kernel",
		"stubdomain_cmdline", "stubdomain_ramdisk", "stubdomain_memory", "device_model_stubdomain_override",
		"device_model_stubdomain_seclabel", "device_model_args", "device_model_args_pv",
		"device_model_args_hvm", "llc_colors", "mca_caps", "msr_relaxed", "firmware_override",
		"period", "slice", "latency", "extratime",
	} {
		verbatimKeys[k] = true
	}
}

// ListedKeys returns every key this file names, with its treatment: the
// keys the coverage table (testdata/hvm/xl-keys.tsv) must list.
func ListedKeys() map[string]Treatment {
	out := map[string]Treatment{}
	for _, k := range modelledKeys {
		out[k] = Modelled
	}
	for k := range droppedKeys {
		out[k] = Dropped
	}
	for k := range refusedKeys {
		out[k] = Refused
	}
	for k := range verbatimKeys {
		out[k] = Verbatim
	}
	for k := range xmRenamed {
		out[k] = Verbatim
	}
	return out
}

// ConvertSetting converts one xl setting given on its own (as `guest set` takes
// it) to the guest it describes: key with value in xl syntax (1,
// "text", [ "a", "b" ]), where a bare word that is not a number is taken
// as a string (serial=pty, vif=bridge=xenbr1,model=e1000). It returns
// the guest the setting alone gives and the one no setting gives: the
// fields where they differ are the ones the setting sets. Errors and
// warnings name the key, never a file or line.
func ConvertSetting(key, value string) (set, none *hvm.Guest, ws []Warning, err error) {
	switch t, why := KeyTreatment(key); t {
	case Refused:
		return nil, nil, nil, storage.Errorf(storage.ErrInvalid, "%s is refused: %s", key, why)
	case Dropped:
		return nil, nil, nil, storage.Errorf(storage.ErrInvalid, "%s has no effect on an HVM guest: %s", key, why)
	}
	val, perr := ParseValue(value)
	if perr != nil {
		if strings.HasPrefix(strings.TrimSpace(value), "[") || strings.ContainsAny(value, "\n\x00") {
			if hvm.SecretKey(key) || hvm.SecretValue(value) {
				return nil, nil, nil, storage.Errorf(storage.ErrInvalid, "%s: the value (not quoted: it holds a password) is not one xl value", key)
			}
			return nil, nil, nil, storage.Errorf(storage.ErrInvalid, "%s: %q is not an xl value: write a number, text or a [ list ] of quoted items", key, value)
		}
		val = &Value{Kind: String, Text: value}
	}
	build := func(with bool) (*hvm.Guest, []Warning, error) {
		c := &Config{index: map[string]*Setting{}}
		add := func(k string, v *Value) {
			s := &Setting{Key: k, Value: v, Line: 1, Lines: []int{1}}
			c.index[k] = s
			c.Settings = append(c.Settings, s)
		}
		add("name", &Value{Kind: String, Text: "setting"})
		add("type", &Value{Kind: String, Text: "hvm"})
		if with {
			add(key, val)
		}
		return c.Guest()
	}
	if set, ws, err = build(true); err != nil {
		return nil, nil, ws, err
	}
	none, _, err = build(false)
	return set, none, ws, err
}

// XLName is the xl key a key is kept under: xm's names that xl spells
// differently (cpu_cap is cap) become xl's, others stay.
func XLName(key string) string {
	if to, ok := xmRenamed[key]; ok {
		return to
	}
	return key
}
