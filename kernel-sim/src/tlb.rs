//! TLB flushes (Linux's `arch/x86/mm/tlb.c`, `flush_tlb_mm_range` and its IPIs, and
//! `mm/mmu_gather.c`): which CPUs' TLBs (the model in `cpu_tlbstate`) must forget what, as
//! Linux decides and counts it, and the shootdowns of other processes' host views.
//!
//! A process's host view of its user range is its TLB: pages the host maps are pages it
//! reaches without a fault. The running process changes its own view directly. Another
//! process's view is in another host process, out of reach: when reclaim takes a page
//! from its page tables, that process must drop the page from its view before the page's
//! bytes are written out and its frame reused, or a write through the old view would be
//! lost. So the initiator, holding the machine lock, writes the addresses into the
//! target's mailbox, sends its host process a signal (the IPI) and waits; the target's
//! handler unmaps them from its view — a whole-range flush beyond
//! `tlb_single_page_flush_ceiling` pages, as Linux does — and acknowledges. The handler
//! takes no lock: the initiator holds the machine lock and waits, so nothing else writes
//! the mailbox meanwhile.
//!
//! A target whose host process has ended (or is a zombie) has no view left and is not
//! waited for.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::machine::MAX_TASKS;
use crate::page::PAGE_SIZE;

/// Linux's `tlb_single_page_flush_ceiling`: more pages than this and the whole TLB goes.
pub const FLUSH_CEILING: usize = 33;

/// One process's mailbox for flush requests.
pub struct TlbMailbox {
    request: AtomicU32,
    done: AtomicU32,
    /// Pages to flush; more than `FLUSH_CEILING` means all of them.
    n: AtomicUsize,
    addrs: [AtomicUsize; FLUSH_CEILING],
}

impl TlbMailbox {
    pub const fn new() -> TlbMailbox {
        TlbMailbox {
            request: AtomicU32::new(0),
            done: AtomicU32::new(0),
            n: AtomicUsize::new(0),
            addrs: [const { AtomicUsize::new(0) }; FLUSH_CEILING],
        }
    }
}

impl Default for TlbMailbox {
    fn default() -> Self {
        Self::new()
    }
}

/// The signal that carries flush requests between host processes.
pub fn tlb_signal() -> i32 {
    libc::SIGRTMAX() - 1
}

/// Pages to flush from other processes' views, collected while their page tables change
/// and sent before anything relies on the change (`try_to_unmap_flush`). Small, as it lives
/// on the stack of a fault handler running on the signal stack.
pub struct TlbBatch {
    /// Pages of the calling process's view were taken (a local full flush at the end, as
    /// `arch_tlbbatch_flush` does).
    pub local: bool,
    /// Pages queued per task (beyond `FLUSH_CEILING`, or beyond room: the whole view).
    n: [u16; MAX_TASKS],
    entries: [(u8, usize); BATCH_ENTRIES],
    used: usize,
}

const BATCH_ENTRIES: usize = 64;

impl TlbBatch {
    pub const fn new() -> TlbBatch {
        TlbBatch { local: false, n: [0; MAX_TASKS], entries: [(0, 0); BATCH_ENTRIES], used: 0 }
    }

    /// Task `task` must no longer reach the page at `addr`.
    pub fn add(&mut self, task: usize, addr: usize) {
        let n = self.n[task] as usize;
        if n <= FLUSH_CEILING && self.used < BATCH_ENTRIES {
            self.entries[self.used] = (task as u8, addr);
            self.used += 1;
            self.n[task] += 1;
        } else {
            // Too many to name: the whole view goes.
            self.n[task] = (FLUSH_CEILING + 1) as u16;
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.local && self.n.iter().all(|&n| n == 0)
    }

    /// `arch_tlbbatch_flush`: every mm the batch took pages from moves to a new
    /// generation, and the CPUs in their cpumasks flush everything — one round of IPIs if
    /// any of them is not this CPU (`nr_tlb_remote_flush`, each counting it received), this
    /// CPU's own flush counted as `nr_tlb_local_flush_all` — then the other processes' host
    /// views drop the pages (`send_host`).
    pub(crate) fn flush(&mut self, st: &mut crate::machine::State) {
        use crate::cpu_tlbstate::{FlushInfo, TLB_FLUSH_ALL};
        let mut gens = [(0u64, 0u64); MAX_TASKS];
        let mut n = 0;
        let mut mask = 0u64;
        for task in 0..MAX_TASKS {
            let mine = task == st.me && self.local;
            if (self.n[task] == 0 && !mine) || st.tasks[task].pid == 0 {
                continue;
            }
            let ctx = &mut st.mm_of_task(task).context;
            if ctx.ctx_id == 0 {
                continue;
            }
            ctx.tlb_gen += 1;
            gens[n] = (ctx.ctx_id, ctx.tlb_gen);
            n += 1;
            mask |= ctx.cpumask;
        }
        let cpu = st.phys.cpus.this_cpu;
        let info = FlushInfo {
            ctx: None,
            batch: &gens[..n],
            start: 0,
            end: TLB_FLUSH_ALL,
            stride: 0,
            new_tlb_gen: 0,
        };
        // Without an mm every CPU of the mask is asked (`should_flush_tlb`).
        if mask & !(1u64 << cpu) != 0 {
            flush_tlb_multi(&mut st.phys, mask, &info, |_, _| true);
        } else if mask & (1u64 << cpu) != 0 {
            flush_tlb_local(&mut st.phys, mask, &info);
        }
        self.local = false;
        self.send_host(st);
    }

    /// Make the other processes' host views drop the pages queued: send every request and
    /// wait for each to be done. Returns the requests sent.
    pub(crate) fn send_host(&mut self, st: &mut crate::machine::State) -> u64 {
        let mut sent = 0;
        for task in 0..MAX_TASKS {
            let n = core::mem::take(&mut self.n[task]) as usize;
            if n == 0 {
                continue;
            }
            let hp = st.tasks[task].host_pid;
            if hp <= 0 || st.tasks[task].zombie {
                continue;
            }
            if n > FLUSH_CEILING {
                // Its view is emptied whole, present pages included: it must map them
                // again from its page tables before any change of protection.
                st.tasks[task].needs_resync = true;
            }
            let mb = st.tlb_mailbox(task);
            if n <= FLUSH_CEILING {
                let mine = self.entries[..self.used].iter().filter(|e| e.0 as usize == task);
                for (slot, e) in mb.addrs.iter().zip(mine) {
                    slot.store(e.1, Ordering::Relaxed);
                }
            }
            mb.n.store(n, Ordering::Relaxed);
            let req = mb.request.load(Ordering::Relaxed).wrapping_add(1);
            mb.request.store(req, Ordering::Release);
            sent += 1;
            if !send_and_wait(mb, hp, req) {
                crate::util::bug("a process did not answer a TLB shootdown in 30 s", hp as usize, task);
            }
        }
        self.used = 0;
        sent
    }
}

impl Default for TlbBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// Signal host process `hp` and wait until it has done request `req`. True when done or
/// when the process is gone; false only after 30 s without an answer from a live one.
fn send_and_wait(mb: &TlbMailbox, hp: i32, req: u32) -> bool {
    let mut waited_ms = 0u32;
    loop {
        // SAFETY: a signal to a host process of this machine, whose handler only reads the
        // mailbox and unmaps pages of its own view.
        if unsafe { libc::kill(hp, tlb_signal()) } == 0 {
            break;
        }
        if ptalloc::errno() == libc::ESRCH {
            return true;
        }
        // EAGAIN (its queue of signals is full): try again shortly.
        futex_wait(&mb.done, mb.done.load(Ordering::Relaxed));
        waited_ms += 20;
        if waited_ms >= 30_000 {
            return false;
        }
    }
    while mb.done.load(Ordering::Acquire) != req {
        futex_wait(&mb.done, mb.done.load(Ordering::Relaxed));
        waited_ms += 20;
        if mb.done.load(Ordering::Acquire) != req && !host_alive(hp) {
            return true;
        }
        if waited_ms >= 30_000 {
            return false;
        }
    }
    true
}

/// The target's side, from the signal handler: do what the mailbox asks of `host` (this
/// process's own view).
pub(crate) fn handle_flush_request(mb: &TlbMailbox, host: crate::mmu::Host) {
    let req = mb.request.load(Ordering::Acquire);
    if mb.done.load(Ordering::Relaxed) == req {
        return;
    }
    let n = mb.n.load(Ordering::Relaxed);
    if n > FLUSH_CEILING {
        host.unmap(host.base(), host.size());
    } else {
        for a in &mb.addrs[..n] {
            host.unmap(a.load(Ordering::Relaxed), PAGE_SIZE);
        }
    }
    mb.done.store(req, Ordering::Release);
    // SAFETY: FUTEX_WAKE only wakes waiters; the word outlives the call.
    unsafe { libc::syscall(libc::SYS_futex, mb.done.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// Sleep while `word` is `val`, for at most 20 ms.
fn futex_wait(word: &AtomicU32, val: u32) {
    let t = libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 };
    let saved = ptalloc::errno();
    // SAFETY: FUTEX_WAIT sleeps only while the word equals `val`, with a timeout; the word
    // and `t` outlive the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, val, &t as *const libc::timespec)
    };
    ptalloc::set_errno(saved);
}

/// Whether host process `pid` may still be running: false only when it is known gone
/// (`ESRCH`) or a zombie (its state in `/proc/PID/stat`, read into a stack buffer); a
/// state that cannot be read counts as running.
pub(crate) fn host_alive(pid: i32) -> bool {
    use core::fmt::Write;
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 && ptalloc::errno() == libc::ESRCH {
        return false;
    }
    let mut path = crate::util::StackWriter::<40>::new();
    let _ = write!(path, "/proc/{pid}/stat\0");
    // SAFETY: a NUL-terminated path in our buffer.
    let fd = unsafe { libc::open(path.as_bytes().as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return true;
    }
    let mut buf = [0u8; 256];
    // SAFETY: reading into our stack buffer, then closing our descriptor.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return true;
    }
    let s = &buf[..n as usize];
    // The state follows the last ')' (the command name may hold any byte).
    match s.iter().rposition(|&b| b == b')') {
        Some(i) if i + 2 < s.len() => !matches!(s[i + 2], b'Z' | b'X'),
        _ => true,
    }
}

/// The range of one operation's PTE changes that the TLB must forget (Linux's `mmu_gather`
/// range: each cleared or downgraded PTE, and the base address of each page table freed).
pub(crate) struct MmuGather {
    start: usize,
    end: usize,
    /// The smallest span of what was gathered, as a shift (`tlb_get_unmap_shift`): a
    /// page for a PTE, a PMD's reach for a PTE table freed (`cleared_pmds`), and so on up.
    shift: u32,
    /// A page table was freed (`freed_tables`): every CPU in the mm's cpumask must flush,
    /// running it or not.
    freed_tables: bool,
}

impl MmuGather {
    pub(crate) const fn new() -> MmuGather {
        MmuGather { start: usize::MAX, end: 0, shift: u32::MAX, freed_tables: false }
    }

    /// A PTE cleared or changed at `addr` (`tlb_remove_tlb_entry`, `__tlb_adjust_range`).
    pub(crate) fn adjust(&mut self, addr: usize, size: usize) {
        self.add(addr, size, crate::page::PAGE_SHIFT);
    }

    /// A page table at `level` (0: a PTE table) freed, which mapped from `addr`
    /// (`pte_free_tlb`, `pmd_free_tlb`, `pud_free_tlb`).
    pub(crate) fn table_freed(&mut self, addr: usize, level: u32) {
        self.freed_tables = true;
        self.add(addr, crate::page::PAGE_SIZE, crate::page::PAGE_SHIFT + 9 * (level + 1));
    }

    fn add(&mut self, addr: usize, size: usize, shift: u32) {
        self.start = self.start.min(addr);
        self.end = self.end.max(addr.saturating_add(size));
        self.shift = self.shift.min(shift);
    }
}

/// `flush_tlb_mm_range`: the translations of `[start, end)` in the mm of `ctx` go from
/// every CPU that may cache them. More than `FLUSH_CEILING` pages become a flush of
/// everything. The mm's generation moves on; if CPUs besides this one are in its cpumask,
/// one round of IPIs (`nr_tlb_remote_flush`) reaches those running it (all of them when
/// page tables were freed, and, once a second, those that ran it last and now run another
/// mm, which leave the mask), each counting it received; this CPU flushes if it runs the mm
/// (`nr_tlb_local_flush_one` per page, `nr_tlb_local_flush_all`). CPUs that hold the mm in
/// an ASID they are not using catch up when they switch back (`switch_mm`). Nothing for an
/// exiting mm (its CPU went lazy: Linux switches to `init_mm` and counts nothing).
pub(crate) fn flush_tlb_mm_range(
    phys: &mut crate::physmem::PhysMem,
    ctx: &mut crate::cpu_tlbstate::TlbContext,
    start: usize,
    end: usize,
) {
    flush_tlb_mm_range_stride(phys, ctx, start, end, crate::page::PAGE_SHIFT, false);
}

/// As `flush_tlb_mm_range`, invalidating one entry per `1 << stride` bytes (`stride_shift`):
/// a range of freed tables alone counts its PMDs, not its pages.
fn flush_tlb_mm_range_stride(
    phys: &mut crate::physmem::PhysMem,
    ctx: &mut crate::cpu_tlbstate::TlbContext,
    start: usize,
    end: usize,
    stride: u32,
    freed_tables: bool,
) {
    use crate::cpu_tlbstate::{FlushInfo, TLB_FLUSH_ALL};
    if start >= end || phys.tlb_lazy || ctx.ctx_id == 0 || phys.cpus.nr_cpus() == 0 {
        return;
    }
    let (start, end) =
        if (end - start) >> stride > FLUSH_CEILING { (0, TLB_FLUSH_ALL) } else { (start, end) };
    ctx.tlb_gen += 1;
    let info = FlushInfo {
        ctx: Some((ctx.ctx_id, ctx.tlb_gen)),
        batch: &[],
        start,
        end,
        stride,
        new_tlb_gen: ctx.tlb_gen,
    };
    let cpu = phys.cpus.this_cpu;
    if ctx.cpumask & !(1u64 << cpu) != 0 {
        // `should_flush_tlb`: the CPUs running the mm, or all when tables were freed (a
        // CPU's paging-structure caches could hold them) or when trimming.
        let trim = ctx.should_trim();
        let all = freed_tables || trim;
        let id = ctx.ctx_id;
        ctx.cpumask = flush_tlb_multi(phys, ctx.cpumask, &info, |cpus, c| all || cpus.runs(c, id));
    } else if phys.cpus.runs(cpu, ctx.ctx_id) {
        ctx.cpumask = flush_tlb_local(phys, ctx.cpumask, &info);
    }
}

/// `flush_tlb_multi`: one IPI round (`nr_tlb_remote_flush`) to the CPUs of `mask` that
/// `should_flush` picks, this one's own flush among them counted as local. Returns the mask
/// without the CPUs that found they had left the mm.
fn flush_tlb_multi(
    phys: &mut crate::physmem::PhysMem,
    mask: u64,
    info: &crate::cpu_tlbstate::FlushInfo<'_>,
    should_flush: impl Fn(&crate::cpu_tlbstate::Cpus, usize) -> bool,
) -> u64 {
    phys.vmstat.nr_tlb_remote_flush += 1;
    let cpu = phys.cpus.this_cpu;
    let mut left = mask;
    for c in (0..phys.cpus.nr_cpus()).filter(|&c| mask & (1 << c) != 0) {
        if should_flush(&phys.cpus, c) {
            let r = phys.cpus.flush_tlb_func(c, info, c == cpu, &mut left);
            if c == cpu {
                count_local(phys, r);
            }
        }
    }
    left
}

/// This CPU's `flush_tlb_func` alone. Returns `mask` as `flush_tlb_multi` does.
fn flush_tlb_local(
    phys: &mut crate::physmem::PhysMem,
    mask: u64,
    info: &crate::cpu_tlbstate::FlushInfo<'_>,
) -> u64 {
    let mut left = mask;
    let cpu = phys.cpus.this_cpu;
    let r = phys.cpus.flush_tlb_func(cpu, info, true, &mut left);
    count_local(phys, r);
    left
}

/// Count what a local `flush_tlb_func` did.
fn count_local(phys: &mut crate::physmem::PhysMem, r: Option<u64>) {
    match r {
        Some(pages) => phys.vmstat.nr_tlb_local_flush_one += pages,
        None => phys.vmstat.nr_tlb_local_flush_all += 1,
    }
}

/// `tlb_finish_mmu`: flush what the gather collected from the mm of `ctx`.
pub(crate) fn tlb_finish_mmu(
    phys: &mut crate::physmem::PhysMem,
    ctx: &mut crate::cpu_tlbstate::TlbContext,
    g: &MmuGather,
) {
    if g.shift != u32::MAX {
        flush_tlb_mm_range_stride(phys, ctx, g.start, g.end, g.shift, g.freed_tables);
    }
}

/// x86's `pte_needs_flush`: a change from present entry `old` to `new` that a TLB entry
/// could contradict — another frame, a permission or caching bit changed either way, or
/// present or dirty taken away (the accessed bit is ignored).
pub(crate) fn pte_needs_flush(old: u64, new: u64) -> bool {
    use crate::page_table::{
        pte_pfn, PTE_ACCESSED, PTE_DIRTY, PTE_NX, PTE_PRESENT, PTE_PROTNONE, PTE_RW, PTE_USER,
    };
    if old & PTE_PRESENT == 0 {
        return false;
    }
    if pte_pfn(old) != pte_pfn(new) {
        return true;
    }
    let diff = (old ^ new) & !PTE_ACCESSED;
    diff & old & (PTE_DIRTY | PTE_PRESENT) != 0 || diff & (PTE_RW | PTE_USER | PTE_NX | PTE_PROTNONE) != 0
}
