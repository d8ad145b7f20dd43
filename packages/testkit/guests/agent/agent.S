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
.equ HYPERVISOR_MEMORY_OP,        12
.equ HYPERVISOR_EVENT_CHANNEL_OP, 32
.equ HYPERVISOR_HVM_OP,           34
.equ XENMEM_ADD_TO_PHYSMAP,       7
.equ XENMAPSPACE_SHARED_INFO,     0
.equ HVMOP_SET_EVTCHN_UPCALL_VECTOR, 23
.equ EVTCHNOP_BIND_INTERDOMAIN,   0
.equ EVTCHNOP_CLOSE,              3
.equ EVTCHNOP_SEND,               4
.equ EVTCHNOP_STATUS,             5
.equ EVTCHNOP_BIND_VCPU,          8
.equ EVTCHNOP_UNMASK,             9
.equ DOMID_SELF,                  0x7ff0
.equ DOMID_FIRST_RESERVED,        0x7ff0
# shared_info: vcpu_info[32] of 64 bytes each, then the pending bitmap. Both of Xen's layouts
# (32- and 64-bit guests) agree on these offsets; evtchn_pending_sel is at 4 or at 8.
.equ SHINFO_VCPU_INFO_SIZE,       64
.equ VCPU_INFO_UPCALL_PENDING,    0
.equ SHINFO_EVTCHN_PENDING,       2048
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
    jmp op_fail
# eax = the hypercall's (negative) return value, reported sign-extended as the result.
op_hypercall_failed:
    cdq
    mov $AGENT_STATUS_HYPERCALL, %ecx
    ret
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
    cmp $0xffffffff, %eax
    je 8f                           # nothing answers there: Xen PVH has no IOAPIC
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
8:  spin_unlock ioapic_lock
    jmp op_unsupported

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

# --- Xen event channels --------------------------------------------------------------------
# A Xen-aware guest driver's view: bind the dom0 port the host names, take its notifications
# through a per-vCPU upcall vector, look at the channel's state, close it.

op_evtchn_bind:
    call evtchn_setup
    jnc 1f
    cmp $AGENT_STATUS_HYPERCALL, %ecx
    je op_hypercall_failed
    jmp op_fail
1:  call port_argument
    jc op_fail
    mov AGENT_MB_VALUE(%edi), %edx
    cmpl $0, AGENT_MB_VALUE + 4(%edi)
    jne op_invalid
    cmp $DOMID_FIRST_RESERVED, %edx
    jae op_invalid
    # struct evtchn_bind_interdomain { domid_t remote_dom; port remote_port; port local_port; }
    sub $12, %esp
    mov %edx, 0(%esp)               # remote_dom (u16) and padding
    mov %eax, 4(%esp)
    movl $0, 8(%esp)
    mov $EVTCHNOP_BIND_INTERDOMAIN, %edx
    mov %esp, %ecx
    call evtchn_op
    mov 8(%esp), %ecx
    add $12, %esp
    test %eax, %eax
    jnz op_hypercall_failed
    mov %ecx, %eax                  # the local port
    cmp $AGENT_EVTCHN_PORTS, %eax
    jb 1f
    # Beyond what the counters cover: give it back rather than lose its notifications.
    mov $EVTCHNOP_CLOSE, %edx
    call evtchn_port_op
    jmp op_unsupported
1:  push %eax
    test %esi, %esi
    jz 2f
    # Xen notifies vCPU 0 unless told otherwise: send it to this vCPU's upcall vector.
    # struct evtchn_bind_vcpu { port; unsigned int vcpu; }
    push %esi
    push %eax
    mov $EVTCHNOP_BIND_VCPU, %edx
    mov %esp, %ecx
    call evtchn_op
    add $8, %esp
    test %eax, %eax
    jnz 8f
2:  mov (%esp), %eax
    mov $EVTCHNOP_UNMASK, %edx
    call evtchn_port_op
    test %eax, %eax
    jnz 8f
    pop %eax
    jmp op_ok_eax
8:  # Undo the bind; report the failure that stopped it.
    xchg %eax, (%esp)
    mov $EVTCHNOP_CLOSE, %edx
    call evtchn_port_op
    pop %eax
    jmp op_hypercall_failed

op_evtchn_close:
    mov $EVTCHNOP_CLOSE, %edx
    jmp evtchn_simple_op

op_evtchn_send:
    mov $EVTCHNOP_SEND, %edx
    # fall through

# edx = an EVTCHNOP taking only { port }, the port from the mailbox's address.
evtchn_simple_op:
    push %edx
    call xen_hypercall_init
    pop %edx
    test %eax, %eax
    jz op_unsupported
    call port_argument
    jc op_fail
    call evtchn_port_op
    test %eax, %eax
    jnz op_hypercall_failed
    jmp op_ok_zero

op_evtchn_status:
    call xen_hypercall_init
    test %eax, %eax
    jz op_unsupported
    call port_argument
    jc op_fail
    # struct evtchn_status { domid_t dom; port; u32 status; u32 vcpu; union { unbound:
    # domid_t dom; interdomain: domid_t dom, port port; ... } u; }
    sub $24, %esp
    movl $DOMID_SELF, 0(%esp)
    mov %eax, 4(%esp)
    movl $0, 8(%esp)
    movl $0, 16(%esp)
    movl $0, 20(%esp)
    mov $EVTCHNOP_STATUS, %edx
    mov %esp, %ecx
    call evtchn_op
    test %eax, %eax
    jnz 9f
    mov 8(%esp), %eax
    movzwl 16(%esp), %edx           # unbound: the domain that may bind it
    cmp $AGENT_EVTCHN_STAT_INTERDOMAIN, %eax
    jne 1f
    mov 20(%esp), %edx              # interdomain: the remote port
1:  add $24, %esp
    jmp op_ok
9:  add $24, %esp
    jmp op_hypercall_failed

# The mailbox's address as a port: CF = 0 with eax = port, or CF = 1 with ecx = status.
port_argument:
    cmpl $0, AGENT_MB_ADDRESS + 4(%edi)
    jne fail_address
    mov AGENT_MB_ADDRESS(%edi), %eax
    clc
    ret

# Makes this vCPU ready for event channels, once: the hypercall page, shared_info mapped
# (once for all vCPUs), the upcall vector and the interrupt hook. CF = 1 with ecx = status
# on failure, eax = the hypercall's return value when Xen refused.
evtchn_setup:
    bt %esi, evtchn_vcpus_ready
    jc 9f
    call xen_hypercall_init
    test %eax, %eax
    jnz 1f
    mov $AGENT_STATUS_UNSUPPORTED, %ecx
    stc
    ret
1:  spin_lock evtchn_lock, %eax
    cmpl $0, shared_info_mapped
    jne 2f
    # struct xen_add_to_physmap { domid_t domid; u16 size; u32 space; ulong idx; pfn gpfn; }
    # (the 32-bit layout: a guest in 32-bit mode gets Xen's compat memory_op)
    sub $16, %esp
    movl $DOMID_SELF, 0(%esp)
    movl $XENMAPSPACE_SHARED_INFO, 4(%esp)
    movl $0, 8(%esp)
    movl $(AGENT_SHARED_INFO_ADDR >> 12), 12(%esp)
    mov $HYPERVISOR_MEMORY_OP, %eax
    mov $XENMEM_ADD_TO_PHYSMAP, %edx
    mov %esp, %ecx
    call xen_call
    add $16, %esp
    test %eax, %eax
    jnz 8f
    movl $1, shared_info_mapped
    movl $evtchn_irq_hook, irq_hook
2:  spin_unlock evtchn_lock
    # struct xen_hvm_evtchn_upcall_vector { u32 vcpu; u8 vector; }
    push $AGENT_EVTCHN_VECTOR
    push %esi
    mov $HYPERVISOR_HVM_OP, %eax
    mov $HVMOP_SET_EVTCHN_UPCALL_VECTOR, %edx
    mov %esp, %ecx
    call xen_call
    add $8, %esp
    test %eax, %eax
    jnz 7f
    lock bts %esi, evtchn_vcpus_ready
9:  clc
    ret
8:  spin_unlock evtchn_lock
7:  mov $AGENT_STATUS_HYPERCALL, %ecx
    stc
    ret

# Interrupt hook (eax = vector): on the upcall vector, takes every pending port this vCPU was
# told about and counts it. Clearing the upcall flag and the selector first means an event
# that lands meanwhile raises a new upcall rather than being lost; the bitmap is taken word by
# word with xchg, so no event is counted twice.
evtchn_irq_hook:
    cmp $AGENT_EVTCHN_VECTOR, %eax
    jne 9f
    push %ebx
    push %esi
    # This vCPU (its stack says which) and its vcpu_info.
    mov %esp, %eax
    sub $STACKS_ADDR, %eax
    shr $STACK_SIZE_SHIFT, %eax
    shl $6, %eax
    lea AGENT_SHARED_INFO_ADDR(%eax), %ebx
    movb $0, VCPU_INFO_UPCALL_PENDING(%ebx)
    xor %eax, %eax
    xchg %eax, 4(%ebx)              # evtchn_pending_sel in either layout: bytes 4..15
    xor %eax, %eax
    xchg %eax, 8(%ebx)
    xor %eax, %eax
    xchg %eax, 12(%ebx)
    xor %esi, %esi                  # word index
1:  xor %eax, %eax
    xchg %eax, AGENT_SHARED_INFO_ADDR + SHINFO_EVTCHN_PENDING(, %esi, 4)
2:  test %eax, %eax
    jz 3f
    bsf %eax, %ecx
    btr %ecx, %eax
    mov %esi, %edx
    shl $5, %edx
    add %ecx, %edx
    lock incl AGENT_EVTCHN_COUNTS_ADDR(, %edx, 4)
    jmp 2b
3:  inc %esi
    cmp $(AGENT_EVTCHN_PORTS / 32), %esi
    jb 1b
    pop %esi
    pop %ebx
9:  ret

# eax = port, edx = an EVTCHNOP taking only { port }. Returns Xen's result in eax.
evtchn_port_op:
    push %eax
    mov %esp, %ecx
    call evtchn_op
    add $4, %esp
    ret

# edx = EVTCHNOP_*, ecx = its argument. Returns Xen's result in eax.
evtchn_op:
    mov $HYPERVISOR_EVENT_CHANNEL_OP, %eax
    # fall through

# eax = hypercall number, edx = first argument, ecx = second. Returns Xen's result in eax.
# A debug Xen scrambles the argument registers it used; the helper convention keeps ours.
xen_call:
    push %ebx
    push %esi
    push %edi
    push %ebp
    mov %edx, %ebx
    shl $5, %eax
    add $XEN_HYPERCALL_PAGE, %eax
    call *%eax
    pop %ebp
    pop %edi
    pop %esi
    pop %ebx
    ret

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
    .long op_evtchn_bind            # AGENT_OP_EVTCHN_BIND
    .long op_evtchn_close           # AGENT_OP_EVTCHN_CLOSE
    .long op_evtchn_status          # AGENT_OP_EVTCHN_STATUS
    .long op_evtchn_send            # AGENT_OP_EVTCHN_SEND
op_table_end:
    .if (op_table_end - op_table) != AGENT_OP_COUNT * 4
    .error "op_table does not cover AGENT_OP_COUNT operations"
    .endif

    .bss
    .balign 4
ioapic_lock:
    .long 0
evtchn_lock:
    .long 0
shared_info_mapped:
    .long 0
evtchn_vcpus_ready:                 # bit n: vCPU n has its upcall vector
    .long 0
