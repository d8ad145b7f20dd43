#!/bin/sh
# Builds every test guest into OUT (default: build/ beside this script): for each program a
# PVH ELF (NAME.elf, for Xen) and the same image as a flat binary (NAME.bin, for KVM).
#
#   guests/build.sh [OUT]            build
#   guests/build.sh --prebuilt       build into build/, then copy the outputs to prebuilt/
#
# Output is deterministic (no timestamps, no build ids, sources named by relative path), so
# test/guests/build.test.ts can rebuild into a temporary directory and compare bytes with
# prebuilt/. Needs GNU as, ld and objcopy (binutils) with i386 support.
#
# The demo looks for the serial device by PCI id: SERIAL_VENDOR_ID / SERIAL_DEVICE_ID
# (defaults below) override it at link time.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

update_prebuilt=0
out=build
if [ "${1:-}" = "--prebuilt" ]; then
  update_prebuilt=1
elif [ -n "${1:-}" ]; then
  out=$1
fi

AS=${AS:-as}
LD=${LD:-ld}
OBJCOPY=${OBJCOPY:-objcopy}
# QEMU's PCI 16550 (pci-serial), which Linux's 8250_pci binds to: the serial model's ids.
SERIAL_VENDOR_ID=${SERIAL_VENDOR_ID:-0x1b36}
SERIAL_DEVICE_ID=${SERIAL_DEVICE_ID:-0x0002}

mkdir -p "$out/obj"

assemble() { # source object include-dirs...
  src=$1; obj=$2; shift 2
  incs=""
  for dir in "$@"; do incs="$incs -I $dir"; done
  mkdir -p "$(dirname "$obj")"
  # shellcheck disable=SC2086
  "$AS" --32 --noexecstack $incs -o "$obj" "$src"
}

link() { # name main-symbol objects...
  name=$1; main=$2; shift 2
  "$LD" -m elf_i386 -T common/guest.ld --build-id=none -nostdlib -static \
    --no-warn-rwx-segments \
    --defsym program_main="$main" \
    --defsym SERIAL_VENDOR_ID="$SERIAL_VENDOR_ID" \
    --defsym SERIAL_DEVICE_ID="$SERIAL_DEVICE_ID" \
    -o "$out/$name.elf" "$@"
  "$OBJCOPY" -O binary -R .note.Xen "$out/$name.elf" "$out/$name.bin"
}

common=""
for f in boot idt stop pci note; do
  assemble "common/$f.S" "$out/obj/common/$f.o" common
  common="$common $out/obj/common/$f.o"
done

assemble agent/agent.S "$out/obj/agent/agent.o" common agent
assemble demo/demo.S "$out/obj/demo/demo.o" common demo
assemble demo/uart.S "$out/obj/demo/uart.o" common demo
assemble demo/edu.S "$out/obj/demo/edu.o" common demo
assemble bench/bench.S "$out/obj/bench/bench.o" common bench

# shellcheck disable=SC2086
{
  link agent agent_main $common "$out/obj/agent/agent.o"
  link demo demo_main $common "$out/obj/demo/demo.o" "$out/obj/demo/uart.o" "$out/obj/demo/edu.o"
  link bench-mmio bench_mmio_main $common "$out/obj/bench/bench.o"
  link bench-pio bench_pio_main $common "$out/obj/bench/bench.o"
  link bench-doorbell bench_doorbell_main $common "$out/obj/bench/bench.o"
  link bench-irq bench_irq_main $common "$out/obj/bench/bench.o"
  link bench-mmio-smp bench_mmio_smp_main $common "$out/obj/bench/bench.o"
}

if [ "$update_prebuilt" = 1 ]; then
  mkdir -p prebuilt
  for f in "$out"/*.elf "$out"/*.bin; do cp "$f" prebuilt/; done
  "$AS" --version | head -n 1 > prebuilt/BUILD-INFO
fi
