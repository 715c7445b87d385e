//! `SimKernel`: the allocator's [`Kernel`] calls served by a simulated machine.

use ptalloc::{keeping_errno, Errno, Kernel, ThreadSlot};

use crate::machine::{default_machine, Machine};
use crate::page::PAGE_SIZE;

/// A `Kernel` on a simulated machine: the process-wide default one ([`SimKernel::new`],
/// booted on first use) or a given one ([`SimKernel::on`]). Const-constructible, so
///
/// ```
/// use kernel_sim::SimKernel;
///
/// static SIM_MALLOC: ptalloc::Malloc<SimKernel> = unsafe { ptalloc::Malloc::new(SimKernel::new()) };
///
/// let p = SIM_MALLOC.malloc(100_000);
/// assert!(!p.is_null());
/// // SAFETY: a block just allocated.
/// unsafe {
///     p.write_bytes(7, 100_000); // the first touch of each page faults into the simulation
///     SIM_MALLOC.free(p);
/// }
/// SIM_MALLOC.check_heap().unwrap();
/// ```
pub struct SimKernel {
    machine: Option<&'static Machine>,
}

impl SimKernel {
    /// The kernel of the default machine.
    pub const fn new() -> SimKernel {
        SimKernel { machine: None }
    }

    /// The kernel of `machine`.
    pub const fn on(machine: &'static Machine) -> SimKernel {
        SimKernel { machine: Some(machine) }
    }

    /// The machine behind this kernel (booting the default one if needed).
    #[inline]
    pub fn machine(&self) -> &'static Machine {
        match self.machine {
            Some(m) => m,
            None => default_machine(),
        }
    }
}

impl Default for SimKernel {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every call is the machine's system call with Linux's semantics. Memory reported
// mapped readable and writable is a range of the machine's user space, where any access
// either finds a host mapping of its frame or faults into the simulation, which maps one
// (anonymous memory reads as zero: frames are zeroed or the zero page). The thread slot is a
// thread_local of this module with a const initialiser and no destructor.
//
// The contract also wants errors as values and the thread's errno left as it was (`free`
// must not change it), while the machine's host calls may set errno: every call runs under
// `keeping_errno`, and the errno it reports is dropped because the result carries the error.
unsafe impl Kernel for SimKernel {
    fn page_size(&self) -> usize {
        // Boot now, before the allocator registers anything of its own, so the machine
        // exists by the allocator's first real call.
        let _ = self.machine();
        PAGE_SIZE
    }

    unsafe fn brk(&self, addr: usize) -> usize {
        // SAFETY: the caller's promise (the range rule below a lowered break) is the machine's.
        keeping_errno(|| unsafe { self.machine().brk(addr) }).0
    }

    unsafe fn mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, Errno> {
        // SAFETY: the caller's promise (the range rule with MAP_FIXED) is the machine's.
        keeping_errno(|| unsafe { self.machine().mmap(addr, len, prot, flags | libc::MAP_ANONYMOUS, -1, 0) })
            .0
    }

    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller's promise (the range rule) is the machine's.
        keeping_errno(|| unsafe { self.machine().munmap(addr, len) }).0
    }

    unsafe fn mremap(
        &self,
        old_addr: usize,
        old_len: usize,
        new_len: usize,
        flags: i32,
    ) -> Result<usize, Errno> {
        // SAFETY: the caller's promise (the range rule for the old mapping) is the machine's;
        // without MREMAP_FIXED no range at a new address is replaced.
        keeping_errno(|| unsafe {
            self.machine().mremap(old_addr, old_len, new_len, flags & !crate::mremap::MREMAP_FIXED, 0)
        })
        .0
    }

    unsafe fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
        // SAFETY: the caller's promise (the range rule unless the protection only grows) is
        // the machine's.
        keeping_errno(|| unsafe { self.machine().mprotect(addr, len, prot) }).0
    }

    unsafe fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
        // SAFETY: the caller's promise (the range rule for advice that discards) is the
        // machine's.
        keeping_errno(|| unsafe { self.machine().madvise(addr, len, advice) }).0
    }

    #[inline(always)]
    fn thread_slot() -> *const ThreadSlot {
        std::thread_local!(static SLOT: ThreadSlot = const { ThreadSlot::new() });
        SLOT.with(|slot| slot as *const ThreadSlot)
    }
}
