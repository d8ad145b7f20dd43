# A polled 16550 driver for the demo: the PCI serial function's I/O BAR, 115200 8N1 with
# FIFOs, every byte written to THR once LSR.THRE says the holding register is free.

.include "runtime.inc"
.include "boot.inc"
.include "demo.inc"

.equ UART_THR,          0       # DLAB = 0
.equ UART_DLL,          0       # DLAB = 1
.equ UART_IER,          1
.equ UART_DLM,          1       # DLAB = 1
.equ UART_FCR,          2
.equ UART_LCR,          3
.equ UART_MCR,          4
.equ UART_LSR,          5
.equ LCR_DLAB,          0x80
.equ LCR_8N1,           0x03
.equ FCR_ENABLE_CLEAR,  0x07    # enable FIFOs, clear both
.equ MCR_DTR_RTS,       0x03    # OUT2 stays clear: no interrupts wanted
.equ LSR_THRE,          0x20
.equ THRE_POLL_LIMIT,   100000  # each poll is a trapped `in`; give up on a stuck UART

    .text
# eax = config address of the serial function. Maps its I/O BAR, turns on I/O decode and
# programs the UART. CF = 1 (eax = DEMO_ERR_*) when BAR0 is not an assigned I/O BAR.
    .globl uart_setup
uart_setup:
    push %ebx
    mov %eax, %ebx
    lea PCI_BAR0(%ebx), %eax
    mov $4, %ecx
    call pci_config_read
    test $1, %eax
    jz 8f                           # memory BAR: not the 16550 we drive
    and $0xfffc, %eax
    jz 8f                           # not assigned
    mov %ax, uart_port

    lea PCI_COMMAND(%ebx), %eax
    mov $2, %ecx
    call pci_config_read
    or $PCI_COMMAND_IO, %eax
    mov %eax, %edx
    lea PCI_COMMAND(%ebx), %eax
    mov $2, %ecx
    call pci_config_write

    mov $UART_IER, %ecx
    xor %eax, %eax
    call uart_out
    mov $UART_LCR, %ecx
    mov $LCR_DLAB, %eax
    call uart_out
    mov $UART_DLL, %ecx
    mov $1, %eax                    # 115200 baud
    call uart_out
    mov $UART_DLM, %ecx
    xor %eax, %eax
    call uart_out
    mov $UART_LCR, %ecx
    mov $LCR_8N1, %eax
    call uart_out
    mov $UART_FCR, %ecx
    mov $FCR_ENABLE_CLEAR, %eax
    call uart_out
    mov $UART_MCR, %ecx
    mov $MCR_DTR_RTS, %eax
    call uart_out
    pop %ebx
    clc
    ret
8:  mov $DEMO_ERR_SERIAL_BAR, %eax
    pop %ebx
    stc
    ret

# ecx = register, al = value.
uart_out:
    mov uart_port, %dx
    add %cx, %dx
    out %al, %dx
    ret

# al = character. Drops it (and remembers) when THRE never comes.
    .globl uart_putc
uart_putc:
    push %ebx
    mov %al, %bl
    cmpb $0, uart_stuck
    jne 3f
    mov $THRE_POLL_LIMIT, %ecx
    mov uart_port, %dx
    add $UART_LSR, %dx
1:  in %dx, %al
    test $LSR_THRE, %al
    jnz 2f
    dec %ecx
    jnz 1b
    movb $1, uart_stuck
    jmp 3f
2:  mov uart_port, %dx
    mov %bl, %al
    out %al, %dx
3:  pop %ebx
    ret

# eax = NUL-terminated string.
    .globl uart_puts
uart_puts:
    push %esi
    mov %eax, %esi
1:  movzbl (%esi), %eax
    test %al, %al
    jz 2f
    call uart_putc
    inc %esi
    jmp 1b
2:  pop %esi
    ret

# eax = value, edx = number of hex digits (1..8), printed without a prefix.
    .globl uart_put_hex
uart_put_hex:
    push %ebx
    push %esi
    mov %eax, %ebx
    mov %edx, %esi
    # Rotate the first digit to print into the low nibble.
    lea (, %esi, 4), %ecx
    ror %cl, %ebx
1:  rol $4, %ebx
    mov %ebx, %eax
    and $0xf, %eax
    movzbl hex_digits(%eax), %eax
    call uart_putc
    dec %esi
    jnz 1b
    pop %esi
    pop %ebx
    ret

# eax = unsigned value, printed in decimal.
    .globl uart_put_dec
uart_put_dec:
    push %ebx
    push %esi
    mov $decimal_end, %esi
    movb $0, (%esi)
    mov $10, %ebx
1:  xor %edx, %edx
    div %ebx
    add $0x30, %dl
    dec %esi
    mov %dl, (%esi)
    test %eax, %eax
    jnz 1b
    mov %esi, %eax
    call uart_puts
    pop %esi
    pop %ebx
    ret

# Whether output was lost: eax = 1 if the UART ever stopped accepting bytes.
    .globl uart_was_stuck
uart_was_stuck:
    movzbl uart_stuck, %eax
    ret

    .section .rodata
hex_digits:
    .ascii "0123456789abcdef"

    .bss
uart_port:
    .word 0
uart_stuck:
    .byte 0
decimal:
    .fill 11, 1, 0
decimal_end:
    .byte 0
