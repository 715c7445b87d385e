//! kernel-sim: a simulation of the Linux memory manager, good enough to run a real
//! allocator on and to watch what it does to an address space and to physical memory.
//!
//! A [`Machine`] has simulated physical memory (a memfd of page frames managed by a buddy
//! allocator with Linux's zones and watermarks), a slab allocator for the kernel's own
//! objects, and one process: an `mm_struct` of VMAs with four-level page tables. Its system
//! calls — `brk`, `mmap`, `munmap`, `mremap`, `mprotect`, `madvise`, `mincore` — follow
//! Linux's semantics and error codes. User memory is a reserved range of host memory in
//! which every first touch of a page, by any code, raises a real page fault that the
//! simulation resolves (`signal.rs`, `fault.rs`).
//!
//! [`SimKernel`] serves the allocator's `Kernel` calls from a machine, so
//! `ptalloc::Malloc<SimKernel>` is ptmalloc on the simulated kernel.
//!
//! The rules that keep it usable underneath an allocator: no system-call or fault path
//! allocates from the host heap, takes a lock that could, panics or unwinds; errors are
//! values. The crate's `README.md` gives the model and its limits; the repository's
//! `ARCHITECTURE.md`, the map of its files, the life of a page fault, the invariants and the
//! locks; each module's documentation, its part.

pub use ptalloc::Errno;

// The modules are the simulated kernel's insides; the API is what is re-exported below.
pub(crate) mod binfmt_elf;
pub(crate) mod buddy;
pub(crate) mod check;
pub(crate) mod cma;
pub(crate) mod compaction;
pub(crate) mod cpu_tlbstate;
pub(crate) mod exec;
pub(crate) mod fault;
pub(crate) mod file;
pub(crate) mod filemap;
pub(crate) mod fork;
pub(crate) mod kernel_layout;
pub(crate) mod kptr;
pub(crate) mod kstack;
pub(crate) mod machine;
pub(crate) mod madvise;
pub(crate) mod memory;
pub(crate) mod migrate;
pub(crate) mod mincore;
pub(crate) mod mlock;
pub(crate) mod mm;
pub(crate) mod mmap;
pub(crate) mod mmu;
pub(crate) mod mprotect;
pub(crate) mod mremap;
pub(crate) mod msync;
pub(crate) mod oom_kill;
pub(crate) mod overcommit;
pub(crate) mod page;
pub(crate) mod page_table;
pub(crate) mod page_writeback;
pub(crate) mod physmem;
pub(crate) mod proc;
pub(crate) mod rmap;
pub(crate) mod shmem;
pub(crate) mod signal;
pub(crate) mod sim_kernel;
pub(crate) mod slab;
pub(crate) mod stats;
pub(crate) mod svg;
pub(crate) mod swap;
pub(crate) mod swap_state;
pub(crate) mod swapfile;
pub(crate) mod sync;
pub(crate) mod syscalls;
pub(crate) mod tlb;
pub(crate) mod truncate;
pub(crate) mod util;
pub(crate) mod vdso;
pub(crate) mod vma;
pub(crate) mod vma_tree;
pub(crate) mod vmalloc;
pub(crate) mod vmscan;

pub use binfmt_elf::ExecImage;
pub use buddy::BuddyReport;
pub use check::CheckError;
pub use cpu_tlbstate::TlbStats;
pub use fault::FaultError;
pub use kernel_layout::{Arch, I386Config, KernelLayout, Region, STRUCT_PAGE_SIZE, STRUCT_PAGE_SIZE_32};
pub use machine::{default_machine, Config, Machine, MachineBox, MAX_TASKS};
pub use mm::Rlimits;
pub use mmap::MAP_FIXED_NOREPLACE;
pub use mremap::{MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE};
pub use proc::{Layout, MemStats, Name, VmaInfo};
pub use sim_kernel::SimKernel;
pub use stats::{Counters, Syscall};
pub use swapfile::mkswap;
