# Benchmark loops: each does one kind of guest exit as fast as the guest can, a count of
# times, then reports through the done port. Parameters (the boot record; on KVM the entry
# registers, on PVH the image header's HDR_PARAMS):
#   ebx = target: an I/O port if below 0x10000, else an MMIO address
#   ecx = count
#   edx = value written (bench-irq: the MSI vector to wait for, 32..253)
#   edi = how many vCPUs take part (0 means 1; bench-mmio-smp: 0 means 2; always 1 on PVH,
#         where only vCPU 0 runs); the last vCPU to finish writes the done port, vCPUs beyond
#         the count sleep
# Every write is 4 bytes.

.include "runtime.inc"
.include "boot.inc"

    .text
# N MMIO writes of value to target.
    .globl bench_mmio_main
bench_mmio_main:
    mov $1, %eax
    call join
    jc park
    call mmio_loop
    jmp finish

# N port writes of value to target.
    .globl bench_pio_main
bench_pio_main:
    mov $1, %eax
    call join
    jc park
    call pio_loop
    jmp finish

# N writes to a doorbell (the host hooks it with an ioeventfd): a port or an MMIO address.
    .globl bench_doorbell_main
bench_doorbell_main:
    mov $1, %eax
    call join
    jc park
    cmpl $0x10000, BOOT_EBX(%ebx)
    jae 1f
    call pio_loop
    jmp finish
1:  call mmio_loop
    jmp finish

# bench-mmio on two vCPUs by default: both hammer the same MMIO address.
    .globl bench_mmio_smp_main
bench_mmio_smp_main:
    mov $2, %eax
    call join
    jc park
    call mmio_loop
    jmp finish

# N interrupt round trips: writes the doorbell (target) once with 0 when ready, then each
# run of the handler for the vector writes it with the number of interrupts handled so far;
# the host answers each doorbell with the next MSI. Done after N.
    .globl bench_irq_main
bench_irq_main:
    cmpl $0, BOOT_VCPU(%ebx)
    jne park
    mov BOOT_EDX(%ebx), %eax
    cmp $IRQ_VECTOR_FIRST, %eax
    jb bad_params
    cmp $TIMER_VECTOR, %eax
    jae bad_params
    mov %eax, irq_vector
    mov BOOT_EBX(%ebx), %eax
    mov %eax, irq_target
    movl $irq_round_trip, irq_hook
    xor %eax, %eax
    call ring_doorbell
1:  cli
    mov irq_handled, %eax
    cmp BOOT_ECX(%ebx), %eax
    jae 2f
    sti                             # the sti shadow covers hlt: no wake-up is lost
    hlt
    jmp 1b
2:  sti
    mov $DONE_OK, %eax
    ret

bad_params:
    mov $DONE_BAD_PARAMS, %eax
    ret

# Interrupt hook (eax = vector).
irq_round_trip:
    cmp irq_vector, %eax
    jne 1f
    incl irq_handled
    mov irq_handled, %eax
    jmp ring_doorbell
1:  ret

# eax = value, written to irq_target (port or MMIO).
ring_doorbell:
    mov irq_target, %edx
    cmp $0x10000, %edx
    jae 1f
    out %eax, %dx
    ret
1:  mov %eax, (%edx)
    ret

# ebx = boot record.
mmio_loop:
    mov BOOT_EBX(%ebx), %eax
    mov BOOT_ECX(%ebx), %ecx
    mov BOOT_EDX(%ebx), %edx
    test %ecx, %ecx
    jz 2f
1:  mov %edx, (%eax)
    dec %ecx
    jnz 1b
2:  ret

pio_loop:
    mov BOOT_EBX(%ebx), %edx
    mov BOOT_ECX(%ebx), %ecx
    mov BOOT_EDX(%ebx), %eax
    test %ecx, %ecx
    jz 2f
1:  out %eax, %dx
    dec %ecx
    jnz 1b
2:  ret

# eax = default number of vCPUs taking part. CF = 1 if this vCPU is not one of them.
join:
    mov BOOT_EDI(%ebx), %ecx
    test %ecx, %ecx
    jnz 1f
    mov %eax, %ecx
1:  cmpl $PLATFORM_PVH, BOOT_PLATFORM(%ebx)
    jne 2f
    mov $1, %ecx                    # Xen enters only vCPU 0 of a PVH guest
2:  mov %ecx, participants
    cmp %ecx, BOOT_VCPU(%ebx)
    cmc
    ret

# The last participant to get here ends the run.
finish:
    mov $1, %eax
    lock xadd %eax, finished
    inc %eax
    cmp participants, %eax
    jb park
    mov $DONE_OK, %eax
    ret

park:
    cli
    hlt
    jmp park

    .bss
    .balign 4
participants:
    .long 0
finished:
    .long 0
irq_vector:
    .long 0
irq_target:
    .long 0
irq_handled:
    .long 0
