# How a guest run ends: a 32-bit `out` of the exit code to DONE_PORT (the host's signal on
# KVM), then on PVH a SCHEDOP_shutdown hypercall so that Xen ends the domain even when no
# ioreq server claims the port, then `cli; hlt` for good.

.include "runtime.inc"
.include "boot.inc"

.equ XEN_CPUID_FIRST,        0x40000000
.equ XEN_CPUID_LAST,         0x40010000
.equ XEN_SIG_EBX,            0x566e6558     # "XenV"
.equ XEN_SIG_ECX,            0x65584d4d     # "MMXe"
.equ XEN_SIG_EDX,            0x4d4d566e     # "nVMM"
.equ HYPERVISOR_SCHED_OP,    29
.equ SCHEDOP_SHUTDOWN,       2
.equ SHUTDOWN_POWEROFF,      0
.equ SHUTDOWN_CRASH,         3

    .text
# eax = exit code. Records it for the calling vCPU (found from its stack), then stops.
    .globl guest_done
guest_done:
    mov %esp, %esi
    sub $STACKS_ADDR, %esi
    shr $STACK_SIZE_SHIFT, %esi
    cmp $GUEST_MAX_VCPUS, %esi
    jb 1f
    xor %esi, %esi
1:  rt_vcpu_ptr %esi, %edi
    mov %eax, RT_VCPU_DONE_CODE(%edi)
    movl $VCPU_STATE_DONE, RT_VCPU_STATE(%edi)
    # fall through

# eax = exit code. Never returns.
    .globl guest_stop
guest_stop:
    cli
    mov %eax, %ebx
    mov $DONE_PORT, %dx
    out %eax, %dx
    cmpl $PLATFORM_PVH, RT_INFO_ADDR + RT_PLATFORM
    jne 2f
    mov %ebx, %eax
    call xen_shutdown
2:  hlt
    jmp 2b

# eax = exit code: asks Xen to power the domain off (0) or to record a crash (other codes).
# Returns when the hypervisor is not Xen or refuses.
xen_shutdown:
    push %ebx
    push %eax
    call xen_hypercall_init
    test %eax, %eax
    pop %eax
    jz 9f
    movl $SHUTDOWN_POWEROFF, shutdown_reason
    test %eax, %eax
    jz 4f
    movl $SHUTDOWN_CRASH, shutdown_reason
4:  mov $SCHEDOP_SHUTDOWN, %ebx
    mov $shutdown_reason, %ecx
    call XEN_HYPERCALL_PAGE + HYPERVISOR_SCHED_OP * 32
9:  pop %ebx
    ret

# Finds Xen's CPUID leaves and has Xen fill the hypercall page at XEN_HYPERCALL_PAGE (once;
# later calls only report). Returns eax = 1 when the page is there, 0 when the hypervisor is
# not Xen. Helper calling convention (boot.inc).
    .globl xen_hypercall_init
xen_hypercall_init:
    cmpl $0, hypercall_page_ready
    jne 8f
    push %ebx
    push %esi
    mov $XEN_CPUID_FIRST, %esi
1:  mov %esi, %eax
    cpuid
    cmp $XEN_SIG_EBX, %ebx
    jne 2f
    cmp $XEN_SIG_ECX, %ecx
    jne 2f
    cmp $XEN_SIG_EDX, %edx
    je 3f
2:  add $0x100, %esi
    cmp $XEN_CPUID_LAST, %esi
    jb 1b
    pop %esi
    pop %ebx
    xor %eax, %eax
    ret
3:  # Leaf base + 2: ebx = the MSR that installs the hypercall page at the address written.
    lea 2(%esi), %eax
    cpuid
    mov %ebx, %ecx
    mov $XEN_HYPERCALL_PAGE, %eax
    xor %edx, %edx
    wrmsr
    movl $1, hypercall_page_ready
    pop %esi
    pop %ebx
8:  mov $1, %eax
    ret

    .bss
    .balign 4
shutdown_reason:                    # struct sched_shutdown { unsigned int reason; }
    .long 0
hypercall_page_ready:
    .long 0
