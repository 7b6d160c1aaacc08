#!/bin/sh
# /init of strata's test guest (hvm/boot/boottest, LinuxKit): busybox-static
# and a few kernel modules in an initramfs. The kernel command line chooses
# the job (strata.mode=install|patch|check|wait|agent); every job ends in a
# power-off, a failed one after a line starting "strata-testguest: FAILED".
# Lines printed here never contain the disk's marker prefix, so a serial log
# holding "STRATA-MARKER: " came from the disk's own boot sector.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "strata-testguest: $*"; }
off() { sync; poweroff -f; sleep 10; }
fail() { say "FAILED: $*"; off; }

for m in $(cat /lib/modules/load); do
	insmod "/lib/modules/$m" 2>/dev/null || say "insmod $m failed"
done

mode= marker= diskend= end=poweroff
for a in $(cat /proc/cmdline); do
	case $a in
	strata.mode=*) mode=${a#*=} ;;
	strata.marker=*) marker=${a#*=} ;;
	strata.disk=*) diskend=${a#*=} ;;
	strata.end=*) end=${a#*=} ;;
	strata.hotplug=*) hotplug=${a#*=} ;;
	strata.agent=*) agent=${a#*=} ;;
	esac
done
# strata.end=reboot ends a job with a reboot (as an installer's text mode
# does) instead of a power-off.
if [ "$end" = reboot ]; then
	off() { say "rebooting"; sync; reboot -f; sleep 10; }
fi

# The target disk: the first hard disk (IDE/SATA/SCSI, then virtio), never
# a CD (sr*). Disks appear asynchronously after the modules load.
find_disk() {
	i=0
	while [ $i -lt 100 ]; do
		for d in /sys/block/sd* /sys/block/vd* /sys/block/hd*; do
			[ -e "$d" ] || continue
			[ "$(cat "$d/size")" -gt 0 ] 2>/dev/null || continue
			disk=/dev/${d##*/}
			[ -b "$disk" ] && return 0
		done
		usleep 100000
		i=$((i + 1))
	done
	return 1
}

# write_marker VALUE: sector 1 holds the marker line, NUL-padded; read back
# past the page cache.
write_marker() {
	printf 'STRATA-MARKER: %s\n' "$1" >/tmp/marker
	dd if=/tmp/marker of="$disk" bs=512 seek=1 count=1 conv=sync,notrunc,fsync 2>/dev/null || fail "cannot write the marker to $disk"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	got=$(dd if="$disk" bs=512 skip=1 count=1 2>/dev/null | head -n 1)
	[ "$got" = "STRATA-MARKER: $1" ] || fail "$disk reads back a different marker"
}

# strata.disk=wait: the marker disk, when it boots, waits for the ACPI
# power button after printing its marker (the flag in the marker sector's
# last byte); strata.disk=poweroff: it powers off at once. The patch mode
# keeps what the disk had unless told.
disk_flag() { dd if="$disk" bs=1 skip=1023 count=1 2>/dev/null; }
set_disk_end() {
	case $1 in
	wait) printf W ;;
	*) printf '\000' ;;
	esac | dd of="$disk" bs=1 seek=1023 count=1 conv=notrunc,fsync 2>/dev/null || fail "cannot write the marker flag to $disk"
}

# A disk the guest may write to: all zeros (fresh) or a marker disk.
sector0() { dd if="$disk" bs=512 count=1 2>/dev/null >/tmp/sector0; }

# strata.mode=agent: the QEMU guest agent (the real qemu-ga) on its
# virtio-serial port, over an ext2 filesystem on the first hard disk that
# the guest keeps writing to; then it waits for the power button as the
# wait mode does. The kernel's writeback is off: the guest's writes reach
# the disk only when the filesystem is synced, which a freeze does.
if [ "$mode" = agent ]; then
	find_disk || fail "no hard disk for the agent's filesystem"
	if [ "$(dd if="$disk" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' ')" != 53ef ]; then
		mke2fs -q "$disk" >/dev/null 2>&1 || fail "cannot make a filesystem on $disk"
	fi
	mount -t ext2 "$disk" /mnt || fail "cannot mount $disk"
	echo 0 >/proc/sys/vm/dirty_writeback_centisecs
	echo 8640000 >/proc/sys/vm/dirty_expire_centisecs
	port=
	i=0
	while [ -z "$port" ] && [ $i -lt 100 ]; do
		for p in /sys/class/virtio-ports/*; do
			[ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && [ -c "/dev/${p##*/}" ] && port=/dev/${p##*/}
		done
		[ -n "$port" ] || usleep 100000
		i=$((i + 1))
	done
	[ -n "$port" ] || fail "no virtio-serial port org.qemu.guest_agent.0"
	if [ "$agent" = flood ]; then
		# strata.agent=flood: a hostile agent, which never answers and
		# floods the channel with bytes holding no line end and no 0xFF.
		(yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | tr -d '\n' >"$port") &
		echo $! >/tmp/qemu-ga.pid
	else
		# -d: qemu-ga writes its pidfile once it runs.
		LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /usr/sbin/qemu-ga -d -m virtio-serial -p "$port" -t /tmp -f /tmp/qemu-ga.pid \
			-F/strata/fsfreeze-hook -l /tmp/qemu-ga.log
	fi
	i=0
	while [ ! -s /tmp/qemu-ga.pid ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
	[ -s /tmp/qemu-ga.pid ] || fail "qemu-ga did not start: $(cat /tmp/qemu-ga.log 2>/dev/null)"
	(
		n=0
		while :; do
			n=$((n + 1))
			echo "$n" >/mnt/count.new && mv /mnt/count.new /mnt/count && say "agent wrote $n"
			usleep 200000
		done
	) &
	say "agent ready"
	mode=wait
fi

case $mode in
install)
	find_disk || fail "no hard disk to install to"
	sector0
	dd if=/dev/zero bs=512 count=1 2>/dev/null >/tmp/zero
	if ! cmp -s /tmp/sector0 /tmp/zero && ! cmp -s /tmp/sector0 /strata/bootsector.bin; then
		fail "$disk is not empty: refusing to install over it"
	fi
	dd if=/strata/bootsector.bin of="$disk" bs=512 count=1 conv=notrunc,fsync 2>/dev/null || fail "cannot write the boot sector to $disk"
	write_marker "${marker:-installed-1}"
	set_disk_end "${diskend:-poweroff}"
	say "installed marker ${marker:-installed-1} on $disk"
	say "install done"
	off
	;;
patch)
	find_disk || fail "no hard disk to patch"
	sector0
	cmp -s /tmp/sector0 /strata/bootsector.bin || fail "$disk holds no installed test guest"
	[ "$(disk_flag)" = W ] && diskend=${diskend:-wait}
	write_marker "${marker:-bad-patch}"
	set_disk_end "${diskend:-poweroff}"
	say "patched marker to ${marker:-bad-patch} on $disk"
	say "patch applied"
	off
	;;
check)
	find_disk || fail "no hard disk to check"
	m=$(dd if="$disk" bs=512 skip=1 count=1 2>/dev/null | head -n 1)
	say "disk marker: ${m#STRATA-MARKER: }"
	off
	;;
wait)
	# ACPI power button: the button module turns it into a key press on an
	# input device named "Power Button"; the first event read powers off.
	# Each device is opened (fd 3, 4, ...) before saying we wait, so that a
	# press right after that line is queued, not lost.
	fd=3
	for e in /sys/class/input/event*; do
		[ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] || continue
		dev=/dev/input/${e##*/} i=0
		while [ ! -c "$dev" ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
		[ -c "$dev" ] || continue
		eval "exec $fd<$dev"
		eval "(dd bs=24 count=1 of=/dev/null <&$fd 2>/dev/null && : >/tmp/pressed) &"
		fd=$((fd + 1))
	done
	[ $fd -gt 3 ] || fail "no power button input device"
	# Disks and NICs hot-plugged or removed while the guest waits are
	# reported (strata.hotplug=write also writes a line to each new disk),
	# so that a test sees what the guest sees.
	(
		old="$(ls /sys/block /sys/class/net)"
		while :; do
			usleep 100000
			new="$(ls /sys/block /sys/class/net)"
			for b in $new; do
				echo "$old" | grep -qx "$b" && continue
				if [ -e "/sys/block/$b" ]; then
					say "disk added: $b"
					if [ "$hotplug" = write ]; then
						echo "written by the guest to $b" | dd of="/dev/$b" conv=sync,notrunc,fsync 2>/dev/null && say "wrote to $b"
					fi
				else
					say "nic added: $b $(cat "/sys/class/net/$b/address")"
				fi
			done
			for b in $old; do
				echo "$new" | grep -qx "$b" || say "device removed: $b"
			done
			old=$new
		done
	) &
	say "waiting for the power button"
	while [ ! -e /tmp/pressed ]; do usleep 100000; done
	say "power button pressed"
	off
	;;
*)
	fail "unknown strata.mode '$mode': use install, patch, check, wait or agent"
	;;
esac
