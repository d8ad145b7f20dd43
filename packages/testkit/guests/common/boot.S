# Entry points and per-vCPU start-up shared by every test guest.
#
# Two ways in, one path after:
#   flat_entry (GUEST_LOAD_ADDR): KVM. The host starts each vCPU in 32-bit protected mode
#     (flat CS/DS/ES/SS, CR0.PE, paging off) with esi = vCPU index and the program's
#     parameters in ebx, ecx, edx, edi.
#   pvh_entry (XEN_ELFNOTE_PHYS32_ENTRY): Xen PVH. Same CPU state, ebx = start_info; only
#     vCPU 0 enters; parameters come from the image header (HDR_PARAMS).
# Neither set of entry selectors is trusted: each vCPU loads our GDT and reloads segments
# before touching anything else.

.include "runtime.inc"
.include "boot.inc"

.if RT_VCPU_STRIDE != 32
.error "rt_vcpu_ptr assumes 32-byte vCPU records"
.endif

    .section .text.entry, "ax"
    .code32
    .globl flat_entry
flat_entry:
    # A fixed 5-byte jmp so that the header sits at fixed offsets.
    .byte 0xe9
    .long flat_start - (. + 4)

    .org HDR_MAGIC_OFFSET, 0xcc
    .long HDR_MAGIC
    .org HDR_VERSION_OFFSET, 0xcc
    .long HDR_VERSION
    .org HDR_PARAMS_OFFSET, 0xcc
hdr_params:
    .fill HDR_PARAMS_COUNT, 4, 0
    .balign 16, 0xcc

    .text
flat_start:
    cli
    cld
    mov $PLATFORM_FLAT, %ebp
    xor %eax, %eax                  # no start_info
    jmp boot

    .globl pvh_entry
pvh_entry:
    cli
    cld
    mov %ebx, %eax                  # start_info
    mov $PLATFORM_PVH, %ebp
    xor %esi, %esi
    # The PVH ABI guarantees flat segments here, so plain loads are safe before the GDT.
    mov %cs:hdr_params + 0, %ebx
    mov %cs:hdr_params + 4, %ecx
    mov %cs:hdr_params + 8, %edx
    mov %cs:hdr_params + 12, %edi
    jmp boot

# eax = start_info, ebp = platform, esi = vCPU, ebx/ecx/edx/edi = parameters.
boot:
    cmp $GUEST_MAX_VCPUS, %esi
    jb 1f
    # No stack of ours for this vCPU: report and stop without touching memory.
    mov $DONE_PORT, %dx
    mov $DONE_BAD_VCPU, %eax
    out %eax, %dx
2:  hlt
    jmp 2b

1:  # esp = top of this vCPU's stack (computed in esp itself: every other register is live).
    mov %esi, %esp
    inc %esp
    shl $STACK_SIZE_SHIFT, %esp
    add $STACKS_ADDR, %esp

    lgdt %cs:gdt_descriptor
    ljmp $SEL_CODE, $reload_segments
reload_segments:
    push %eax
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    pop %eax

    # The boot record (see boot.inc), built on this vCPU's stack.
    push %edi
    push %edx
    push %ecx
    push %ebx
    push %eax
    push %ebp
    push %esi
    mov %esp, %ebx

    rt_vcpu_ptr %esi, %edi
    test %esi, %esi
    jnz ap_wait

    # vCPU 0 prepares what all vCPUs share, then releases the others.
    xor %eax, %eax
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    rep stosl
    # Runtime page, counters, hypercall page and program page; not the stacks (in use).
    mov $RT_INFO_ADDR, %edi
    mov $((STACKS_ADDR - RT_INFO_ADDR) / 4), %ecx
    rep stosl

    movl $RT_ABI_VERSION_VALUE, RT_INFO_ADDR + RT_ABI_VERSION
    mov BOOT_PLATFORM(%ebx), %eax
    mov %eax, RT_INFO_ADDR + RT_PLATFORM
    mov BOOT_START_INFO(%ebx), %eax
    mov %eax, RT_INFO_ADDR + RT_START_INFO

    call idt_build
    # Wherever 8259s answer: KVM, and Xen HVM guests started through the PVH entry by QEMU's
    # pvh.bin, whose BIOS left them delivering ISA lines on vectors 8..15. On Xen PVH there
    # are none and the writes go nowhere.
    call pic_mask_all
    movl $1, boot_released
    jmp cpu_start

ap_wait:
    pause
    cmpl $0, boot_released
    je ap_wait

cpu_start:
    mov BOOT_VCPU(%ebx), %esi
    rt_vcpu_ptr %esi, %edi
    movl $VCPU_STATE_BOOTING, RT_VCPU_STATE(%edi)

    # FPU usable for MMX (8-byte MMIO): no emulation, no lazy-switch trap.
    mov %cr0, %eax
    and $~(CR0_EM | CR0_TS), %eax
    or $(CR0_MP | CR0_NE), %eax
    mov %eax, %cr0
    fninit

    lidt idt_descriptor
    call lapic_init
    mov %eax, RT_VCPU_APIC_ID(%edi)
    movl $VCPU_STATE_RUNNING, RT_VCPU_STATE(%edi)

    test %esi, %esi
    jnz 1f
    movl $RT_READY, RT_INFO_ADDR + RT_MAGIC
1:  lock bts %esi, RT_INFO_ADDR + RT_ONLINE_MASK

    call program_main
    jmp guest_done

# Software-enables this vCPU's LAPIC (spurious vector 0xff, every priority accepted, timer
# masked) and returns its APIC id in eax.
    .globl lapic_init
lapic_init:
    movl $0, LAPIC_BASE + LAPIC_TPR
    movl $(0x100 | SPURIOUS_VECTOR), LAPIC_BASE + LAPIC_SVR
    movl $(0x10000 | TIMER_VECTOR), LAPIC_BASE + LAPIC_LVT_TIMER
    mov LAPIC_BASE + LAPIC_ID, %eax
    shr $24, %eax
    ret

# Initialises both 8259s with vectors 0x20..0x2f and masks every line. Left alone, KVM's
# PIC (or the one a BIOS set up) would deliver an ISA line (its GSIs also reach the PIC) on
# vectors 0..15, which are CPU exceptions. Lines reach the guest through the IOAPIC instead.
pic_mask_all:
    mov $0x11, %al                  # ICW1: edge, cascade, ICW4 follows
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al                  # ICW2: vector bases
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al                  # ICW3: slave on IR2
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al                  # ICW4: 8086 mode
    out %al, $0x21
    out %al, $0xa1
    mov $0xff, %al                  # OCW1: mask all
    out %al, $0x21
    out %al, $0xa1
    ret

    .section .rodata
    .balign 8
gdt:
    .quad 0                         # null
    .quad 0x00cf9a000000ffff        # 0x08: code, base 0, limit 4 GiB, 32-bit
    .quad 0x00cf92000000ffff        # 0x10: data, base 0, limit 4 GiB
gdt_end:
    .balign 4
    .word 0
gdt_descriptor:
    .word gdt_end - gdt - 1
    .long gdt

    .bss
    .balign 4
boot_released:
    .long 0
