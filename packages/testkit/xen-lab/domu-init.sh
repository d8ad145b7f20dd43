#!/bin/busybox sh
# /init of the Xen lab's domU initramfs: a stock Linux guest that reports the PCI functions it
# enumerated, so a test in dom0 can check that the guest sees vmed's devices, then powers off.
# Output format (parsed by parseGuestPciReport in src/xen-lab/domains.ts), one item a line:
#   VMED-DOMU: pci <bdf> vendor=<hex> device=<hex> class=<hex>
#   VMED-DOMU: resource <bdf> <index> <start> <end> <flags>   (one per non-empty resource)
#   VMED-DOMU: end <number of functions>
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "VMED-DOMU: begin"
n=0
for d in /sys/bus/pci/devices/*; do
	[ -e "$d/vendor" ] || continue
	bdf=${d##*/}
	echo "VMED-DOMU: pci $bdf vendor=$(cat "$d/vendor") device=$(cat "$d/device") class=$(cat "$d/class")"
	i=0
	while read -r start end flags; do
		[ "$start" = 0x0000000000000000 ] && [ "$end" = 0x0000000000000000 ] || echo "VMED-DOMU: resource $bdf $i $start $end $flags"
		i=$((i + 1))
	done <"$d/resource"
	n=$((n + 1))
done
echo "VMED-DOMU: end $n"
poweroff -f
