//! Processes (Linux's `kernel/fork.c`, `copy_page_range` of `mm/memory.c`, `kernel/exit.c`):
//! `fork` with a copy-on-write copy of the address space, exit, and reaping.
//!
//! A simulated process is a host process: `Machine::fork` makes the child's task (a new
//! `mm_struct` whose VMAs `dup_mmap` copied, and a copy of the descriptor table), then
//! forks the host process, which becomes that task. The machine's state lives in a shared
//! mapping and its physical memory is a shared memfd, so both processes see one machine;
//! each has its own host view of the user range, kept equal to its own page tables.
//!
//! `copy_page_range` copies the PTEs of the VMAs that have anonymous pages (an anon_vma);
//! the others fill by faults in the child, as in Linux. In a private writable VMA both
//! copies of a PTE lose write permission, so whichever process writes first takes a copy
//! (`do_wp_page`; a page whose last other mapping has gone is written in place). Shared
//! VMAs keep their pages shared. `VM_DONTCOPY` VMAs are left out, `VM_WIPEONFORK` ones come
//! empty, and the child's VMAs are not locked.
//!
//! The parent holds the machine lock through the host fork and until the child has made its
//! host view what its page tables say (it inherited the parent's), so no one changes the
//! machine in between. `exit_process` tears the calling process's address space down
//! (`exit_mmap`) and closes its files; `waitpid` waits for a child's host process and
//! tears down what it left if it ended without exiting on the machine.

use crate::machine::{Machine, State, MAX_TASKS};
use crate::mm::{
    Mm, VmaPtr, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_ACCOUNT, VM_DONTCOPY, VM_LOCKED_MASK,
    VM_MAYWRITE, VM_SHARED, VM_WIPEONFORK,
};
use crate::mmu::{Batch, Host};
use crate::page::{PG_ANON, PG_SWAPBACKED};
use crate::page_table::{for_each_pte, pte_alloc, pte_host_prot, pte_pfn, pte_present, pte_special, PTE_RW};
use crate::physmem::PhysMem;
use crate::Errno;

/// Make the host view of the user range exactly what `mm`'s page tables say: everything
/// unmapped, then each present page mapped with its PTE's protection.
pub(crate) fn resync_host(mm: &Mm, phys: &PhysMem, host: Host) {
    host.unmap(host.base(), host.size());
    let mut batch = Batch::mapping(host);
    for_each_pte(phys.direct_map(), mm.pgd, 0, usize::MAX, &mut |addr, slot| {
        let e = slot.get();
        if pte_present(e) {
            // SAFETY: the PTE of `addr` maps this frame with this protection, and nothing
            // changes the page tables before the batch is flushed (the lock is held).
            unsafe { batch.push(addr, pte_pfn(e), pte_host_prot(e)) };
        }
    });
}

/// `is_cow_mapping`: private and possibly writable.
fn is_cow_mapping(flags: u64) -> bool {
    flags & (VM_SHARED | VM_MAYWRITE) == VM_MAYWRITE
}

/// Copy the PTEs of `src` (the parent's VMA, in the running mm) into `child` for `dst`
/// (`copy_page_range`), write-protecting both sides of private writable pages.
fn copy_page_range(st: &mut State, child: &mut Mm, src: VmaPtr) -> Result<(), Errno> {
    let (dm, pgd, host) = (st.phys.direct_map(), st.mm.pgd, st.host);
    let cow = is_cow_mapping(src.flags());
    let mut err = Ok(());
    let mut batch = Batch::protecting(host);
    let phys = &mut st.phys;
    for_each_pte(dm, pgd, src.start(), src.end(), &mut |addr, slot| {
        if err.is_err() {
            return;
        }
        let mut e = slot.get();
        let dst = match pte_alloc(phys, &mut child.pgtables_bytes, child.pgd, addr) {
            Ok(d) => d,
            Err(x) => {
                err = Err(x);
                return;
            }
        };
        if crate::page_table::is_swap_pte(e) {
            // The child's entry names the same slot (`swap_duplicate`).
            phys.swap.swap_duplicate(crate::page_table::pte_to_swp_offset(e));
            child.rss[crate::mm::MM_SWAPENTS] += 1;
        } else if !pte_special(e) && pte_pfn(e) != 0 {
            // A lazily freed page shared by two processes is theirs again.
            phys.clear_lazyfree(pte_pfn(e));
            let page = phys.page(pte_pfn(e));
            if cow && e & PTE_RW != 0 {
                e &= !PTE_RW;
                slot.set(e);
                // SAFETY: `e`, read-only now, was just written to the PTE of `addr` (the
                // walk's slot), which nothing else changes before the flush.
                unsafe { batch.push(addr, 0, pte_host_prot(e)) };
            }
            page.map_ref();
            child.rss[if page.has(PG_ANON) {
                MM_ANONPAGES
            } else if page.has(PG_SWAPBACKED) {
                MM_SHMEMPAGES
            } else {
                MM_FILEPAGES
            }] += 1;
        }
        dst.set(e);
    });
    err
}

/// `dup_mmap`: the child's address space, a copy of the running one's.
fn dup_mm(st: &mut State, child: &mut Mm) -> Result<(), Errno> {
    let mut cur = st.mm.vmas.first();
    while let Some(v) = cur {
        cur = v.next();
        if v.flags() & VM_DONTCOPY != 0 {
            child.vm_stat_account(v.flags(), -(v.pages() as isize));
            continue;
        }
        if v.flags() & VM_ACCOUNT != 0 {
            let ram = st.phys.totalram_pages();
            st.sys.vm_enough_memory(v.pages(), ram, child.total_vm)?;
        }
        let (_, mut env) = st.vma_env();
        let n = match crate::vma::vm_area_dup(&mut env, v) {
            Ok(n) => n,
            Err(e) => {
                if v.flags() & VM_ACCOUNT != 0 {
                    st.sys.vm_unacct_memory(v.pages());
                }
                return Err(e);
            }
        };
        n.vm_flags.set(v.flags() & !VM_LOCKED_MASK);
        if v.flags() & VM_WIPEONFORK != 0 {
            // SAFETY: `n` is new; dropping the reference it took leaves the parent's.
            unsafe { crate::vma::set_anon_vma(&mut env, n, None) };
        }
        crate::vma::vma_link(child, n);
        if v.anon().is_some() && v.flags() & VM_WIPEONFORK == 0 {
            copy_page_range(st, child, v)?;
        }
    }
    child.locked_vm = 0;
    Ok(())
}

impl Machine {
    /// The calling process's simulated pid.
    pub fn getpid(&self) -> u32 {
        let st = self.lock();
        st.tasks[st.current].pid
    }

    /// The pids of the machine's processes, in slot order.
    pub fn pids(&self) -> ([u32; MAX_TASKS], usize) {
        let st = self.lock();
        let mut out = [0; MAX_TASKS];
        let mut n = 0;
        for t in st.tasks.iter().filter(|t| t.pid != 0) {
            out[n] = t.pid;
            n += 1;
        }
        (out, n)
    }

    /// `fork(2)`: the calling host process forks, and the child is a new simulated process
    /// on this machine with a copy-on-write copy of the caller's address space and a copy
    /// of its descriptors. Returns the child's simulated pid in the parent, 0 in the child.
    /// `EAGAIN` when the machine has no room for another process, `ENOMEM` when the copy's
    /// frames or commit charge cannot be had; the host's own fork error otherwise.
    ///
    /// The host fork is a raw one: `pthread_atfork` handlers do not run (they would run with
    /// the machine lock held). Other machines of the host program are not forked: the child
    /// shares them with its parent as the same simulated process.
    ///
    /// # Safety
    /// As for `fork(2)` in the host program, and more: no atfork handler ran, so the child
    /// may only do what is async-signal-safe (and use this machine) until it exits, unless
    /// the host program had one thread. The child must
    /// end with `exit_process` and `_exit`, never by returning into code that would drop the
    /// machine or run the parent's exit handlers.
    pub unsafe fn fork(&self) -> Result<u32, Errno> {
        let mut st = self.lock();
        let Some(slot) = st.tasks.iter().position(|t| t.pid == 0) else {
            return Err(Errno::EAGAIN);
        };
        let mut child = Mm::empty();
        child.context = st.phys.cpus.init_new_context();
        {
            let mm = &st.mm;
            child.task_size = mm.task_size;
            child.mmap_min_addr = mm.mmap_min_addr;
            child.mmap_base = mm.mmap_base;
            child.mmap_legacy_base = mm.mmap_legacy_base;
            child.start_code = mm.start_code;
            child.end_code = mm.end_code;
            child.start_data = mm.start_data;
            child.end_data = mm.end_data;
            child.start_brk = mm.start_brk;
            child.brk = mm.brk;
            child.start_stack = mm.start_stack;
            child.arg_start = mm.arg_start;
            child.arg_end = mm.arg_end;
            child.env_start = mm.env_start;
            child.env_end = mm.env_end;
            child.saved_auxv = mm.saved_auxv;
            child.exec_image = mm.exec_image;
            child.total_vm = mm.total_vm;
            child.data_vm = mm.data_vm;
            child.exec_vm = mm.exec_vm;
            child.stack_vm = mm.stack_vm;
            child.rlimits = mm.rlimits;
            child.next_anon_vma_id = mm.next_anon_vma_id;
        }
        child.pgd = crate::page_table::pgd_alloc(&mut st.phys, &mut child.pgtables_bytes)?;
        if let Err(e) = dup_mm(&mut st, &mut child) {
            let host = st.host.detached();
            // SAFETY: the half-made copy, which nothing uses: its pages are unmapped with a
            // detached host (the caller's own view is not touched).
            unsafe { exit_mm(&mut st, &mut child, host) };
            return Err(e);
        }
        // dup_mmap ends with flush_tlb_mm of the parent, for the entries it write-protected.
        let State { phys, mm, .. } = &mut *st;
        crate::tlb::flush_tlb_mm_range(phys, &mut mm.context, 0, usize::MAX);
        // The copy's fork-time write-protection of the parent's pages is in its host view.
        child.hiwater_rss = child.rss();
        child.hiwater_vm = child.total_vm;
        let files = st.files.duplicate();
        let pid = st.next_pid;
        st.next_pid += 1;
        let t = &mut st.tasks[slot];
        t.pid = pid;
        t.mm = child;
        t.files = files;
        t.stale = false;
        t.needs_resync = false;
        t.zombie = false;
        let ready = &st.fork_ready;
        ready.store(0, core::sync::atomic::Ordering::Relaxed);
        // A raw fork: the host program's atfork handlers would run with the machine lock
        // held (an allocator's, locking its arenas, may touch simulated memory the copy just
        // write-protected). The child gets none of them, like a raw clone's.
        // SAFETY: the caller's promise about what the child may do.
        let hp = unsafe { libc::syscall(libc::SYS_fork) } as i32;
        if hp < 0 {
            let e = Errno(ptalloc::errno());
            // The child never came: take its task down again.
            drop(st);
            self.reap_task(slot);
            return Err(e);
        }
        if hp == 0 {
            // The child: this host process is task `slot` now. The parent holds the lock
            // for us; make our host view our page tables, then let it go.
            core::mem::forget(st);
            crate::sync::forget_tid();
            self.set_my_task(slot);
            // SAFETY: the parent holds the lock and waits for `fork_ready`, touching nothing.
            let st = unsafe { &mut *self.state_lent() };
            resync_host(&st.tasks[slot].mm, &st.phys, self.user_host());
            // The child starts running (`ret_from_fork` after the scheduler's `switch_mm`):
            // its CPU loads its mm, so flushes of it reach that CPU from now on.
            let cpu = st.phys.cpus.cpu_of_current_thread();
            st.phys.cpus.switch_mm(cpu, &mut st.tasks[slot].mm.context);
            st.fork_ready.store(1, core::sync::atomic::Ordering::Release);
            futex_wake(&st.fork_ready);
            return Ok(0);
        }
        st.tasks[slot].host_pid = hp;
        while st.fork_ready.load(core::sync::atomic::Ordering::Acquire) == 0 {
            futex_wait(&st.fork_ready, 0);
            if host_exited(hp) {
                // It died before it was ready; waitpid reaps what it left.
                break;
            }
        }
        Ok(pid)
    }

    /// End the calling process on the machine (`do_exit`): its address space is torn
    /// down (`exit_mmap`: every page and page table back), its files closed. The caller
    /// must not use the machine afterwards (a child then `_exit`s).
    pub fn exit_process(&self) {
        let mut st = self.lock();
        let task = st.current;
        let host = st.host;
        let mut mm = core::mem::replace(&mut st.mm, Mm::empty());
        // SAFETY: the process ends: nothing of its memory is used again.
        unsafe { exit_mm(&mut st, &mut mm, host) };
        crate::file::close_all(&mut st);
        st.tasks[task].zombie = true;
        st.tasks[task].stale = false;
        st.free_deferred_if_settled();
    }

    /// Wait for child `pid`'s host process to end (`waitpid(2)`) and reap it: what it did
    /// not tear down itself goes now. Returns the host's wait status.
    pub fn waitpid(&self, pid: u32) -> Result<i32, Errno> {
        let (slot, hp) = {
            let st = self.lock();
            let slot = st.tasks.iter().position(|t| t.pid == pid && pid != 0).ok_or(Errno(libc::ECHILD))?;
            (slot, st.tasks[slot].host_pid)
        };
        let mut status = 0;
        // SAFETY: waiting for a child of this host process.
        if unsafe { libc::waitpid(hp, &mut status, 0) } < 0 {
            return Err(Errno(ptalloc::errno()));
        }
        self.reap_task(slot);
        Ok(status)
    }

    /// Tear down task `slot` from outside if it is still there.
    fn reap_task(&self, slot: usize) {
        let mut st = self.lock();
        if st.tasks[slot].pid == 0 {
            return;
        }
        if st.tasks[slot].zombie {
            st.tasks[slot] = crate::machine::Task::free();
            return;
        }
        let host = st.host.detached();
        let mut mm = core::mem::replace(&mut st.tasks[slot].mm, Mm::empty());
        let mut files = core::mem::take(&mut st.tasks[slot].files);
        // SAFETY: its host process is gone, so nothing uses its memory; the detached host
        // leaves the caller's own view alone.
        unsafe { exit_mm(&mut st, &mut mm, host) };
        core::mem::swap(&mut st.files, &mut files);
        crate::file::close_all(&mut st);
        core::mem::swap(&mut st.files, &mut files);
        st.tasks[slot] = crate::machine::Task::free();
        st.free_deferred_if_settled();
    }
}

/// `exit_mmap`: every VMA of `mm` unmapped (pages, page tables), then its PGD freed.
///
/// # Safety
/// Nothing uses `mm`'s memory again, and the free rule (see `kptr`) for its VMAs, their
/// anon_vmas and inodes, and its page tables.
pub(crate) unsafe fn exit_mm(st: &mut State, mm: &mut Mm, host: Host) {
    // Run the VMA layer on `mm` with `host`, then put the running mm back.
    core::mem::swap(&mut st.mm, mm);
    let saved = st.host;
    st.host = host;
    // The exiting CPU is in lazy TLB mode: its flushes count nothing.
    st.phys.tlb_lazy = true;
    let (base, end) = (st.host.base(), st.mm.task_size);
    if st.mm.pgd != 0 {
        let (m, mut env) = st.vma_env();
        // SAFETY: the caller's promises.
        let _ = unsafe { crate::vma::do_munmap(m, &mut env, base, end - base) };
        let pgd = st.mm.pgd;
        // SAFETY: the PGD maps nothing now (every VMA is gone, and with it every lower
        // table); nothing refers to it.
        unsafe { crate::page_table::pgd_free(&mut st.phys, &mut st.mm.pgtables_bytes, pgd) };
        st.mm.pgd = 0;
    }
    st.phys.tlb_lazy = false;
    st.host = saved;
    core::mem::swap(&mut st.mm, mm);
    st.phys.cpus.drop_context(mm.context.ctx_id);
}

/// Sleep while `word` is `val`, for at most 50 ms.
fn futex_wait(word: &core::sync::atomic::AtomicU32, val: u32) {
    let t = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
    // SAFETY: FUTEX_WAIT sleeps only while the word equals `val`, here with a timeout; the
    // word and `t` outlive the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, val, &t as *const libc::timespec)
    };
}

/// Whether host child `pid` has ended (left waitable: `WNOWAIT`).
fn host_exited(pid: i32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value of the plain C struct waitid fills.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // SAFETY: asking about our own child without reaping it.
    let r = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    };
    // SAFETY: waitid filled `info` (si_pid is 0 when the child is still running).
    r == 0 && unsafe { info.si_pid() } != 0
}

fn futex_wake(word: &core::sync::atomic::AtomicU32) {
    // SAFETY: FUTEX_WAKE only wakes waiters.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}
