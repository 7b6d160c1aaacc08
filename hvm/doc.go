// Package hvm holds strata's guest definition: the Guest model of a Xen or
// KVM HVM guest (firmware, CPUs, memory, disks, NICs, console, emulated
// devices, lifecycle) and its life cycle as data:
//
//	Load (Unmarshal, xlcfg.Parse, libvirt.ParseXML)
//	  → FillDefaults → Validate (every problem at once) → render
//	    (xlcfg.Render, libvirt.Render, qemu.Argv)
//
// Vocabulary: a guest is one virtual machine definition; a disk of a guest
// names its backing store by exactly one of volume (a strata volume name),
// media (a strata ISO/medium name), path (a host file) or device (a host
// block device), or by none for an empty CD-ROM drive. Volume and media
// names are resolved to host paths with ResolveDisks before rendering.
//
// Invariants: "not set" is distinct from zero and false (pointer fields are
// nil when not set), so an imported config renders back without gaining
// values it never had; xl keys strata does not model are kept verbatim in
// Guest.Extra (unless hvm/xlcfg drops them as without effect or refuses
// them); the VNC password is a Secret, which never appears in String,
// JSON or slog output (Redacted gives a printable copy), and a value kept
// verbatim that names a password (SecretKey, SecretValue) is treated as
// one; a copy without passwords (WithoutSecrets) never has a console off
// loopback that a password guarded. Nothing in this package or below it
// executes a config file or starts a process.
package hvm
