# The demo's driver for QEMU's edu device (docs/specs/edu.rst): BAR0 MMIO, MSI, the
# factorial unit and the DMA engine, each completion waited for as an interrupt.
# Register accesses are 4 bytes wide, which the spec allows everywhere.

.include "runtime.inc"
.include "boot.inc"
.include "demo.inc"

.equ TIMER_DIVIDE_128,  0x0a
# The wait's timeout. KVM's LAPIC counts at 1 GHz (÷128: ~8.6 s), Xen's at 100 MHz (~86 s,
# which its lab, emulated in software, needs).
.equ TIMEOUT_TICKS,     0x04000000
.equ MSI_ADDRESS_BASE,  0xfee00000
.equ CAPABILITY_WALK_LIMIT, 48

    .text
# eax = config address of edu. Maps BAR0 and turns on memory decode and bus mastering (DMA),
# with INTx off (the demo uses MSI). CF = 1, eax = DEMO_ERR_EDU_BAR if BAR0 is unusable.
    .globl edu_setup
edu_setup:
    push %ebx
    mov %eax, %ebx
    lea PCI_BAR0(%ebx), %eax
    mov $4, %ecx
    call pci_config_read
    test $1, %eax
    jnz 8f                          # an I/O BAR
    mov %eax, %edx
    and $6, %edx                    # memory type
    jz 1f                           # 32-bit
    cmp $4, %edx
    jne 8f                          # reserved type
    push %eax                       # 64-bit: the guest reaches it only below 4 GiB
    lea PCI_BAR1(%ebx), %eax
    mov $4, %ecx
    call pci_config_read
    mov %eax, %edx
    pop %eax
    test %edx, %edx
    jnz 8f
1:  and $0xfffffff0, %eax
    jz 8f                           # not assigned
    mov %eax, edu_mmio

    lea PCI_COMMAND(%ebx), %eax
    mov $2, %ecx
    call pci_config_read
    or $(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE), %eax
    mov %eax, %edx
    lea PCI_COMMAND(%ebx), %eax
    mov $2, %ecx
    call pci_config_write
    pop %ebx
    clc
    ret
8:  mov $DEMO_ERR_EDU_BAR, %eax
    pop %ebx
    stc
    ret

# Returns the MMIO base in eax.
    .globl edu_mmio_base
edu_mmio_base:
    mov edu_mmio, %eax
    ret

# Returns the identification register in eax; CF = 1 unless its low byte is 0xed.
    .globl edu_identify
edu_identify:
    mov edu_mmio, %edx
    mov EDU_ID(%edx), %eax
    cmp $0xed, %al
    jne 1f
    clc
    ret
1:  stc
    ret

# CF = 1 unless the liveness register inverts two different values.
    .globl edu_check_liveness
edu_check_liveness:
    mov edu_mmio, %edx
    movl $0x12345678, EDU_LIVENESS(%edx)
    mov EDU_LIVENESS(%edx), %eax
    cmp $~0x12345678, %eax
    jne 1f
    movl $0xa5a55a5a, EDU_LIVENESS(%edx)
    mov EDU_LIVENESS(%edx), %eax
    cmp $~0xa5a55a5a, %eax
    jne 1f
    clc
    ret
1:  stc
    ret

# eax = config address of edu, edx = destination APIC id. Points edu's MSI at
# DEMO_EDU_VECTOR on that APIC (fixed delivery, edge) and enables it; installs the hook
# that acknowledges edu's interrupts. CF = 1 when edu has no MSI capability.
    .globl edu_enable_msi
edu_enable_msi:
    push %ebx
    push %esi
    push %edi
    mov %eax, %ebx
    mov %edx, %edi
    lea PCI_STATUS(%ebx), %eax
    mov $2, %ecx
    call pci_config_read
    test $PCI_STATUS_CAP_LIST, %eax
    jz 8f
    lea PCI_CAPABILITY_LIST(%ebx), %eax
    mov $1, %ecx
    call pci_config_read
    mov $CAPABILITY_WALK_LIMIT, %esi
1:  and $0xfc, %eax
    cmp $0x40, %eax                 # a capability cannot live in the header
    jb 8f
    push %eax
    add %ebx, %eax
    mov $2, %ecx
    call pci_config_read            # id, next
    pop %edx
    cmp $PCI_CAP_ID_MSI, %al
    je 2f
    movzbl %ah, %eax
    dec %esi
    jnz 1b
    jmp 8f

2:  # edx = MSI capability offset. ebx becomes its config address.
    add %edx, %ebx
    lea PCI_MSI_ADDRESS_LO(%ebx), %eax
    mov %edi, %edx
    shl $12, %edx
    or $MSI_ADDRESS_BASE, %edx
    mov $4, %ecx
    call pci_config_write
    lea PCI_MSI_FLAGS(%ebx), %eax
    mov $2, %ecx
    call pci_config_read
    mov %eax, %esi                  # esi = message control
    lea PCI_MSI_DATA_32(%ebx), %eax
    test $PCI_MSI_FLAGS_64BIT, %esi
    jz 3f
    lea PCI_MSI_ADDRESS_HI(%ebx), %eax
    xor %edx, %edx
    mov $4, %ecx
    call pci_config_write
    lea PCI_MSI_DATA_64(%ebx), %eax
3:  mov $DEMO_EDU_VECTOR, %edx
    mov $2, %ecx
    call pci_config_write

    movl $edu_irq_hook, irq_hook
    and $~PCI_MSI_FLAGS_QSIZE, %esi  # one vector
    or $PCI_MSI_FLAGS_ENABLE, %esi
    lea PCI_MSI_FLAGS(%ebx), %eax
    mov %esi, %edx
    mov $2, %ecx
    call pci_config_write
    clc
    jmp 9f
8:  stc
9:  pop %edi
    pop %esi
    pop %ebx
    ret

# Interrupt hook (eax = vector). edu's handler must acknowledge what it saw, even with MSI;
# the LAPIC timer's vector means a wait ran out.
edu_irq_hook:
    cmp $DEMO_EDU_VECTOR, %eax
    jne 1f
    mov edu_mmio, %ecx
    mov EDU_IRQ_STATUS(%ecx), %edx
    mov %edx, EDU_IRQ_ACK(%ecx)
    or %edx, edu_irq_seen
    ret
1:  cmp $TIMER_VECTOR, %eax
    jne 2f
    movb $1, timer_expired
2:  ret

# eax = the interrupt status bits to wait for. Sleeps (`sti; hlt`) until edu raised one of
# them, with the LAPIC timer as the alarm clock. CF = 1 on timeout. Clears the bits seen.
edu_wait_irq:
    push %ebx
    mov %eax, %ebx
    movb $0, timer_expired
    movl $TIMER_DIVIDE_128, LAPIC_BASE + LAPIC_TIMER_DIVIDE
    movl $TIMER_VECTOR, LAPIC_BASE + LAPIC_LVT_TIMER         # one-shot, unmasked
    movl $TIMEOUT_TICKS, LAPIC_BASE + LAPIC_TIMER_INITIAL
1:  cli
    test %ebx, edu_irq_seen
    jnz 2f
    cmpb $0, timer_expired
    jne 3f
    sti                             # the sti shadow covers hlt: no wake-up is lost
    hlt
    jmp 1b
2:  not %ebx
    and %ebx, edu_irq_seen
    call timer_stop
    sti
    pop %ebx
    clc
    ret
3:  call timer_stop
    sti
    pop %ebx
    stc
    ret

timer_stop:
    movl $(0x10000 | TIMER_VECTOR), LAPIC_BASE + LAPIC_LVT_TIMER
    movl $0, LAPIC_BASE + LAPIC_TIMER_INITIAL
    ret

# eax = n. Returns n! in eax, computed by edu with "raise interrupt when done"; CF = 1 on
# timeout.
    .globl edu_factorial
edu_factorial:
    mov edu_mmio, %edx
    movl $EDU_STATUS_IRQ_FACTORIAL, EDU_STATUS(%edx)
    mov %eax, EDU_FACTORIAL(%edx)
    mov $EDU_IRQ_FACTORIAL, %eax
    call edu_wait_irq
    jc 1f
    mov edu_mmio, %edx
    mov EDU_FACTORIAL(%edx), %eax
    clc
1:  ret

# eax = guest RAM address, ecx = length: RAM -> edu's buffer. CF = 1 on timeout.
    .globl edu_dma_to_device
edu_dma_to_device:
    mov $EDU_DMA_BUFFER, %edx
    push $(EDU_DMA_START | EDU_DMA_IRQ)
    jmp edu_dma

# eax = guest RAM address, ecx = length: edu's buffer -> RAM. CF = 1 on timeout.
    .globl edu_dma_to_ram
edu_dma_to_ram:
    mov %eax, %edx
    mov $EDU_DMA_BUFFER, %eax
    push $(EDU_DMA_START | EDU_DMA_TO_RAM | EDU_DMA_IRQ)
    # fall through

# eax = source, edx = destination, ecx = length, [esp] = command.
edu_dma:
    push %ebx
    mov edu_mmio, %ebx
    mov %eax, EDU_DMA_SOURCE(%ebx)
    mov %edx, EDU_DMA_DESTINATION(%ebx)
    mov %ecx, EDU_DMA_COUNT(%ebx)
    mov 4(%esp), %eax
    mov %eax, EDU_DMA_COMMAND(%ebx)
    mov $EDU_IRQ_DMA, %eax
    call edu_wait_irq
    pop %ebx
    lea 4(%esp), %esp               # drop the command, keep CF
    ret

    .bss
    .balign 4
edu_mmio:
    .long 0
edu_irq_seen:
    .long 0
timer_expired:
    .byte 0
