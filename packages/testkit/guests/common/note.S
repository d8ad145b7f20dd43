# The one ELF note a PVH image needs: Xen enters pvh_entry in 32-bit protected mode, paging
# off, ebx = start_info.

.equ XEN_ELFNOTE_PHYS32_ENTRY, 18

    .section .note.Xen, "a", @note
    .balign 4
    .long 4                         # namesz: "Xen\0"
    .long 4                         # descsz
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long pvh_entry
    .balign 4
