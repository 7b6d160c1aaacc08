#!/usr/bin/env bash
# make demo: the admin's story on a throwaway state home, printing each
# command before running it. Usage: .ci/demo.sh path/to/strata
set -euo pipefail
strata=$(realpath "${1:-bin/strata}")
home=$(mktemp -d /tmp/strata-demo.XXXXXX)
work=$(mktemp -d /tmp/strata-demo-work.XXXXXX)
trap 'rm -rf "$home" "$work"' EXIT
export STRATA_HOME=$home

step() { printf '\n\033[1m## %s\033[0m\n' "$1"; }
run() { printf '$ strata %s\n' "$*"; "$strata" "$@"; }

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

step "All volumes"
run volume list
run --output json volume list | head -20
echo "..."

step "Clean up"
run volume delete falstaff
run volume list
echo
echo "demo finished: the state home $home is removed on exit"
