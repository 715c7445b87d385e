//! The seam between the allocator and the operating system.
//!
//! The allocator asks the kernel for memory only through the calls ptmalloc makes: `brk`
//! (through `sbrk`), anonymous `mmap`, `munmap`, `mremap`, `mprotect` and `madvise`. Two
//! kernels implement them: [`LinuxKernel`](crate::LinuxKernel) with raw system calls, and
//! kernel-sim's `SimKernel`, which serves them from a simulated memory manager. The allocator
//! is generic over the trait, so the Linux build pays nothing for the seam.

use crate::tcache::Tcache;
use crate::thread::ThreadSlot;

/// An error number, as the Linux system call reports it (`ENOMEM`, `EINVAL`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const EOVERFLOW: Errno = Errno(libc::EOVERFLOW);
}

/// The memory calls of an operating-system kernel, with Linux's semantics and error codes.
///
/// Protection, map and advice arguments use Linux's constants (`libc::PROT_*`, `libc::MAP_*`,
/// `libc::MREMAP_*`, `libc::MADV_*`). Addresses are plain `usize`. Errors are returned as
/// values; the calls leave the thread's `errno` as they found it (`free` relies on this).
///
/// The calls that take memory away or change it — `brk`/`sbrk` lowering the break,
/// `munmap`, `mremap`, `mprotect`, `madvise`, `mmap` with `MAP_FIXED` — are `unsafe fn`s:
/// their caller promises the *range rule*, that nothing still uses the memory they unmap,
/// move, protect or discard (no reference, and no pointer anyone will dereference, points
/// into it). Memory is the caller's to give up only if it got it from these calls.
///
/// # Safety
///
/// The allocator reads and writes the memory these calls hand out. An implementation must
/// make every byte it reports as mapped with `PROT_READ | PROT_WRITE` (by `brk`, `mmap`,
/// `mremap` or `mprotect`) readable and writable by ordinary loads and stores until it is
/// unmapped, and anonymous memory must read as zero when first touched. `thread_slot` must
/// return a slot that is distinct for every thread and lives as long as the thread.
pub unsafe trait Kernel: Sync + 'static {
    /// The size of a page in bytes (4096 on x86-64).
    fn page_size(&self) -> usize;

    /// `brk(2)` as the system call does it: ask for the program break to move to `addr`, and
    /// return the break afterwards — `addr` on success, the unchanged old break on failure.
    /// `brk(0)` only reports the current break.
    ///
    /// # Safety
    /// The range rule (see [`Kernel`]) for what lies between `addr` and the current break
    /// when `addr` is below it.
    unsafe fn brk(&self, addr: usize) -> usize;

    /// `sbrk(3)`: move the break by `increment` bytes and return the break before the move,
    /// or `ENOMEM` if it cannot move.
    ///
    /// # Safety
    /// For a negative `increment`, the range rule (see [`Kernel`]) for the memory given back.
    unsafe fn sbrk(&self, increment: isize) -> Result<usize, Errno> {
        // SAFETY: brk(0) only reads the break.
        let old = unsafe { self.brk(0) };
        if increment == 0 {
            return Ok(old);
        }
        let Some(want) = old.checked_add_signed(increment) else {
            return Err(Errno::ENOMEM);
        };
        // SAFETY: forwarded from the caller.
        if unsafe { self.brk(want) } == want {
            Ok(old)
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// Anonymous `mmap(2)` (no file: the descriptor is -1 and the offset 0). `flags` holds
    /// `MAP_PRIVATE` or `MAP_SHARED` and any of `MAP_ANONYMOUS`, `MAP_FIXED`,
    /// `MAP_FIXED_NOREPLACE`, `MAP_NORESERVE`. Returns the start of the mapping.
    ///
    /// # Safety
    /// With `MAP_FIXED`, the range rule (see [`Kernel`]) for the range replaced.
    unsafe fn mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, Errno>;

    /// `munmap(2)`.
    ///
    /// # Safety
    /// The range rule (see [`Kernel`]).
    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno>;

    /// `mremap(2)` without `MREMAP_FIXED`: grow or shrink a mapping in place, or move it when
    /// `flags` holds `MREMAP_MAYMOVE`. Returns the (possibly new) start of the mapping.
    ///
    /// # Safety
    /// The range rule (see [`Kernel`]) for the old mapping (its contents may move).
    unsafe fn mremap(
        &self,
        old_addr: usize,
        old_len: usize,
        new_len: usize,
        flags: i32,
    ) -> Result<usize, Errno>;

    /// `mprotect(2)`.
    ///
    /// # Safety
    /// The range rule (see [`Kernel`]), unless the protection only grows.
    unsafe fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), Errno>;

    /// `madvise(2)`; the allocator uses `MADV_DONTNEED`.
    ///
    /// # Safety
    /// The range rule (see [`Kernel`]) for advice that discards contents.
    unsafe fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), Errno>;

    /// The calling thread's slot for the allocator's per-thread state (thread cache and
    /// arena). Each kernel type has its own: a `std::thread_local!` of a
    /// [`ThreadSlot`] with a `const { ThreadSlot::new() }` initialiser and no destructor
    /// (anything else would allocate on first use), returned by address — see
    /// `LinuxKernel`'s implementation.
    fn thread_slot() -> *const ThreadSlot;

    /// The calling thread's cache, as stored in its slot: the first load of both fast paths.
    /// A kernel may read it more directly than through `thread_slot` (`LinuxKernel` does).
    #[doc(hidden)]
    #[inline(always)]
    fn thread_tcache() -> *const Tcache {
        // SAFETY: the slot is the calling thread's and lives as long as the thread.
        unsafe { (*Self::thread_slot()).tcache_ptr() }
    }
}
