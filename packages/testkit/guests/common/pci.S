# PCI configuration access through mechanism #1 (0xcf8 address, 0xcfc..0xcff data).
# The address/data pair is shared by all vCPUs, so each access holds pci_lock.

.include "runtime.inc"
.include "boot.inc"

    .text
# eax = bus << 16 | device << 11 | function << 8 | register, ecx = size (1, 2 or 4; the
# register must be aligned to it). Returns the value in eax.
    .globl pci_config_read
pci_config_read:
    push %ebx
    mov %eax, %ebx
    spin_lock pci_lock, %edx
    mov %ebx, %eax
    call select_register
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    in %dx, %eax
    jmp 3f
1:  xor %eax, %eax
    in %dx, %al
    jmp 3f
2:  xor %eax, %eax
    in %dx, %ax
3:  spin_unlock pci_lock
    pop %ebx
    ret

# eax = address as above, edx = value, ecx = size.
    .globl pci_config_write
pci_config_write:
    push %ebx
    push %esi
    mov %eax, %ebx
    mov %edx, %esi
    spin_lock pci_lock, %edx
    mov %ebx, %eax
    call select_register
    mov %esi, %eax
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    out %eax, %dx
    jmp 3f
1:  out %al, %dx
    jmp 3f
2:  out %ax, %dx
3:  spin_unlock pci_lock
    pop %esi
    pop %ebx
    ret

# eax = config address: writes 0xcf8 and returns the data port in edx. Keeps ecx.
select_register:
    push %eax
    and $0x00fffffc, %eax
    or $0x80000000, %eax
    mov $PCI_CONFIG_ADDRESS, %dx
    out %eax, %dx
    pop %edx
    and $3, %edx
    add $PCI_CONFIG_DATA, %edx
    ret

    .bss
    .balign 4
pci_lock:
    .long 0
