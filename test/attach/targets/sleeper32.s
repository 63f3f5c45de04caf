# A 32-bit (i386) program with no libc that only sleeps: the attach tests' "32-bit target".
# Built at test time with `as --32` + `ld -m elf_i386` (no multilib needed).
    .globl _start
    .text
_start:
1:  movl $162, %eax        # nanosleep(&ts, NULL)
    leal ts, %ebx
    xorl %ecx, %ecx
    int $0x80
    jmp 1b
    .data
ts: .long 1, 0
