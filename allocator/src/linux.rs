//! `LinuxKernel`: the [`Kernel`] calls made as real Linux system calls.

use crate::kernel::{Errno, Kernel};
use crate::thread::ThreadSlot;

/// The real Linux kernel, reached through `libc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxKernel;

#[inline]
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub(crate) fn set_errno(value: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

fn last_error() -> Errno {
    Errno(errno())
}

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

    fn brk(&self, addr: usize) -> usize {
        // SAFETY: the brk system call only moves the break; it returns the break afterwards.
        unsafe { libc::syscall(libc::SYS_brk, addr) as usize }
    }

    /// Through glibc's `sbrk`, so that its cached break stays right for any other `sbrk`
    /// user in the process.
    fn sbrk(&self, increment: isize) -> Result<usize, Errno> {
        // SAFETY: sbrk only moves the program break.
        let old = unsafe { libc::sbrk(increment as libc::intptr_t) };
        if old as isize == -1 {
            Err(last_error())
        } else {
            Ok(old as usize)
        }
    }

    fn mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, Errno> {
        // SAFETY: an anonymous mapping; with MAP_FIXED the caller owns the range it replaces.
        let p =
            unsafe { libc::mmap(addr as *mut libc::c_void, len, prot, flags | libc::MAP_ANONYMOUS, -1, 0) };
        if p == libc::MAP_FAILED {
            Err(last_error())
        } else {
            Ok(p as usize)
        }
    }

    fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller unmaps only memory it owns.
        if unsafe { libc::munmap(addr as *mut libc::c_void, len) } == 0 {
            Ok(())
        } else {
            Err(last_error())
        }
    }

    fn mremap(&self, old_addr: usize, old_len: usize, new_len: usize, flags: i32) -> Result<usize, Errno> {
        // SAFETY: the caller owns the mapping it remaps; MREMAP_FIXED is never passed.
        let p = unsafe {
            libc::mremap(old_addr as *mut libc::c_void, old_len, new_len, flags & !libc::MREMAP_FIXED)
        };
        if p == libc::MAP_FAILED {
            Err(last_error())
        } else {
            Ok(p as usize)
        }
    }

    fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
        // SAFETY: the caller changes protection only of memory it owns.
        if unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) } == 0 {
            Ok(())
        } else {
            Err(last_error())
        }
    }

    fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
        // SAFETY: the caller advises only on memory it owns and no longer needs.
        if unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) } == 0 {
            Ok(())
        } else {
            Err(last_error())
        }
    }

    #[inline(always)]
    fn thread_slot() -> *const ThreadSlot {
        std::thread_local!(static SLOT: ThreadSlot = const { ThreadSlot::new() });
        SLOT.with(|slot| slot as *const ThreadSlot)
    }
}
