//! ptalloc: a ptmalloc-style memory allocator — the design of glibc's `malloc` — generic
//! over the kernel it runs on.
//!
//! Small requests are carved from a heap that grows with `brk`; requests at or above the
//! mmap threshold (128 KiB, moving with glibc's dynamic rule) get their own `mmap`. Freed
//! chunks go to a per-thread cache, to fastbins, or are coalesced with their neighbours into
//! sorted bins. Threads spread over several arenas. The repository's `ARCHITECTURE.md`
//! describes the design: the life of a `malloc` and a `free`, the invariants each structure
//! keeps, and which file holds each glibc function.
//!
//! Three ways to use it:
//! - as the Rust global allocator: `#[global_allocator] static A: ptalloc::PtAlloc = ptalloc::PtAlloc;`
//! - as `libptalloc.so` under `LD_PRELOAD` (crate `ptalloc-preload`), for any program;
//! - on kernel-sim's simulated kernel, through [`Malloc`] with another [`Kernel`].

// The allocator needs nothing of std but `thread_local!`, and that only without the
// initial-exec slot: libptalloc.so, built with that slot, links no std at all (no unwinder,
// no libgcc_s, a small text; every page of it counts in a small program's RSS).
#![cfg_attr(not(test), no_std)]
#[cfg(not(any(test, all(target_arch = "x86_64", feature = "initial-exec-tls"))))]
extern crate std;

mod arena;
mod bins;
mod check;
mod chunk;
mod fork;
mod global;
mod heap;
mod int_free;
mod int_malloc;
mod kernel;
mod linux;
mod lock;
mod malloc;
mod memalign;
mod mmap_chunk;
mod os;
mod params;
mod prim;
mod printerr;
mod realloc;
mod stats;
mod sysmalloc;
mod tcache;
mod thread;

pub use check::{HeapError, HeapReport, CHUNK_CHECK_MARK};
pub use global::{linux, PtAlloc};
pub use kernel::{Errno, Kernel};
pub use linux::LinuxKernel;
pub use lock::Lock;
pub use malloc::Malloc;
pub use os::{SysCall, SysCallObserver};
pub use params::{
    M_ARENA_MAX, M_ARENA_TEST, M_CHECK_ACTION, M_MMAP_MAX, M_MMAP_THRESHOLD, M_MXFAST, M_PERTURB, M_TOP_PAD,
    M_TRIM_THRESHOLD,
};
/// The host's errno, for code that runs underneath an allocator (kernel-sim uses them too).
pub use prim::{clock_ns, errno, keeping_errno, set_errno};
pub use stats::{FdWriter, MallInfo, MallInfo2, Stats};
#[doc(hidden)]
pub use tcache::Tcache;
pub use thread::ThreadSlot;
