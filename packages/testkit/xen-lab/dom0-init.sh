#!/bin/busybox sh
# /init of the Xen lab's dom0 initramfs (built by src/xen-lab/build.ts).
#
# The initramfs holds busybox, the kernel modules listed in /mod/order (dependencies first) and
# this script. It turns the host's root, shared read-only over 9p, into dom0's root and hands
# over to the session script named by `vmedlab.session=` on the kernel command line. Lines
# starting with "VMED-LAB:" are markers the host waits for; keep their wording in step with
# src/xen-lab/console.ts.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "VMED-LAB: dom0-kernel"

fail() {
	echo "VMED-LAB: fail $*"
	poweroff -f
}

arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
SESSION=$(arg vmedlab.session)
[ -n "$SESSION" ] || fail "no vmedlab.session= on the kernel command line"

while read -r m; do
	insmod "/mod/$m.ko" || fail "insmod $m"
done </mod/order

H=/host
# cache=loose: the host root does not change under a run, and 9p without a cache makes every
# stat a round trip through the emulated virtio queue (Node's module resolution does many).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 host $H || fail "mount host root over 9p"
for d in proc sys dev; do mount --bind /$d $H/$d || fail "bind /$d"; done
mkdir -p $H/dev/pts
mount -t devpts devpts $H/dev/pts || fail "mount devpts (xenconsoled needs it)"
mount -t xenfs xenfs $H/proc/xen || fail "mount xenfs"
# Writable scratch: Debian's /var/run and /var/lock are symlinks into /run, so they come with it.
CHECKOUT=$(arg vmedlab.checkout)
[ -n "$CHECKOUT" ] && { mkdir -p /checkout && mount --bind "$H$CHECKOUT" /checkout || fail "bind the checkout"; }
for d in run var/lib/xen var/log tmp; do mount -t tmpfs tmpfs $H/$d || fail "tmpfs on /$d"; done
# The checkout gets a tmpfs overlay: tools write caches next to the sources (vite's config
# bundle, vitest's results), and those writes must neither fail nor reach the host. Mounted
# after the tmpfs folders above, so a checkout under /tmp stays visible.
if [ -n "$CHECKOUT" ]; then
	mkdir -p /overlay && mount -t tmpfs tmpfs /overlay && mkdir -p /overlay/upper /overlay/work
	mkdir -p "$H$CHECKOUT" 2>/dev/null
	mount -t overlay overlay -o lowerdir=/checkout,upperdir=/overlay/upper,workdir=/overlay/work "$H$CHECKOUT" || fail "overlay on the checkout"
fi
mkdir -p $H/run/lock $H/run/vmed-lab/results
# The per-run results folder: written through (no cache) so the host sees output as it comes.
mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=512000 vmedresults $H/run/vmed-lab/results || fail "mount results over 9p"
echo "VMED-LAB: host-root"

chroot $H /bin/sh "$SESSION"
echo "VMED-LAB: session-ended $?"
poweroff -f
