//! The allocator's memory calls into its [`Kernel`], each counted for the statistics.
//!
//! Nothing else in the allocator asks the kernel for memory: this is the one place to look
//! for what ptalloc does to an address space. The host calls that are not about memory
//! (errno, futexes, the environment, ...) are in `prim.rs`.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::kernel::{Errno, Kernel};
use crate::malloc::Malloc;

/// One memory call the allocator made to its kernel, with its outcome, as an observer set
/// with [`Malloc::set_syscall_observer`] sees it (`ptalloc record` writes them to its trace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysCall {
    /// `sbrk(increment)` (never `sbrk(0)`, which only reads the break): the old break.
    Sbrk {
        increment: isize,
        result: Result<usize, Errno>,
    },
    /// An anonymous `mmap` without `MAP_FIXED`.
    Mmap {
        len: usize,
        prot: i32,
        flags: i32,
        result: Result<usize, Errno>,
    },
    Munmap {
        addr: usize,
        len: usize,
        result: Result<(), Errno>,
    },
    Mremap {
        addr: usize,
        old_len: usize,
        new_len: usize,
        flags: i32,
        result: Result<usize, Errno>,
    },
    Mprotect {
        addr: usize,
        len: usize,
        prot: i32,
        result: Result<(), Errno>,
    },
    Madvise {
        addr: usize,
        len: usize,
        advice: i32,
        result: Result<(), Errno>,
    },
}

/// Called on the thread that made the call, right after it returned, with no allocator lock
/// released in between: it must not call the allocator (nor anything that may), and must
/// not block for long.
pub type SysCallObserver = fn(&SysCall);

impl<K: Kernel> Malloc<K> {
    /// Have `observer` told of every memory call this allocator makes from now on (`None`:
    /// nobody). The calls of `sbrk(0)`, which only read the break, are not reported.
    pub fn set_syscall_observer(&self, observer: Option<SysCallObserver>) {
        let p = observer.map_or(core::ptr::null_mut(), |f| f as *mut ());
        self.syscall_observer.store(p, Release);
    }

    #[inline]
    fn observe(&self, call: SysCall) {
        let p = self.syscall_observer.load(Acquire);
        if !p.is_null() {
            // SAFETY: the only non-null values stored are `SysCallObserver`s (above).
            let f: SysCallObserver = unsafe { core::mem::transmute::<*mut (), SysCallObserver>(p) };
            f(&call);
        }
    }

    /// The program break now (`sbrk(0)`, not counted).
    pub(crate) fn current_break(&self) -> Result<usize, Errno> {
        // SAFETY: a zero increment only reads the break.
        unsafe { self.kernel.sbrk(0) }
    }

    /// `sbrk`, counted.
    ///
    /// # Safety
    /// A negative `increment` gives memory back: the range rule (see [`Kernel`]) for it.
    pub(crate) unsafe fn sys_sbrk(&self, increment: isize) -> Result<usize, Errno> {
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.kernel.sbrk(increment) };
        if increment != 0 {
            let s = &self.stats;
            s.brk_calls.fetch_add(1, Relaxed);
            match r {
                Ok(_) if increment > 0 => {
                    s.brk_grown.fetch_add(increment as u64, Relaxed);
                }
                Ok(_) => {
                    s.brk_shrunk.fetch_add(increment.unsigned_abs() as u64, Relaxed);
                }
                Err(_) => {
                    s.failed_calls.fetch_add(1, Relaxed);
                }
            }
            self.observe(SysCall::Sbrk { increment, result: r });
        }
        r
    }

    /// A new anonymous mapping (never `MAP_FIXED`: `addr` is only a hint, so nothing is
    /// replaced).
    pub(crate) fn sys_mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, Errno> {
        let flags = (flags | libc::MAP_ANONYMOUS) & !libc::MAP_FIXED;
        // SAFETY: without MAP_FIXED the kernel picks a free range: nothing is replaced.
        let r = unsafe { self.kernel.mmap(addr, len, prot, flags) };
        self.stats.mmap_calls.fetch_add(1, Relaxed);
        match r {
            Ok(_) => self.stats.mmap_bytes.fetch_add(len as u64, Relaxed),
            Err(_) => self.stats.failed_calls.fetch_add(1, Relaxed),
        };
        self.observe(SysCall::Mmap { len, prot, flags, result: r });
        r
    }

    /// `munmap`; a failure leaves the range mapped and is only counted.
    ///
    /// # Safety
    /// The range rule (see [`Kernel`]).
    pub(crate) unsafe fn sys_munmap(&self, addr: usize, len: usize) {
        self.stats.munmap_calls.fetch_add(1, Relaxed);
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.kernel.munmap(addr, len) };
        match r {
            Ok(()) => self.stats.munmap_bytes.fetch_add(len as u64, Relaxed),
            Err(_) => self.stats.failed_calls.fetch_add(1, Relaxed),
        };
        self.observe(SysCall::Munmap { addr, len, result: r });
    }

    /// # Safety
    /// The range rule (see [`Kernel`]) for the old mapping.
    pub(crate) unsafe fn sys_mremap(
        &self,
        addr: usize,
        old_len: usize,
        new_len: usize,
        flags: i32,
    ) -> Result<usize, Errno> {
        self.stats.mremap_calls.fetch_add(1, Relaxed);
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.kernel.mremap(addr, old_len, new_len, flags) };
        match r {
            Ok(_) if new_len >= old_len => {
                self.stats.mremap_grown.fetch_add((new_len - old_len) as u64, Relaxed)
            }
            Ok(_) => self.stats.mremap_shrunk.fetch_add((old_len - new_len) as u64, Relaxed),
            Err(_) => self.stats.failed_calls.fetch_add(1, Relaxed),
        };
        self.observe(SysCall::Mremap { addr, old_len, new_len, flags, result: r });
        r
    }

    /// # Safety
    /// The range rule (see [`Kernel`]), unless the protection only grows.
    pub(crate) unsafe fn sys_mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
        self.stats.mprotect_calls.fetch_add(1, Relaxed);
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.kernel.mprotect(addr, len, prot) };
        if r.is_err() {
            self.stats.failed_calls.fetch_add(1, Relaxed);
        }
        self.observe(SysCall::Mprotect { addr, len, prot, result: r });
        r
    }

    /// `madvise(MADV_DONTNEED)`: the pages go back to the kernel and read as zero later.
    ///
    /// # Safety
    /// The range rule (see [`Kernel`]): the contents are discarded.
    pub(crate) unsafe fn sys_madvise_dontneed(&self, addr: usize, len: usize) {
        self.stats.madvise_calls.fetch_add(1, Relaxed);
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.kernel.madvise(addr, len, libc::MADV_DONTNEED) };
        match r {
            Ok(()) => self.stats.madvise_bytes.fetch_add(len as u64, Relaxed),
            Err(_) => self.stats.failed_calls.fetch_add(1, Relaxed),
        };
        self.observe(SysCall::Madvise { addr, len, advice: libc::MADV_DONTNEED, result: r });
    }
}
