# The IDT: 256 gates to 16-byte stubs. Vectors 0..31 (CPU exceptions) are fatal: the guest
# records the fault in its runtime page and stops with DONE_EXCEPTION_BASE + vector.
# Vectors 32..255 count into IRQ_COUNTS, run the program's hook, then EOI the LAPIC.
#
# Why the handlers do not end in `iret`: on this project's KVM (kvm_pvm, nested) 16/32-bit
# guest code runs through KVM's instruction emulator, which implements `iret` only in real
# mode; a 32-bit `iret` stops the vCPU with KVM_EXIT_INTERNAL_ERROR. The handler instead
# rearranges its frame and returns with `popfl; ret`, or `popfl; sti; ret` when the
# interrupted code had interrupts enabled. The sti shadow keeps a pending interrupt (a level
# line still asserted) from nesting before `ret`, so a storm cannot grow the stack. Only
# same-privilege returns are needed: everything runs in ring 0 on one flat code segment.

.include "runtime.inc"
.include "boot.inc"

    .text
    .balign 16
vector_stubs:
    .set vector, 0
    .rept 256
    .balign 16, 0xcc
    .if vector < IRQ_VECTOR_FIRST
    # Exceptions that push an error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX.
    .if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    pushl $0
    .endif
    pushl $vector
    jmp exception_common
    .else
    pushl $vector
    jmp interrupt_common
    .endif
    .set vector, vector + 1
    .endr
    # Fails to assemble ("moving .org backwards") if any stub outgrew its 16 bytes.
    .org vector_stubs + 256 * 16, 0xcc
vector_stubs_end:

    .globl idt_build
idt_build:
    push %edi
    mov $idt, %edi
    mov $vector_stubs, %edx
    xor %ecx, %ecx
1:  # 32-bit interrupt gate, present, DPL 0 (IF cleared on entry).
    mov %edx, %eax
    and $0xffff, %eax
    or $(SEL_CODE << 16), %eax
    stosl
    mov %edx, %eax
    and $0xffff0000, %eax
    or $0x8e00, %eax
    stosl
    add $16, %edx
    inc %ecx
    cmp $256, %ecx
    jb 1b
    pop %edi
    ret

# Stack: vector, eip, cs, eflags (pushed by the CPU, same privilege, no error code).
interrupt_common:
    push %eax
    push %ecx
    push %edx
    mov 12(%esp), %eax
    lock incl IRQ_COUNTS_ADDR(, %eax, 4)
    mov irq_hook, %ecx
    test %ecx, %ecx
    jz 1f
    call *%ecx
    mov 12(%esp), %eax
1:  cmp $SPURIOUS_VECTOR, %eax
    je 2f                           # a spurious interrupt is never acknowledged
    movl $0, LAPIC_BASE + LAPIC_EOI
2:  # Turn [vector, eip, cs, eflags] into [-, -, eflags', eip] with IF cleared in eflags'.
    mov 16(%esp), %eax              # eip
    mov 24(%esp), %edx              # eflags
    btr $9, %edx                    # CF = interrupted code's IF
    mov %edx, 20(%esp)
    mov %eax, 24(%esp)
    jc 3f
    pop %edx
    pop %ecx
    pop %eax
    lea 8(%esp), %esp
    popfl
    ret
3:  pop %edx
    pop %ecx
    pop %eax
    lea 8(%esp), %esp
    popfl
    sti
    ret

# Stack: vector, error code, eip, cs, eflags.
exception_common:
    # Which vCPU: the stack we are on says (each vCPU has its own STACKS_ADDR slot).
    mov %esp, %esi
    sub $STACKS_ADDR, %esi
    shr $STACK_SIZE_SHIFT, %esi
    cmp $GUEST_MAX_VCPUS, %esi
    jb 1f
    xor %esi, %esi
1:  rt_vcpu_ptr %esi, %edi
    mov (%esp), %eax
    mov %eax, RT_VCPU_FAULT_VECTOR(%edi)
    mov 4(%esp), %eax
    mov %eax, RT_VCPU_FAULT_ERROR(%edi)
    mov 8(%esp), %eax
    mov %eax, RT_VCPU_FAULT_EIP(%edi)
    movl $VCPU_STATE_FAULT, RT_VCPU_STATE(%edi)
    mov (%esp), %eax
    add $DONE_EXCEPTION_BASE, %eax
    mov %eax, RT_VCPU_DONE_CODE(%edi)
    jmp guest_stop

    .section .rodata
    .balign 4
    .word 0
idt_descriptor:
    .globl idt_descriptor
    .word 256 * 8 - 1
    .long idt

    .bss
    .balign 8
idt:
    .fill 256, 8, 0
# The program's interrupt hook, or 0: called from the handler with eax = vector, after the
# count and before the EOI, under the helper calling convention (boot.inc).
    .globl irq_hook
irq_hook:
    .long 0
