//! Counters a machine keeps for its views and tests: system calls by kind, faults, and a
//! snapshot type gathering them with the address space's own counters.

/// The system calls a machine serves, as indices into the counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Syscall {
    Brk,
    Mmap,
    Munmap,
    Mremap,
    Mprotect,
    Madvise,
    Mincore,
    Msync,
    Open,
    Close,
    Pread,
    Pwrite,
    Ftruncate,
    Fsync,
    Fadvise,
    Execve,
    Mlock,
    Munlock,
    Mlockall,
    Munlockall,
    Swapon,
}

pub const NR_SYSCALLS: usize = 21;
const SYSCALL_NAMES: [&str; NR_SYSCALLS] = [
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "mincore",
    "msync",
    "open",
    "close",
    "pread64",
    "pwrite64",
    "ftruncate",
    "fsync",
    "fadvise64",
    "execve",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "swapon",
];

impl Syscall {
    /// The system call's name, for labelling counters.
    pub fn name(self) -> &'static str {
        SYSCALL_NAMES[self as usize]
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub calls: [u64; NR_SYSCALLS],
    pub failed: [u64; NR_SYSCALLS],
    /// Hardware faults resolved by mapping a page (`min_flt`).
    pub faults: u64,
    /// Hardware faults another thread had already resolved.
    pub spurious_faults: u64,
    pub segv: u64,
    pub sigbus: u64,
}

/// A snapshot of a machine's counters. Sizes are in pages unless named `_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Page faults taken by user accesses and resolved (the process's `min_flt`).
    pub faults: u64,
    /// Every `handle_mm_fault`, including those made by `MAP_POPULATE` (vmstat `pgfault`).
    pub pgfault: u64,
    /// Faults that read their page from a file: of the machine (`pgmajfault`) and of the
    /// process's accesses (`maj_flt`).
    pub pgmajfault: u64,
    pub maj_flt: u64,
    /// Kilobytes read into the page cache from files and written back to them.
    pub pgpgin: u64,
    pub pgpgout: u64,
    /// Dirty file pages now, and file pages ever dirtied and written back.
    pub nr_dirty: usize,
    pub nr_dirtied: u64,
    pub nr_written: u64,
    /// Copy-on-write faults (a private copy made of a page that was not the process's own).
    pub cow_faults: u64,
    pub syscalls: [u64; NR_SYSCALLS],
    pub syscalls_failed: [u64; NR_SYSCALLS],
    pub segv: u64,
    pub sigbus: u64,
    pub rss_anon: usize,
    pub rss_file: usize,
    pub rss_shmem: usize,
    pub rss: usize,
    /// Peak RSS (`VmHWM`).
    pub hiwater_rss: usize,
    pub total_vm: usize,
    pub hiwater_vm: usize,
    pub data_vm: usize,
    pub exec_vm: usize,
    pub stack_vm: usize,
    pub locked_vm: usize,
    pub map_count: usize,
    pub pgtables_bytes: usize,
    pub brk: usize,
    pub start_brk: usize,
    pub totalram_pages: usize,
    pub free_pages: usize,
    pub committed_as: isize,
    pub commit_limit: usize,
    pub nr_anon_pages: usize,
    pub nr_shmem: usize,
    pub nr_file_pages: usize,
    pub nr_page_table_pages: usize,
    pub nr_slab: usize,
    pub pgalloc: u64,
    pub pgfree: u64,
    pub oom_kill: u64,
    /// Swap entries in the process's page tables (`VmSwap`), in pages.
    pub swap_ents: usize,
}

impl Counters {
    pub fn calls(&self, s: Syscall) -> u64 {
        self.syscalls[s as usize]
    }
    pub fn failed(&self, s: Syscall) -> u64 {
        self.syscalls_failed[s as usize]
    }
    pub fn rss_bytes(&self) -> usize {
        self.rss * crate::page::PAGE_SIZE
    }
}
