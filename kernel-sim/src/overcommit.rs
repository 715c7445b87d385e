//! Overcommit accounting (`vm.overcommit_memory`, Linux's `__vm_enough_memory`).
//!
//! Writable private mappings (and shared anonymous ones, through their shmem inode) are
//! charged to `Committed_AS` when created, unless `MAP_NORESERVE` applies. The mode decides
//! when a charge is refused:
//! - 0 (heuristic, the default): only a single request larger than all of RAM plus swap;
//! - 1 (always): never;
//! - 2 (never overcommit): when `Committed_AS` would reach the commit limit, swap (none
//!   here) plus `overcommit_ratio`% of RAM (or `overcommit_kbytes`), less the admin
//!   reserve for unprivileged processes and a slice of the process's own size.
//!
//! So under mode 2 a machine refuses `mmap`, `brk` and `mremap` growth deterministically,
//! before any page is touched.
//!
//! `VmSysctl` also carries the other settings the address space is checked against:
//! `vm.max_map_count` and the capabilities `CAP_SYS_ADMIN` and `CAP_IPC_LOCK`.

use crate::page::PAGE_SHIFT;
use crate::Errno;

pub const OVERCOMMIT_GUESS: u32 = 0;
pub const OVERCOMMIT_ALWAYS: u32 = 1;
pub const OVERCOMMIT_NEVER: u32 = 2;

#[derive(Clone, Copy, Debug)]
pub struct VmSysctl {
    pub overcommit_memory: u32,
    pub overcommit_ratio: usize,
    pub overcommit_kbytes: usize,
    pub max_map_count: usize,
    pub admin_reserve_kbytes: usize,
    pub user_reserve_kbytes: usize,
    /// Pages charged (`vm_committed_as`).
    pub committed_as: isize,
    /// Whether the process holds CAP_SYS_ADMIN (skips the admin reserve).
    pub cap_sys_admin: bool,
    /// Whether the process holds CAP_IPC_LOCK (no RLIMIT_MEMLOCK).
    pub cap_ipc_lock: bool,
    /// Swap pages (always 0: the simulation has no swap).
    pub total_swap_pages: usize,
    /// Pages charged that no mapping will give back (stack growth of a VMA without
    /// `VM_ACCOUNT`, as in Linux); kept so the checker can account for them.
    pub committed_leaked: usize,
}

impl VmSysctl {
    /// Defaults as Linux computes them at boot for `free_pages` free pages.
    pub fn new(free_pages: usize) -> VmSysctl {
        let free_kbytes = free_pages << (PAGE_SHIFT - 10);
        VmSysctl {
            overcommit_memory: OVERCOMMIT_GUESS,
            overcommit_ratio: 50,
            overcommit_kbytes: 0,
            max_map_count: 65530,
            admin_reserve_kbytes: (free_kbytes / 32).min(1 << 13),
            user_reserve_kbytes: (free_kbytes / 32).min(1 << 17),
            committed_as: 0,
            cap_sys_admin: false,
            cap_ipc_lock: false,
            total_swap_pages: 0,
            committed_leaked: 0,
        }
    }

    /// `vm_commit_limit`, in pages.
    pub fn commit_limit(&self, totalram_pages: usize) -> usize {
        let allowed = if self.overcommit_kbytes != 0 {
            self.overcommit_kbytes >> (PAGE_SHIFT - 10)
        } else {
            totalram_pages * self.overcommit_ratio / 100
        };
        allowed + self.total_swap_pages
    }

    /// Charge `pages`, or refuse with `ENOMEM` leaving nothing charged.
    pub fn vm_enough_memory(
        &mut self,
        pages: usize,
        totalram_pages: usize,
        total_vm: usize,
    ) -> Result<(), Errno> {
        self.committed_as += pages as isize;
        match self.overcommit_memory {
            OVERCOMMIT_ALWAYS => return Ok(()),
            OVERCOMMIT_GUESS => {
                if pages <= totalram_pages + self.total_swap_pages {
                    return Ok(());
                }
            }
            _ => {
                let mut allowed = self.commit_limit(totalram_pages) as isize;
                if !self.cap_sys_admin {
                    allowed -= (self.admin_reserve_kbytes >> (PAGE_SHIFT - 10)) as isize;
                }
                let reserve = self.user_reserve_kbytes >> (PAGE_SHIFT - 10);
                allowed -= (total_vm / 32).min(reserve) as isize;
                if self.committed_as < allowed {
                    return Ok(());
                }
            }
        }
        self.committed_as -= pages as isize;
        Err(Errno::ENOMEM)
    }

    pub fn vm_unacct_memory(&mut self, pages: usize) {
        self.committed_as -= pages as isize;
    }
}
