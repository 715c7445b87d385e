//! `LinuxKernel`: the [`Kernel`] calls made as real Linux system calls.

use crate::kernel::{Errno, Kernel};
use crate::prim::keeping_errno;
use crate::tcache::Tcache;
use crate::thread::ThreadSlot;

/// The real Linux kernel, reached through `libc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxKernel;

// SAFETY: every call is the system call itself; Linux maps what it reports as mapped, anonymous
// memory reads as zero, and the thread slot is a `thread_local!` of this module.
unsafe impl Kernel for LinuxKernel {
    #[inline]
    fn page_size(&self) -> usize {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            size as usize
        } else {
            4096
        }
    }

    unsafe fn brk(&self, addr: usize) -> usize {
        // SAFETY: the brk system call only moves the break (the caller promises the range
        // rule for what a lower break gives back); it returns the break afterwards.
        unsafe { libc::syscall(libc::SYS_brk, addr) as usize }
    }

    /// Through glibc's `sbrk`, so that its cached break stays right for any other `sbrk`
    /// user in the process.
    unsafe fn sbrk(&self, increment: isize) -> Result<usize, Errno> {
        // SAFETY: sbrk only moves the program break; the caller promises the range rule.
        let (old, e) = keeping_errno(|| unsafe { libc::sbrk(increment as libc::intptr_t) });
        if old as isize == -1 {
            Err(e)
        } else {
            Ok(old as usize)
        }
    }

    unsafe fn mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, Errno> {
        // SAFETY: an anonymous mapping; with MAP_FIXED the caller promises the range rule.
        let (p, e) = keeping_errno(|| unsafe {
            libc::mmap(addr as *mut libc::c_void, len, prot, flags | libc::MAP_ANONYMOUS, -1, 0)
        });
        if p == libc::MAP_FAILED {
            Err(e)
        } else {
            Ok(p as usize)
        }
    }

    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller promises the range rule.
        match keeping_errno(|| unsafe { libc::munmap(addr as *mut libc::c_void, len) }) {
            (0, _) => Ok(()),
            (_, e) => Err(e),
        }
    }

    unsafe fn mremap(
        &self,
        old_addr: usize,
        old_len: usize,
        new_len: usize,
        flags: i32,
    ) -> Result<usize, Errno> {
        // SAFETY: the caller promises the range rule; MREMAP_FIXED is never passed.
        let (p, e) = keeping_errno(|| unsafe {
            libc::mremap(old_addr as *mut libc::c_void, old_len, new_len, flags & !libc::MREMAP_FIXED)
        });
        if p == libc::MAP_FAILED {
            Err(e)
        } else {
            Ok(p as usize)
        }
    }

    unsafe fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
        // SAFETY: the caller promises the range rule.
        match keeping_errno(|| unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) }) {
            (0, _) => Ok(()),
            (_, e) => Err(e),
        }
    }

    unsafe fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
        // SAFETY: the caller promises the range rule.
        match keeping_errno(|| unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) }) {
            (0, _) => Ok(()),
            (_, e) => Err(e),
        }
    }

    #[inline(always)]
    fn thread_slot() -> *const ThreadSlot {
        initial_exec::slot()
    }

    #[inline(always)]
    fn thread_tcache() -> *const Tcache {
        initial_exec::tcache()
    }
}

/// The Linux thread slot in initial-exec TLS on x86-64 (feature `initial-exec-tls`).
///
/// Rust's `thread_local!` in a shared library uses the general-dynamic model: every access
/// calls `__tls_get_addr` (about 11 instructions), twice per malloc/free pair under
/// `LD_PRELOAD`. glibc keeps its tcache pointer in initial-exec TLS, one `%fs`-relative load
/// away. Stable Rust cannot ask for that model, so the slot is declared in assembly (in
/// `.tdata`, initialised to point at the disabled cache) and reached through its
/// `@GOTTPOFF` offset. A library with initial-exec TLS is given static TLS space when loaded
/// at start-up (`LD_PRELOAD`) and from glibc's reserve when `dlopen`ed. In an executable the
/// plain `thread_local!` is better still: the compiler uses the local-exec model there.
#[cfg(all(target_arch = "x86_64", feature = "initial-exec-tls"))]
mod initial_exec {
    use crate::tcache::{Tcache, DISABLED_TCACHE};
    use crate::thread::ThreadSlot;

    const _: () = assert!(core::mem::size_of::<ThreadSlot>() == 24);
    const _: () = assert!(core::mem::align_of::<ThreadSlot>() == 8);

    // A hidden (not exported) TLS object laid out as ThreadSlot: the cache pointer, the
    // arena pointer (null), the state (NEW), the drain flag (false) and padding.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl ptalloc_linux_thread_slot",
        ".hidden ptalloc_linux_thread_slot",
        ".type ptalloc_linux_thread_slot, @object",
        ".size ptalloc_linux_thread_slot, 24",
        "ptalloc_linux_thread_slot:",
        ".quad {disabled}",
        ".quad 0",
        ".quad 0",
        ".popsection",
        disabled = sym DISABLED_TCACHE,
    );

    #[inline(always)]
    pub(super) fn slot() -> *const ThreadSlot {
        let p: *const ThreadSlot;
        // SAFETY: reads the thread pointer (%fs:0 holds its own address on x86-64 Linux) and
        // adds the slot's offset from the GOT; the result is this thread's slot.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + ptalloc_linux_thread_slot@GOTTPOFF]",
                p = out(reg) p,
                options(pure, readonly, nostack),
            );
        }
        p
    }

    /// The slot's first word, the cache pointer, in one `%fs`-relative load (after loading
    /// the slot's offset, which the compiler may keep in a register across calls).
    #[inline(always)]
    pub(super) fn tcache() -> *const Tcache {
        let offset: usize;
        let tc: *const Tcache;
        // SAFETY: the GOT entry holds the slot's constant offset from the thread pointer
        // (written once, by the dynamic loader or the linker, before any code runs — hence
        // `nomem`); %fs:offset is then this thread's slot, whose first word is the cache.
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + ptalloc_linux_thread_slot@GOTTPOFF]",
                o = out(reg) offset,
                options(pure, nomem, nostack, preserves_flags),
            );
            core::arch::asm!(
                "mov {t}, qword ptr fs:[{o}]",
                o = in(reg) offset,
                t = out(reg) tc,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        tc
    }
}

#[cfg(not(all(target_arch = "x86_64", feature = "initial-exec-tls")))]
mod initial_exec {
    use crate::thread::ThreadSlot;

    #[inline(always)]
    pub(super) fn slot() -> *const ThreadSlot {
        std::thread_local!(static SLOT: ThreadSlot = const { ThreadSlot::new() });
        SLOT.with(|slot| slot as *const ThreadSlot)
    }

    #[inline(always)]
    pub(super) fn tcache() -> *const crate::tcache::Tcache {
        // SAFETY: the calling thread's slot.
        unsafe { (*slot()).tcache_ptr() }
    }
}
