#!/bin/sh
# /init of strata's run kit (hvm/boot/boottest, guestrun.go): loads the
# kernel modules, waits for the scratch disks, runs /strata/program with
# the arguments in /strata/args and the environment in /strata/env (one a
# line), its output on the second serial port (ttyS1), then prints its
# exit code there and powers off. The kernel and this script talk on the
# console (ttyS0), so that kernel messages never cut into the program's
# lines.
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /run/lock /run/lvm /tmp /etc/lvm/backup /etc/lvm/archive /dev/shm

say() { echo "strata-guestrun: $*"; }
out=/dev/ttyS1
end() {
	echo "strata-guestrun: exit $1" >$out
	sync
	usleep 100000
	poweroff -f
	sleep 10
}

for m in $(cat /lib/modules/load); do
	insmod "/lib/modules/$m" 2>/dev/null || say "insmod $m failed"
done
# raw: no \r added, no echo of what the host sends.
stty -F $out raw -echo 2>/dev/null

# The scratch disks: virtio disks appear asynchronously after the modules
# load; they are vda, vdb, ... in the order QEMU was given them.
want=$(cat /strata/disks)
i=0
while :; do
	disks=
	n=0
	for d in /sys/block/vd*; do
		[ -e "$d" ] && [ -b "/dev/${d##*/}" ] || continue
		disks="$disks /dev/${d##*/}"
		n=$((n + 1))
	done
	[ "$n" -ge "$want" ] && break
	[ $i -ge 100 ] && { say "only $n of $want scratch disks appeared" >$out; end 125; }
	usleep 100000
	i=$((i + 1))
done
export STRATA_GUEST_DISKS="${disks# }"

set --
while IFS= read -r a; do set -- "$@" "$a"; done </strata/args
while IFS= read -r e; do export "$e"; done </strata/env
cd /tmp
echo "strata-guestrun: start $(cut -d' ' -f1 /proc/uptime)" >$out
/strata/program "$@" >$out 2>&1 </dev/null
end $?
