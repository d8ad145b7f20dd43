# The demo guest: finds the serial and edu functions on PCI bus 0 (whose BARs the host
# assigned, as firmware would), prints through the UART, has edu compute factorial(10) and
# DMA a buffer there and back with MSI completions, and reports through the done port.
# Every line it prints is its own. Only vCPU 0 runs it; other vCPUs sleep.
#
# The serial function is matched by SERIAL_VENDOR_ID / SERIAL_DEVICE_ID, absolute symbols
# given at link time (build.sh).

.include "runtime.inc"
.include "boot.inc"
.include "demo.inc"

    .text
    .globl demo_main
demo_main:
    cmpl $0, BOOT_VCPU(%ebx)
    je 1f
0:  cli
    hlt
    jmp 0b

1:  push %ebx
    push %esi
    push %edi
    mov %ebx, %edi                  # edi = boot record

    # Find the UART first: nothing can be said before it works.
    mov $SERIAL_DEVICE_ID, %eax
    shl $16, %eax
    or $SERIAL_VENDOR_ID, %eax
    call pci_find
    mov $DEMO_ERR_NO_SERIAL, %ebx
    jc silent_fail
    mov %eax, %esi                  # esi = serial config address
    call uart_setup
    mov %eax, %ebx
    jc silent_fail

    mov $msg_hello, %eax
    call uart_puts
    mov $msg_flat, %eax
    cmpl $PLATFORM_PVH, BOOT_PLATFORM(%edi)
    jne 2f
    mov $msg_pvh, %eax
2:  call uart_puts

    mov $list_function, %ecx
    call pci_for_each

    mov $msg_serial, %eax
    call uart_puts
    mov %esi, %eax
    call put_bdf
    mov $msg_serial_port, %eax
    call uart_puts
    lea PCI_BAR0(%esi), %eax
    mov $4, %ecx
    call pci_config_read
    and $0xfffc, %eax
    mov $4, %edx
    call uart_put_hex
    call put_newline

    # edu.
    mov $EDU_VENDOR_DEVICE, %eax
    call pci_find
    mov $DEMO_ERR_NO_EDU, %ebx
    jc fail
    mov %eax, %esi                  # esi = edu config address
    call edu_setup
    mov %eax, %ebx
    jc fail
    mov $msg_edu, %eax
    call uart_puts
    mov %esi, %eax
    call put_bdf
    mov $msg_edu_mmio, %eax
    call uart_puts
    call edu_mmio_base
    mov $8, %edx
    call uart_put_hex

    call edu_identify
    mov $DEMO_ERR_EDU_ID, %ebx
    jc fail
    push %eax
    mov $msg_edu_id, %eax
    call uart_puts
    mov (%esp), %eax
    mov $8, %edx
    call uart_put_hex
    mov $msg_edu_version, %eax
    call uart_puts
    mov (%esp), %eax
    shr $24, %eax
    call uart_put_dec
    mov $0x2e, %al
    call uart_putc
    pop %eax
    shr $16, %eax
    and $0xff, %eax
    call uart_put_dec
    mov $msg_close_paren, %eax
    call uart_puts

    call edu_check_liveness
    mov $DEMO_ERR_EDU_LIVENESS, %ebx
    jc fail
    mov $msg_liveness, %eax
    call uart_puts

    mov BOOT_VCPU(%edi), %eax
    rt_vcpu_ptr %eax, %eax
    mov RT_VCPU_APIC_ID(%eax), %edx
    push %edx
    mov %esi, %eax
    call edu_enable_msi
    pop %edx
    mov $DEMO_ERR_EDU_NO_MSI, %ebx
    jc fail
    push %edx
    mov $msg_msi, %eax
    call uart_puts
    mov $DEMO_EDU_VECTOR, %eax
    mov $2, %edx
    call uart_put_hex
    mov $msg_msi_apic, %eax
    call uart_puts
    pop %eax
    call uart_put_dec
    call put_newline

    # factorial(10), completion by interrupt.
    mov $DEMO_FACTORIAL_INPUT, %eax
    call edu_factorial
    mov $DEMO_ERR_IRQ_TIMEOUT, %ebx
    jc fail
    push %eax
    mov $msg_factorial, %eax
    call uart_puts
    mov (%esp), %eax
    call uart_put_dec
    call put_newline
    pop %eax
    cmp $3628800, %eax
    mov $DEMO_ERR_FACTORIAL, %ebx
    jne fail

    # A buffer to edu and back.
    mov $dma_source, %edx
    xor %ecx, %ecx
3:  lea 7(%ecx, %ecx, 8), %eax      # 9i + 7: every byte value differs from its neighbours
    mov %al, (%edx, %ecx)
    movb $0, dma_back(%ecx)
    inc %ecx
    cmp $DEMO_DMA_LENGTH, %ecx
    jb 3b
    mov $dma_source, %eax
    mov $DEMO_DMA_LENGTH, %ecx
    call edu_dma_to_device
    mov $DEMO_ERR_IRQ_TIMEOUT, %ebx
    jc fail
    mov $dma_back, %eax
    mov $DEMO_DMA_LENGTH, %ecx
    call edu_dma_to_ram
    jc fail
    xor %ecx, %ecx
4:  mov dma_source(%ecx), %al
    cmp dma_back(%ecx), %al
    jne 5f
    inc %ecx
    cmp $DEMO_DMA_LENGTH, %ecx
    jb 4b
    mov $msg_dma_ok, %eax
    call uart_puts
    jmp 6f
5:  mov $msg_dma_bad, %eax
    call uart_puts
    mov $DEMO_ERR_DMA, %ebx
    jmp fail

6:  mov $msg_done, %eax
    call uart_puts
    call uart_was_stuck
    mov $DEMO_ERR_UART_STUCK, %ebx
    test %eax, %eax
    jnz silent_fail
    mov $DEMO_OK, %eax
    jmp 9f

# ebx = DEMO_ERR_*: says so through the UART, then returns it.
fail:
    mov $msg_failed, %eax
    call uart_puts
    mov %ebx, %eax
    call uart_put_dec
    mov $msg_failed_colon, %eax
    call uart_puts
    mov error_messages(, %ebx, 4), %eax
    call uart_puts
    call put_newline
silent_fail:
    mov %ebx, %eax
9:  pop %edi
    pop %esi
    pop %ebx
    ret

put_newline:
    mov $10, %al
    jmp uart_putc

# eax = config address: prints "bb:dd.f".
put_bdf:
    push %ebx
    mov %eax, %ebx
    shr $16, %eax
    and $0xff, %eax
    mov $2, %edx
    call uart_put_hex
    mov $0x3a, %al
    call uart_putc
    mov %ebx, %eax
    shr $11, %eax
    and $0x1f, %eax
    mov $2, %edx
    call uart_put_hex
    mov $0x2e, %al
    call uart_putc
    mov %ebx, %eax
    shr $8, %eax
    and $7, %eax
    mov $1, %edx
    call uart_put_hex
    pop %ebx
    ret

# pci_for_each callback: prints "pci bb:dd.f vvvv:dddd class cccccc".
list_function:
    push %ebx
    push %esi
    mov %eax, %ebx
    mov %edx, %esi
    mov $msg_pci, %eax
    call uart_puts
    mov %ebx, %eax
    call put_bdf
    mov $0x20, %al
    call uart_putc
    movzwl %si, %eax
    mov $4, %edx
    call uart_put_hex
    mov $0x3a, %al
    call uart_putc
    mov %esi, %eax
    shr $16, %eax
    mov $4, %edx
    call uart_put_hex
    mov $msg_class, %eax
    call uart_puts
    lea PCI_CLASS_REVISION(%ebx), %eax
    mov $4, %ecx
    call pci_config_read
    shr $8, %eax
    mov $6, %edx
    call uart_put_hex
    call put_newline
    pop %esi
    pop %ebx
    clc
    ret

# eax = vendor | device << 16. Returns the first matching function's config address in
# eax; CF = 1 if bus 0 has none.
pci_find:
    mov %eax, wanted_id
    mov $match_wanted, %ecx
    call pci_for_each
    cmc                             # the walk stops (CF = 1) on a match
    ret

match_wanted:
    cmp wanted_id, %edx
    jne 1f
    stc
    ret
1:  clc
    ret

# ecx = callback(eax = config address, edx = vendor | device << 16), which keeps ebx, esi,
# edi, ebp and returns CF = 1 (eax = its answer) to stop. Walks every function present on
# bus 0. Returns CF = 1 with the callback's eax if it stopped, CF = 0 otherwise.
pci_for_each:
    push %ebx
    push %esi
    push %edi
    mov %ecx, %edi
    xor %ebx, %ebx                  # device << 11
1:  xor %esi, %esi                  # function
2:  mov %esi, %eax
    shl $8, %eax
    or %ebx, %eax
    mov $4, %ecx
    call pci_config_read
    cmp $0xffff, %ax
    je 4f                           # nothing there
    mov %eax, %edx
    mov %esi, %eax
    shl $8, %eax
    or %ebx, %eax
    call *%edi
    jc 9f
    test %esi, %esi
    jnz 3f
    lea PCI_HEADER_TYPE(%ebx), %eax
    mov $1, %ecx
    call pci_config_read
    test $0x80, %al
    jz 5f                           # single-function device
3:  inc %esi
    cmp $8, %esi
    jb 2b
    jmp 5f
4:  test %esi, %esi
    jnz 3b                          # functions may be sparse
5:  add $0x800, %ebx
    cmp $0x10000, %ebx
    jb 1b
    clc
9:  pop %edi
    pop %esi
    pop %ebx
    ret

    .section .rodata
msg_hello:          .asciz "vmed demo guest: hello from the guest's own code ("
msg_flat:           .asciz "flat entry)\n"
msg_pvh:            .asciz "PVH entry)\n"
msg_pci:            .asciz "pci "
msg_class:          .asciz " class "
msg_serial:         .asciz "serial: 16550 at "
msg_serial_port:    .asciz ", I/O port 0x"
msg_edu:            .asciz "edu: at "
msg_edu_mmio:       .asciz ", MMIO 0x"
msg_edu_id:         .asciz ", id 0x"
msg_edu_version:    .asciz " (version "
msg_close_paren:    .asciz ")\n"
msg_liveness:       .asciz "edu: liveness ok\n"
msg_msi:            .asciz "edu: MSI vector 0x"
msg_msi_apic:       .asciz " to APIC id "
msg_factorial:      .asciz "factorial(10) = "
msg_dma_ok:         .asciz "DMA ok\n"
msg_dma_bad:        .asciz "DMA bad\n"
msg_done:           .asciz "demo done\n"
msg_failed:         .asciz "demo failed: error "
msg_failed_colon:   .asciz ": "
err_none:           .asciz "none"
err_no_serial:      .asciz "serial device not found"
err_serial_bar:     .asciz "serial BAR0 is not an assigned I/O BAR"
err_no_edu:         .asciz "edu not found on bus 0"
err_edu_bar:        .asciz "edu BAR0 is not an assigned memory BAR below 4 GiB"
err_edu_id:         .asciz "edu identification register is wrong"
err_edu_liveness:   .asciz "edu liveness check failed"
err_edu_no_msi:     .asciz "edu has no MSI capability"
err_irq_timeout:    .asciz "timed out waiting for edu's interrupt"
err_factorial:      .asciz "edu computed the wrong factorial"
err_dma:            .asciz "DMA round trip corrupted the buffer"
err_uart_stuck:     .asciz "UART stopped accepting bytes"

    .balign 4
error_messages:
    .long err_none, err_no_serial, err_serial_bar, err_no_edu, err_edu_bar, err_edu_id
    .long err_edu_liveness, err_edu_no_msi, err_irq_timeout, err_factorial, err_dma
    .long err_uart_stuck
error_messages_end:
    .if (error_messages_end - error_messages) != (DEMO_ERR_UART_STUCK + 1) * 4
    .error "error_messages does not cover every DEMO_ERR_*"
    .endif

    .bss
    .balign 4
wanted_id:
    .long 0
    .balign 16
dma_source:
    .fill DEMO_DMA_LENGTH, 1, 0
dma_back:
    .fill DEMO_DMA_LENGTH, 1, 0
