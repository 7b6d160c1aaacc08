#!/usr/bin/env bash
# make demo: the admin's story on a throwaway state home, printing each
# command before running it. Usage: .ci/demo.sh path/to/strata path/to/strata-testguest
set -euo pipefail
strata=$(realpath "${1:-bin/strata}")
testguest=$(realpath "${2:-bin/strata-testguest}")
home=$(mktemp -d /tmp/strata-demo.XXXXXX)
work=$(mktemp -d /tmp/strata-demo-work.XXXXXX)
cleanup() {
  # Guests the demo left running go first (their QEMU is strata's).
  for g in $("$strata" guest list 2>/dev/null | awk 'NR>1 && $2!="stopped" {print $1}'); do
    "$strata" guest kill "$g" >/dev/null 2>&1 || true
  done
  rm -rf "$home" "$work"
}
trap cleanup EXIT
export STRATA_HOME=$home

step() { printf '\n\033[1m## %s\033[0m\n' "$1"; }
run() { printf '$ strata'; printf ' %q' "$@"; echo; "$strata" "$@"; }

step "A fresh state home: the default pool exists on first use ($home)"
run pool list
run pool info default

step "A 100 GiB system disk for a Windows guest: sparse, created instantly"
run volume create win2k3 --size 100G
printf '$ du -h --apparent-size / du -h\n'; du -h --apparent-size "$home"/pools/default/*.img; du -h "$home"/pools/default/*.img

step "A qcow2 disk for a KVM guest (qemu-img does the work)"
run volume create web01 --size 20G --format qcow2

step "A data disk for the guest's PV drivers: GPT + FAT32, laid out by strata"
run volume create pvdrivers --size 256M --partition gpt --fs fat32 --label PVDRIVERS
run --output json volume info pvdrivers

step "An existing Xen image with holes, copied into the pool: holes stay holes"
truncate -s 8G "$work/falstaff.img"
printf 'boot sector of falstaff' | dd of="$work/falstaff.img" conv=notrunc status=none
printf '$ truncate -s 8G falstaff.img (plus a few bytes of data)\n'
run volume import "$work/falstaff.img" --copy
run volume info falstaff

step "Grow a disk (shrinking needs --shrink, and never cuts a partition)"
run volume resize web01 --size 40G
run volume resize pvdrivers --size 64M --shrink || echo "(refused, as it should be: exit $?)"

step "A CD image of drivers for the guest, built from a folder"
mkdir -p "$work/drivers/xenpv"
echo "GPL PV drivers for Windows (demo)" > "$work/drivers/xenpv/README.txt"
run iso build "$work/drivers" pvdrivers-iso --label PVDRIVERS
run iso info pvdrivers-iso --files

step "The guest: its system disk and its data disk"
run guest define win2k3-guest --disk win2k3 --disk web01 --cdrom pvdrivers-iso --nic bridge=xenbr0 --vnc --tablet --os win2003
sys=$("$strata" --output json volume info win2k3 | sed -n 's/.*"path": "\(.*\)".*/\1/p' | head -1)
printf 'clean install' | dd of="$sys" conv=notrunc status=none
printf '$ (the installer writes "clean install" to the system disk)\n'

step "A restore point before patching"
run snapshot create win2k3-guest --name clean --description "fresh install"

step "A patch that goes wrong, with automatic rollback"
printf '#!/bin/sh\nprintf "broken patch" | dd of="%s" conv=notrunc status=none\necho "patch: installing... failed" >&2\nexit 3\n' "$sys" > "$work/patch.sh"
chmod +x "$work/patch.sh"
run snapshot run win2k3-guest --description "monthly patch" --rollback-on-failure -- "$work/patch.sh" || echo "(the patch exited $?: strata rolled back)"
printf '$ head -c 13 system-disk: '; head -c 13 "$sys"; echo

step "Every point survives, including the failed state (post) and the pre-rollback point"
run snapshot list win2k3-guest

step "Roll forward to the broken state to inspect it, then back to the clean install"
run snapshot rollback win2k3-guest 3
printf '$ head -c 12 system-disk: '; head -c 12 "$sys"; echo
run snapshot rollback win2k3-guest clean
printf '$ head -c 13 system-disk: '; head -c 13 "$sys"; echo

step "Freeze the clean install as a golden image, stamp out two guests"
run golden create win2k3-gold --from win2k3-guest@clean
run clone win2k3-gold lab --count 2
run golden list
run guest lint lab-1

step "lab-1 rendered for Xen (xl.cfg): its own UUID and MAC, disks linked to the golden"
run guest render lab-1 --format xl

step "Health check"
run doctor

step "All volumes"
run volume list
run --output json volume list | head -20
echo "..."

step "Clean up a volume nobody uses"
run volume delete falstaff
run volume list

# ---------------------------------------------------------------------
# A real guest, booted: a tiny Linux installer stands in for Windows
# Setup (phase 1 copies the system onto the disk and reboots; the disk
# then boots by itself), under QEMU with TCG.

step "An install CD: the test guest's kernel, initramfs and isolinux, built into an ISO by strata"
printf '$ strata-testguest -out kit   (a Debian cloud kernel and busybox, downloaded once and cached)\n'
"$testguest" -out "$work/kit" -install-reboots >/dev/null
run iso build "$work/kit/install" installer --boot isolinux/isolinux.bin --boot-catalog isolinux/boot.cat --boot-info-table
run iso build "$work/kit/patch" bad-patch --boot isolinux/isolinux.bin --boot-catalog isolinux/boot.cat --boot-info-table
run iso info installer

step "A guest to install: an empty 64 MiB disk"
run volume create tiny-sys --size 64M
run guest define tiny --disk tiny-sys --memory 256 --os linux --driver qemu

step "Install in two phases: phase 1 from the CD stops at its reboot (on_reboot=destroy), phase 2 boots from the disk"
run guest install tiny --media installer --snapshot
run guest install tiny --status
run snapshot list tiny

step "Boot the installed guest; its disk prints what was installed"
run guest start tiny --wait-serial 'STRATA-MARKER'
sleep 1
run guest status tiny

step "A patch that breaks the system: boot the patch CD"
run guest set tiny disks.1.media=bad-patch boot=dc
run guest start tiny --wait-serial 'patch applied'
sleep 1
run guest set tiny boot=c
run guest start tiny --wait-serial 'STRATA-MARKER'
sleep 1

step "Roll back to the installed point: disk and definition; the guest boots the installed system again"
run snapshot rollback tiny installed
run guest start tiny --wait-serial 'STRATA-MARKER'
sleep 1

step "A running guest's disks are in use: a rollback under it is refused (without --restart)"
run guest set tiny disks.1.media=bad-patch boot=dc
run guest start tiny
run snapshot rollback tiny installed || echo "(refused, as it should be: exit $?)"
run snapshot rollback tiny installed --restart --timeout 20s
sleep 1
run guest status tiny

step "Freeze the installed guest as a golden image; a linked clone boots it"
run golden create tiny-gold --from tiny@installed
run clone tiny-gold tiny-lab
run guest start tiny-lab --wait-serial 'STRATA-MARKER'
sleep 1
run guest list
echo
echo "demo finished: the state home $home is removed on exit"
