/**
 * Assembly pieces shared by the 32-bit protected-mode test guests.
 *
 * PROLOGUE loads a flat GDT (0x08 code, 0x10 data) and an IDT at 0x3000 (256 gates), and
 * software-enables the local APIC (SVR = 0x1ff). `gate VECTOR, HANDLER` fills one interrupt
 * gate at run time (GNU as cannot split a relocated address into the gate's two halves).
 *
 * This KVM's emulator knows `iret` only in real mode, so handlers return with RETURN: pop the
 * return EIP, drop CS and EFLAGS, `sti` (its one-instruction shadow covers the jump) and jump
 * back. Interrupted code must run with IF=1 and must not care about EDI or the flags.
 */
export const IDT_BASE = 0x3000;

export const PROLOGUE = `
.code32
.macro gate vector, handler
  mov $\\handler, %eax
  mov $(${IDT_BASE} + \\vector * 8), %edi
  mov %ax, (%edi)
  movw $0x08, 2(%edi)
  movw $0x8e00, 4(%edi)
  shr $16, %eax
  mov %ax, 6(%edi)
.endm
.macro iret_emulated
  pop %edi
  add $8, %esp
  sti
  jmp *%edi
.endm
  jmp start
.align 8
gdt:
  .quad 0
  .quad 0x00cf9a000000ffff
  .quad 0x00cf92000000ffff
gdtr:
  .word 23
  .long gdt
idtr:
  .word 0x7ff
  .long ${IDT_BASE}
start:
  lgdt gdtr
  lidt idtr
  movl $0x1ff, 0xfee000f0
`;
