//! kernel-sim: a simulation of the Linux memory manager, good enough to run a real
//! allocator on and to watch what it does to an address space and to physical memory.
//!
//! A [`Machine`] has simulated physical memory (a memfd of page frames managed by a buddy
//! allocator with Linux's zones and watermarks), a slab allocator for the kernel's own
//! objects, and one process: an [`mm`] of VMAs with four-level page tables. Its system
//! calls — `brk`, `mmap`, `munmap`, `mremap`, `mprotect`, `madvise`, `mincore` — follow
//! Linux's semantics and error codes. User memory is a reserved range of host memory in
//! which every first touch of a page, by any code, raises a real page fault that the
//! simulation resolves (see `fault` and `signal`).
//!
//! [`SimKernel`] serves the allocator's `Kernel` calls from a machine, so
//! `ptalloc::Malloc<SimKernel>` is ptmalloc on the simulated kernel.
//!
//! The rules that keep it usable underneath an allocator: no system-call or fault path
//! allocates from the host heap, takes a lock that could, panics or unwinds; errors are
//! values. See `DESIGN.md` and the module documentation of each part.

pub use ptalloc::Errno;

pub mod buddy;
mod check;
pub mod fault;
pub mod kptr;
pub mod machine;
pub mod madvise;
pub mod memory;
pub mod mincore;
pub mod mm;
pub mod mmap;
pub mod mmu;
pub mod mprotect;
pub mod mremap;
pub mod overcommit;
pub mod page;
pub mod page_table;
pub mod physmem;
pub mod proc;
pub mod shmem;
pub mod signal;
mod sim_kernel;
pub mod slab;
pub mod stats;
mod svg;
pub mod sync;
mod syscalls;
pub mod util;
pub mod vma;
pub mod vma_tree;

pub use buddy::BuddyReport;
pub use check::CheckError;
pub use fault::FaultError;
pub use machine::{default_machine, Config, Machine, MachineBox};
pub use mm::Rlimits;
pub use mmap::MAP_FIXED_NOREPLACE;
pub use mremap::{MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE};
pub use proc::{MemStats, VmaInfo};
pub use sim_kernel::SimKernel;
pub use stats::{Counters, Syscall};
