# The guest agent: executes commands a host posts into per-vCPU mailboxes (abi.inc) so the
# conformance suite can make a real guest do MMIO, port I/O, PCI config cycles and
# interrupt work on KVM and Xen. Every access is a real guest instruction.
#
# Each vCPU polls its own mailbox with `pause`, interrupts enabled unless a CLI op said
# otherwise, and bumps its heartbeat in the runtime page on every idle turn.

.include "runtime.inc"
.include "boot.inc"
.include "abi.inc"

.equ IOAPIC_INDEX,      0x00
.equ IOAPIC_DATA,       0x10
.equ IOAPIC_REG_VERSION, 0x01
.equ IOAPIC_REG_REDIR,  0x10
.equ IOAPIC_FLAG_MASK,  (AGENT_IOAPIC_ACTIVE_LOW | AGENT_IOAPIC_LEVEL | AGENT_IOAPIC_MASKED)
.equ FNV_OFFSET,        0x811c9dc5
.equ FNV_PRIME,         0x01000193

    .text
# ebx = boot record. Registers while polling: esi = vCPU, edi = mailbox, ebp = runtime
# record, ebx = last seq handled.
    .globl agent_main
agent_main:
    mov BOOT_VCPU(%ebx), %esi
    mov %esi, %edi
    shl $6, %edi
    add $AGENT_MAILBOX_ADDR, %edi
    rt_vcpu_ptr %esi, %ebp
    xor %ebx, %ebx
    sti
poll:
    incl RT_VCPU_HEARTBEAT(%ebp)
    mov AGENT_MB_SEQ(%edi), %eax
    cmp %eax, %ebx
    jne 1f
    pause
    jmp poll
1:  mov %eax, %ebx
    call run_command
    mov %eax, AGENT_MB_RESULT(%edi)
    mov %edx, AGENT_MB_RESULT + 4(%edi)
    mov %ecx, AGENT_MB_STATUS(%edi)
    incl AGENT_MB_COUNT(%edi)
    mov %ebx, AGENT_MB_ACK(%edi)
    jmp poll

# Runs the mailbox's command. Returns the result in edx:eax and the status in ecx.
# Handlers keep ebx, esi, edi, ebp.
run_command:
    mov AGENT_MB_OP(%edi), %eax
    cmp $AGENT_OP_COUNT, %eax
    jae op_bad_op
    jmp *op_table(, %eax, 4)

op_ok_zero:
    xor %eax, %eax
op_ok_eax:
    xor %edx, %edx
op_ok:
    mov $AGENT_STATUS_OK, %ecx
    ret
op_bad_op:
    mov $AGENT_STATUS_BAD_OP, %ecx
    jmp op_fail
op_bad_size:
    mov $AGENT_STATUS_BAD_SIZE, %ecx
    jmp op_fail
op_bad_address:
    mov $AGENT_STATUS_BAD_ADDRESS, %ecx
    jmp op_fail
op_unsupported:
    mov $AGENT_STATUS_UNSUPPORTED, %ecx
    jmp op_fail
op_invalid:
    mov $AGENT_STATUS_INVALID, %ecx
op_fail:
    xor %eax, %eax
    xor %edx, %edx
    ret

op_nop:
    jmp op_ok_zero

op_mmio_read:
    call check_mem_access
    jc op_fail
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    cmp $4, %ecx
    je 4f
    movq (%eax), %mm0               # one 8-byte access
    movq %mm0, AGENT_MB_RESULT(%edi)
    mov AGENT_MB_RESULT(%edi), %eax
    mov AGENT_MB_RESULT + 4(%edi), %edx
    jmp op_ok
1:  movzbl (%eax), %eax
    jmp op_ok_eax
2:  movzwl (%eax), %eax
    jmp op_ok_eax
4:  mov (%eax), %eax
    jmp op_ok_eax

op_mmio_write:
    call check_mem_access
    jc op_fail
    mov AGENT_MB_VALUE(%edi), %edx
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    cmp $4, %ecx
    je 4f
    movq AGENT_MB_VALUE(%edi), %mm0
    movq %mm0, (%eax)               # one 8-byte access
    jmp op_ok_zero
1:  mov %dl, (%eax)
    jmp op_ok_zero
2:  mov %dx, (%eax)
    jmp op_ok_zero
4:  mov %edx, (%eax)
    jmp op_ok_zero

op_pio_read:
    call check_port_access
    jc op_fail
    mov %eax, %edx
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    in %dx, %eax
    jmp op_ok_eax
1:  xor %eax, %eax
    in %dx, %al
    jmp op_ok_eax
2:  xor %eax, %eax
    in %dx, %ax
    jmp op_ok_eax

op_pio_write:
    call check_port_access
    jc op_fail
    mov %eax, %edx
    mov AGENT_MB_VALUE(%edi), %eax
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    out %eax, %dx
    jmp op_ok_zero
1:  out %al, %dx
    jmp op_ok_zero
2:  out %ax, %dx
    jmp op_ok_zero

op_cfg_read:
    call check_config_access
    jc op_fail
    call pci_config_read
    jmp op_ok_eax

op_cfg_write:
    call check_config_access
    jc op_fail
    mov AGENT_MB_VALUE(%edi), %edx
    call pci_config_write
    jmp op_ok_zero

op_sti:
    sti
    jmp op_ok_zero

op_cli:
    cli
    jmp op_ok_zero

op_ioapic_route:
    cmpl $PLATFORM_FLAT, RT_INFO_ADDR + RT_PLATFORM
    jne op_unsupported              # PVH has no IOAPIC
    cmpl $0, AGENT_MB_ADDRESS + 4(%edi)
    jne op_bad_address
    cmpl $0, AGENT_MB_VALUE + 4(%edi)
    jne op_invalid
    mov AGENT_MB_VALUE(%edi), %eax
    test $~(IOAPIC_FLAG_MASK | 0xff), %eax
    jnz op_invalid
    and $0xff, %eax
    cmp $IRQ_VECTOR_FIRST, %eax
    jb op_invalid
    cmp $SPURIOUS_VECTOR, %eax
    je op_invalid
    spin_lock ioapic_lock, %eax
    movl $IOAPIC_REG_VERSION, IOAPIC_BASE + IOAPIC_INDEX
    mov IOAPIC_BASE + IOAPIC_DATA, %eax
    shr $16, %eax
    and $0xff, %eax                 # highest redirection entry
    mov AGENT_MB_ADDRESS(%edi), %ecx
    cmp %eax, %ecx
    ja 9f
    # High half first (destination: this vCPU's APIC id, physical mode), then the low half.
    lea IOAPIC_REG_REDIR + 1(%ecx, %ecx), %eax
    mov %eax, IOAPIC_BASE + IOAPIC_INDEX
    mov RT_VCPU_APIC_ID(%ebp), %eax
    shl $24, %eax
    mov %eax, IOAPIC_BASE + IOAPIC_DATA
    lea IOAPIC_REG_REDIR(%ecx, %ecx), %eax
    mov %eax, IOAPIC_BASE + IOAPIC_INDEX
    mov AGENT_MB_VALUE(%edi), %eax
    mov %eax, IOAPIC_BASE + IOAPIC_DATA
    spin_unlock ioapic_lock
    jmp op_ok_zero
9:  spin_unlock ioapic_lock
    jmp op_bad_address

op_ram_fill:
    call check_ram_range
    jc op_fail
    test %ecx, %ecx
    jz op_ok_zero
    # Refuse to overwrite the agent itself.
    lea (%eax, %ecx), %edx
    cmp $GUEST_FOOTPRINT_END, %eax
    jae 1f
    cmp $GUEST_LOAD_ADDR, %edx
    ja op_bad_address
1:  mov %eax, %edx
    mov AGENT_MB_VALUE(%edi), %eax
2:  mov %al, (%edx)
    inc %al
    inc %edx
    dec %ecx
    jnz 2b
    jmp op_ok_zero

op_ram_checksum:
    call check_ram_range
    jc op_fail
    push %ebx
    mov %eax, %edx
    mov $FNV_OFFSET, %eax
    test %ecx, %ecx
    jz 2f
1:  movzbl (%edx), %ebx
    xor %ebx, %eax
    imul $FNV_PRIME, %eax, %eax
    inc %edx
    dec %ecx
    jnz 1b
2:  pop %ebx
    jmp op_ok_eax

op_apic_id:
    mov LAPIC_BASE + LAPIC_ID, %eax
    shr $24, %eax
    jmp op_ok_eax

op_hlt:
    pushfl
    pop %eax
    test $EFLAGS_IF, %eax
    jz op_invalid                   # would never wake
    hlt
    jmp op_ok_zero

op_done:
    # Acknowledge first: the done port may end the run before control comes back.
    xor %eax, %eax
    mov %eax, AGENT_MB_RESULT(%edi)
    mov %eax, AGENT_MB_RESULT + 4(%edi)
    movl $AGENT_STATUS_OK, AGENT_MB_STATUS(%edi)
    incl AGENT_MB_COUNT(%edi)
    mov %ebx, AGENT_MB_ACK(%edi)
    mov AGENT_MB_VALUE(%edi), %eax
    jmp guest_done

# Argument checks: on success CF = 0 with eax = address and ecx = size; on failure CF = 1
# with ecx = status.

# A memory access of 1, 2, 4 or 8 bytes below 4 GiB.
check_mem_access:
    mov AGENT_MB_SIZE(%edi), %ecx
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 1f
    cmp $4, %ecx
    je 1f
    cmp $8, %ecx
    jne fail_size
1:  jmp check_low_range

# A port access of 1, 2 or 4 bytes inside the 64 KiB port space.
check_port_access:
    mov AGENT_MB_SIZE(%edi), %ecx
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 1f
    cmp $4, %ecx
    jne fail_size
1:  cmpl $0, AGENT_MB_ADDRESS + 4(%edi)
    jne fail_address
    mov AGENT_MB_ADDRESS(%edi), %eax
    lea (%eax, %ecx), %edx
    cmp $0x10000, %edx
    ja fail_address
    clc
    ret

# A config access: size 1, 2 or 4, register aligned to it, bus/device/function/register in
# the low 24 bits.
check_config_access:
    mov AGENT_MB_SIZE(%edi), %ecx
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 1f
    cmp $4, %ecx
    jne fail_size
1:  cmpl $0, AGENT_MB_ADDRESS + 4(%edi)
    jne fail_address
    mov AGENT_MB_ADDRESS(%edi), %eax
    test $0xff000000, %eax
    jnz fail_address
    lea -1(%ecx), %edx
    test %eax, %edx
    jnz fail_address
    clc
    ret

# A RAM range of at most AGENT_RAM_FILL_MAX bytes below 4 GiB.
check_ram_range:
    mov AGENT_MB_SIZE(%edi), %ecx
    cmp $AGENT_RAM_FILL_MAX, %ecx
    ja fail_size
    # fall through

# eax = mailbox address, which with ecx bytes must stay below 4 GiB.
check_low_range:
    cmpl $0, AGENT_MB_ADDRESS + 4(%edi)
    jne fail_address
    mov AGENT_MB_ADDRESS(%edi), %eax
    test %ecx, %ecx
    jz 1f
    lea -1(%eax, %ecx), %edx
    cmp %eax, %edx
    jb fail_address                 # wraps past 4 GiB
1:  clc
    ret

fail_size:
    mov $AGENT_STATUS_BAD_SIZE, %ecx
    stc
    ret
fail_address:
    mov $AGENT_STATUS_BAD_ADDRESS, %ecx
    stc
    ret

    .section .rodata
    .balign 4
op_table:
    .long op_nop                    # AGENT_OP_NOP
    .long op_mmio_read              # AGENT_OP_MMIO_READ
    .long op_mmio_write             # AGENT_OP_MMIO_WRITE
    .long op_pio_read               # AGENT_OP_PIO_READ
    .long op_pio_write              # AGENT_OP_PIO_WRITE
    .long op_cfg_read               # AGENT_OP_CFG_READ
    .long op_cfg_write              # AGENT_OP_CFG_WRITE
    .long op_sti                    # AGENT_OP_STI
    .long op_cli                    # AGENT_OP_CLI
    .long op_ioapic_route           # AGENT_OP_IOAPIC_ROUTE
    .long op_ram_fill               # AGENT_OP_RAM_FILL
    .long op_ram_checksum           # AGENT_OP_RAM_CHECKSUM
    .long op_apic_id                # AGENT_OP_APIC_ID
    .long op_hlt                    # AGENT_OP_HLT
    .long op_done                   # AGENT_OP_DONE
op_table_end:
    .if (op_table_end - op_table) != AGENT_OP_COUNT * 4
    .error "op_table does not cover AGENT_OP_COUNT operations"
    .endif

    .bss
    .balign 4
ioapic_lock:
    .long 0
