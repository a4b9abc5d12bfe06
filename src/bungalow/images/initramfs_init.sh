#!/bin/sh
# /init of a bungalow guest (docs/architecture.md, "Guest boot"), run by busybox sh as PID 1.
#
# Under TCG every fork and exec costs milliseconds of emulated kernel work, so this
# script uses shell builtins (read, echo, case, redirections) wherever it can and
# runs busybox applets only for what a builtin cannot do.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
set -f  # words of /proc/cmdline are never file patterns

fail() {
    echo "bungalow-init: $*; the VM cannot start and powers off now."
    poweroff -f
    exit 1  # poweroff failed: leaving PID 1 panics the kernel instead
}

mount -t proc -o nosuid,nodev,noexec proc /proc || fail "mounting /proc failed"
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys || fail "mounting /sys failed"
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev || fail "mounting /dev failed"

# Dependencies come first in this list; it was computed when the image was built.
while read -r module; do
    insmod "/lib/modules/$module.ko" || fail "loading the kernel module $module failed"
done </lib/modules/load-order

root=/dev/vda
init=agent
hostname=
machine_id=
address=10.0.2.15/24
gateway=10.0.2.2
dns=
search=
balloon=
read -r cmdline </proc/cmdline
for word in $cmdline; do
    case "$word" in
        root=/dev/*) root="${word#root=}" ;;
        bungalow.init=*) init="${word#*=}" ;;
        bungalow.hostname=*) hostname="${word#*=}" ;;
        bungalow.machine_id=*) machine_id="${word#*=}" ;;
        bungalow.ip=*) address="${word#*=}" ;;
        bungalow.gw=*) gateway="${word#*=}" ;;
        bungalow.dns=*) dns="${word#*=}" ;;
        bungalow.search=*) search="${word#*=}" ;;
        bungalow.balloon=*) balloon="${word#*=}" ;;
    esac
done

# The disk usually exists as soon as virtio_blk is loaded; wait up to 10 s for a slow probe.
tries=0
while [ ! -b "$root" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 1000 ] || fail "the root disk $root never appeared"
    usleep 10000
done

# discard: blocks the guest frees are discarded as each journal commit lands, and QEMU
# (discard=unmap) punches them out of the VM's overlay, so deleted files give the host its
# space back within seconds (docs/architecture.md, "Guest boot").
mount -t ext4 -o rw,noatime,noinit_itable,discard "$root" /newroot || fail "mounting the root disk $root failed"
[ -x /newroot/usr/bin/python3 ] || fail "the root disk $root has no /usr/bin/python3"
# The balloon (bungalow.balloon=1, qemu/argv.py): its driver reports the pages the guest frees,
# and QEMU gives them back to the host. It comes from the root disk's own module tree (every
# image has the kernel's modules there), so images built before balloons have it too.
if [ "$balloon" = 1 ] && [ ! -d /sys/module/virtio_balloon ]; then
    read -r release </proc/sys/kernel/osrelease
    drivers="/newroot/lib/modules/$release/kernel/drivers/virtio"
    for ko in "$drivers/virtio_balloon.ko" "$drivers/virtio_balloon.ko.xz"; do
        if [ -e "$ko" ]; then
            insmod "$ko" || echo "bungalow-init: loading $ko failed; freed memory stays with the VM."
            break
        fi
    done
fi
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "mounting /run failed"
cp -r /bungalow /newroot/run/ || fail "copying the guest agent to /run/bungalow failed"

# The VM's own machine-id (32 lowercase hex digits), here rather than through the agent once it
# runs: a request to the agent right after it answers waits for its first imports (0.2-0.4 s).
case "$machine_id" in
    *[!0-9a-f]*) echo "bungalow-init: ignoring the malformed machine-id $machine_id" ;;
    ????????????????????????????????)
        echo "$machine_id" >/newroot/etc/machine-id
        if [ -f /newroot/var/lib/dbus/machine-id ] && [ ! -L /newroot/var/lib/dbus/machine-id ]; then
            echo "$machine_id" >/newroot/var/lib/dbus/machine-id
        fi
        ;;
    ?*) echo "bungalow-init: ignoring the malformed machine-id $machine_id" ;;
esac

# A server image (images/server.py): systemd is PID 1, mounts the rest, and its
# systemd-networkd configures the NICs; udev starts the agent from /run/bungalow.
if [ "$init" = systemd ]; then
    [ -z "$hostname" ] || echo "$hostname" >/proc/sys/kernel/hostname
    mount --move /proc /newroot/proc || fail "moving /proc failed"
    mount --move /sys /newroot/sys || fail "moving /sys failed"
    mount --move /dev /newroot/dev || fail "moving /dev failed"
    exec switch_root /newroot /sbin/init
fi

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip addr add "$address" dev eth0 && ip link set eth0 up \
        && ip route add default via "$gateway" \
        || echo "bungalow-init: configuring eth0 failed; the VM has no network."
fi
# On a private network its dnsmasq answers for the VMs' names under the network's domain.
# bungalow.search lists every network's domain, comma-separated (the first NIC's first).
if [ -n "$dns" ]; then
    ifs=$IFS; IFS=,; set -- $search; IFS=$ifs
    { echo "nameserver $dns"; [ -z "$search" ] || echo "search $*"; } >/newroot/etc/resolv.conf
fi

if [ -n "$hostname" ]; then
    echo "$hostname" >/proc/sys/kernel/hostname
fi

mount --move /proc /newroot/proc || fail "moving /proc failed"
mount --move /sys /newroot/sys || fail "moving /sys failed"
mount --move /dev /newroot/dev || fail "moving /dev failed"
exec switch_root /newroot /usr/bin/python3 -S /run/bungalow/agent.py --init
