//! The machine's CPUs and what each one's TLB holds (x86's per-CPU `cpu_tlbstate` in
//! `arch/x86/mm/tlb.c`, with a model of the translations it caches).
//!
//! The host view of a process is what makes its accesses fast, but it is one view per
//! host process and shows neither hits nor misses. This model adds what Linux reasons
//! about: the machine has `nr_cpus` CPUs; each host thread that enters the machine runs on
//! one of them (given out round-robin in the order threads first arrive, and kept); each
//! CPU has a loaded mm, six dynamic ASIDs (`TLB_NR_DYN_ASIDS`, each remembering the mm
//! context it holds and the flush generation it has caught up with) and a set-associative
//! TLB of 4 KiB translations tagged with the ASID. Without PCID every switch to another mm
//! flushes it; with PCID a switch back to an mm whose ASID survived flushes only if that
//! mm's `tlb_gen` moved on meanwhile (`choose_new_asid`).
//!
//! Accesses are seen where the machine sees them: at page faults (a lookup first — a hit is
//! a translation the CPU had cached, which x86 drops when the access faults anyway; after
//! the fault the new PTE is filled in) and at reclaim's scans of accessed bits (whether the
//! scanned translation is cached on a CPU running its mm: x86 clears the bit without a
//! flush, so a cached translation hides the next touches from reclaim).
//!
//! Per-CPU state and the TLB arrays live in their own shared anonymous mapping, so the
//! host processes forked as the machine's processes see one set of CPUs.

use crate::page::PAGE_SHIFT;

/// CPUs a machine can have (the width of an mm's cpumask).
pub const MAX_CPUS: usize = 64;
/// x86's `TLB_NR_DYN_ASIDS`: ASIDs each CPU hands out to the mms it runs.
pub const TLB_NR_DYN_ASIDS: usize = 6;
/// The modelled TLB: a second-level TLB of 1536 4 KiB entries, 12-way (as Intel's cores
/// since Skylake have).
pub const TLB_WAYS: usize = 12;
pub const TLB_SETS: usize = 128;
const TLB_ENTRIES: usize = TLB_WAYS * TLB_SETS;
/// Host threads remembered with their CPU; the oldest is forgotten beyond this.
const MAX_THREADS: usize = 64;
/// `flush_tlb_info.end` for a flush of everything.
pub const TLB_FLUSH_ALL: usize = usize::MAX;

/// An mm's TLB context (x86's `mm_context_t`: `ctx_id`, `tlb_gen`, the cpumask and when it
/// was last trimmed).
#[derive(Clone, Copy, Debug, Default)]
pub struct TlbContext {
    /// Never reused; 0 for an mm that no CPU will load.
    pub ctx_id: u64,
    /// Bumped by every flush of the mm's translations.
    pub tlb_gen: u64,
    /// CPUs that loaded the mm since they last learned they no longer run it
    /// (`mm_cpumask`, cleared lazily since Linux 6.13).
    pub cpumask: u64,
    /// When a flush may next ask CPUs that run another mm to leave the mask
    /// (`next_trim_cpumask`, once a second), in host monotonic nanoseconds.
    pub next_trim_ns: u64,
}

impl TlbContext {
    /// Whether a flush may ask the CPUs in the mm's cpumask that run something else to
    /// leave it (`should_trim_cpumask`: once a second per mm).
    pub(crate) fn should_trim(&mut self) -> bool {
        let now = ptalloc::clock_ns();
        if now >= self.next_trim_ns {
            self.next_trim_ns = now + 1_000_000_000;
            return true;
        }
        false
    }
}

/// One cached translation: `tag` is the virtual page number shifted left by 8, the write
/// permission in bit 4 and the ASID + 1 in bits 0-3 (0 for an empty entry).
#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    tag: u64,
    pfn: u32,
    /// Last use, for least-recently-used replacement within the set.
    stamp: u32,
}

const ENTRY_WRITE: u64 = 1 << 4;

impl Entry {
    fn asid(&self) -> Option<usize> {
        let a = (self.tag & 0xf) as usize;
        a.checked_sub(1)
    }
    fn vpn(&self) -> usize {
        (self.tag >> 8) as usize
    }
}

/// What one CPU counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlbStats {
    /// Faults whose address the TLB held a translation for (for the faulting ASID).
    pub fault_hits: u64,
    /// Faults it held none for: the CPU walked the page tables.
    pub fault_misses: u64,
    /// Accessed bits reclaim cleared while this CPU cached the translation.
    pub scan_cached: u64,
    /// Flush requests from other CPUs handled (`nr_tlb_remote_flush_received`'s share).
    pub flushes_received: u64,
    /// Loads of another mm (`switch_mm`) and those that had to flush the ASID they chose.
    pub switches: u64,
    pub switch_flushes: u64,
    /// Entries dropped by flushes, and by replacement in a full set.
    pub invalidated: u64,
    pub evicted: u64,
}

/// One CPU (`cpu_tlbstate`).
#[derive(Clone, Copy)]
#[repr(C)]
struct CpuState {
    /// The loaded mm's context id, 0 for `init_mm` (no user mm).
    loaded: u64,
    loaded_asid: usize,
    /// The next ASID to hand out (`next_asid`).
    next_asid: usize,
    /// Per ASID: the mm context it holds and the `tlb_gen` flushed up to.
    ctxs: [(u64, u64); TLB_NR_DYN_ASIDS],
    clock: u32,
    stats: TlbStats,
}

/// A flush (`flush_tlb_info`): `[start, end)` one entry per `1 << stride` bytes, or
/// `end == TLB_FLUSH_ALL`; `ctx` is the mm's context, or `None` for reclaim's batched flush
/// (which holds the generations of every mm it changed in `batch`).
pub(crate) struct FlushInfo<'a> {
    pub ctx: Option<(u64, u64)>,
    pub batch: &'a [(u64, u64)],
    pub start: usize,
    pub end: usize,
    pub stride: u32,
    pub new_tlb_gen: u64,
}

/// The machine's CPUs.
pub struct Cpus {
    nr: usize,
    pcid: bool,
    /// The CPU of the thread holding the machine lock.
    pub this_cpu: usize,
    next_ctx_id: u64,
    next_cpu: usize,
    /// Host threads seen, with their CPU (thread id, CPU), oldest first overwritten.
    threads: [(i32, u8); MAX_THREADS],
    next_thread: usize,
    /// `MAX_CPUS` states then `nr` TLBs of `TLB_ENTRIES` entries, in one shared mapping.
    mem: *mut u8,
}

// SAFETY: the mapping is reached only under the machine lock (the `Cpus` lives in the
// locked state).
unsafe impl Send for Cpus {}

fn map_bytes(nr: usize) -> usize {
    crate::page::page_align(
        MAX_CPUS * core::mem::size_of::<CpuState>() + nr * TLB_ENTRIES * core::mem::size_of::<Entry>(),
    )
}

impl Cpus {
    /// No CPUs (a machine not booted yet).
    pub const fn none() -> Cpus {
        Cpus {
            nr: 0,
            pcid: false,
            this_cpu: 0,
            next_ctx_id: 1,
            next_cpu: 0,
            threads: [(0, 0); MAX_THREADS],
            next_thread: 0,
            mem: core::ptr::null_mut(),
        }
    }

    /// `nr` CPUs (1 to `MAX_CPUS`, else `EINVAL`), with or without PCID.
    pub fn boot(nr: usize, pcid: bool) -> Result<Cpus, crate::Errno> {
        if nr == 0 || nr > MAX_CPUS {
            return Err(crate::Errno::EINVAL);
        }
        // SAFETY: a fresh shared anonymous mapping (zeroed: every CPU on init_mm, every
        // entry empty), shared with the host processes forked from this one.
        let mem = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_bytes(nr),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return Err(crate::Errno(ptalloc::errno()));
        }
        Ok(Cpus { nr, pcid, mem: mem.cast(), ..Cpus::none() })
    }

    /// Give the mapping back.
    ///
    /// # Safety
    /// Nothing uses these CPUs again.
    pub unsafe fn shutdown(&mut self) {
        if !self.mem.is_null() {
            // SAFETY: our mapping; the caller promises nothing uses it.
            unsafe { libc::munmap(self.mem.cast(), map_bytes(self.nr)) };
            self.mem = core::ptr::null_mut();
            self.nr = 0;
        }
    }

    pub fn nr_cpus(&self) -> usize {
        self.nr
    }

    pub fn pcid(&self) -> bool {
        self.pcid
    }

    fn state_ptr(&self, c: usize) -> *mut CpuState {
        if self.mem.is_null() || c >= self.nr {
            crate::util::bug("no such CPU", c, self.nr);
        }
        // SAFETY: the mapping starts with MAX_CPUS states (page-aligned, and CpuState's
        // alignment is 8), so state c is inside it.
        unsafe { (self.mem as *mut CpuState).add(c) }
    }

    fn tlb_ptr(&self, c: usize) -> *mut Entry {
        if self.mem.is_null() || c >= self.nr {
            crate::util::bug("no such CPU", c, self.nr);
        }
        let off =
            MAX_CPUS * core::mem::size_of::<CpuState>() + c * TLB_ENTRIES * core::mem::size_of::<Entry>();
        // SAFETY: CPU c's entries are inside the mapping (`map_bytes`), at a multiple of 8.
        unsafe { self.mem.add(off) as *mut Entry }
    }

    fn cpu(&mut self, c: usize) -> &mut CpuState {
        // SAFETY: a state inside our mapping; `&mut self` (under the machine lock) makes
        // this the only reference.
        unsafe { &mut *self.state_ptr(c) }
    }

    fn cpu_ref(&self, c: usize) -> &CpuState {
        // SAFETY: as in `cpu`, shared.
        unsafe { &*self.state_ptr(c) }
    }

    fn tlb(&mut self, c: usize) -> &mut [Entry] {
        // SAFETY: CPU c's TLB_ENTRIES entries; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.tlb_ptr(c), TLB_ENTRIES) }
    }

    fn tlb_ref(&self, c: usize) -> &[Entry] {
        // SAFETY: as in `tlb`, shared.
        unsafe { core::slice::from_raw_parts(self.tlb_ptr(c), TLB_ENTRIES) }
    }

    /// A new mm's context (`init_new_context`): a fresh id, no CPU, generation 1.
    pub fn init_new_context(&mut self) -> TlbContext {
        let id = self.next_ctx_id;
        self.next_ctx_id += 1;
        // The first trim comes a second after the mm is made, as Linux's first.
        TlbContext { ctx_id: id, tlb_gen: 1, cpumask: 0, next_trim_ns: ptalloc::clock_ns() + 1_000_000_000 }
    }

    /// The CPU the calling host thread runs on, given out on its first entry.
    pub fn cpu_of_current_thread(&mut self) -> usize {
        if self.nr == 0 {
            return 0;
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        if let Some(&(_, c)) = self.threads.iter().find(|t| t.0 == tid) {
            return c as usize;
        }
        let c = self.next_cpu;
        self.next_cpu = (c + 1) % self.nr;
        self.threads[self.next_thread] = (tid, c as u8);
        self.next_thread = (self.next_thread + 1) % MAX_THREADS;
        c
    }

    /// Load the mm of `ctx` on CPU `cpu` (`switch_mm_irqs_off`): nothing if it is loaded
    /// already; else an ASID for it (`choose_new_asid`: the one that still holds it, or the
    /// next in turn, flushed; without PCID always ASID 0, flushed), and the CPU joins the
    /// mm's cpumask.
    pub fn switch_mm(&mut self, cpu: usize, ctx: &mut TlbContext) {
        if self.nr == 0 || ctx.ctx_id == 0 {
            return;
        }
        let pcid = self.pcid;
        let s = self.cpu(cpu);
        if s.loaded == ctx.ctx_id {
            return;
        }
        s.stats.switches += 1;
        let (asid, need_flush) = if !pcid {
            (0, true)
        } else if let Some(a) = s.ctxs.iter().position(|c| c.0 == ctx.ctx_id) {
            (a, s.ctxs[a].1 < ctx.tlb_gen)
        } else {
            let mut a = s.next_asid;
            if a >= TLB_NR_DYN_ASIDS {
                a = 0;
            }
            s.next_asid = a + 1;
            (a, true)
        };
        if need_flush {
            s.stats.switch_flushes += 1;
            self.invalidate(cpu, asid, 0, TLB_FLUSH_ALL, PAGE_SHIFT);
        }
        let s = self.cpu(cpu);
        s.ctxs[asid] = (ctx.ctx_id, ctx.tlb_gen);
        s.loaded = ctx.ctx_id;
        s.loaded_asid = asid;
        ctx.cpumask |= 1 << cpu;
    }

    /// The mm of `ctx_id` is gone: CPUs running it go to `init_mm`, and its ASIDs are free.
    pub fn drop_context(&mut self, ctx_id: u64) {
        if ctx_id == 0 {
            return;
        }
        for c in 0..self.nr {
            let s = self.cpu(c);
            if s.loaded == ctx_id {
                s.loaded = 0;
            }
            for a in &mut s.ctxs {
                if a.0 == ctx_id {
                    *a = (0, 0);
                }
            }
        }
    }

    /// Whether CPU `cpu` has the mm of `ctx_id` loaded.
    pub fn runs(&self, cpu: usize, ctx_id: u64) -> bool {
        self.nr != 0 && ctx_id != 0 && self.cpu_ref(cpu).loaded == ctx_id
    }

    /// Drop the entries of `asid` in `[start, end)` (one page per `1 << stride`), or all of
    /// them for `TLB_FLUSH_ALL`.
    fn invalidate(&mut self, cpu: usize, asid: usize, start: usize, end: usize, stride: u32) {
        let mut n = 0;
        let tlb = self.tlb(cpu);
        if end == TLB_FLUSH_ALL || (end - start) >> PAGE_SHIFT > TLB_ENTRIES {
            for e in tlb.iter_mut() {
                if e.asid() == Some(asid)
                    && (end == TLB_FLUSH_ALL || (start..end).contains(&(e.vpn() << PAGE_SHIFT)))
                {
                    e.tag = 0;
                    n += 1;
                }
            }
        } else {
            let step = 1usize << stride.max(PAGE_SHIFT);
            let mut a = start;
            while a < end {
                if let Some(i) = find(tlb, asid, a >> PAGE_SHIFT) {
                    tlb[i].tag = 0;
                    n += 1;
                }
                a = a.saturating_add(step);
            }
        }
        self.cpu(cpu).stats.invalidated += n;
    }

    /// `flush_tlb_func` on CPU `cpu` (`local`: the initiator's own). Returns whether it
    /// flushed one page at a time (`Some(pages)`) or all (`None`), or did nothing at all
    /// (`Some(0)`); the caller counts the local flushes. A remote request counts as
    /// received whatever it finds.
    pub(crate) fn flush_tlb_func(
        &mut self,
        cpu: usize,
        f: &FlushInfo<'_>,
        local: bool,
        mask: &mut u64,
    ) -> Option<u64> {
        let s = self.cpu(cpu);
        if !local {
            s.stats.flushes_received += 1;
        }
        if let Some((id, _)) = f.ctx {
            if s.loaded != id {
                // Left in the mm's cpumask after running it: leave now.
                *mask &= !(1 << cpu);
                return Some(0);
            }
        }
        if s.loaded == 0 {
            return Some(0);
        }
        let asid = s.loaded_asid;
        let local_gen = s.ctxs[asid].1;
        let mm_gen = match f.ctx {
            Some((_, g)) => g,
            None => match f.batch.iter().find(|b| b.0 == s.loaded) {
                Some(b) => b.1,
                // The batch changed none of what this CPU runs.
                None => local_gen,
            },
        };
        if local_gen >= mm_gen {
            return Some(0);
        }
        let partial = f.end != TLB_FLUSH_ALL && f.new_tlb_gen == local_gen + 1 && f.new_tlb_gen == mm_gen;
        let r = if partial {
            self.invalidate(cpu, asid, f.start, f.end, f.stride);
            Some(((f.end - f.start) >> f.stride) as u64)
        } else {
            self.invalidate(cpu, asid, 0, TLB_FLUSH_ALL, PAGE_SHIFT);
            None
        };
        self.cpu(cpu).ctxs[asid].1 = mm_gen;
        r
    }

    /// A fault at `addr` on CPU `cpu`: whether its TLB held a translation for the page. x86
    /// drops it either way (a faulting access leaves no entry behind).
    pub fn fault_lookup(&mut self, cpu: usize, addr: usize) -> bool {
        if self.nr == 0 || self.cpu_ref(cpu).loaded == 0 {
            return false;
        }
        let asid = self.cpu(cpu).loaded_asid;
        let tlb = self.tlb(cpu);
        let hit = find(tlb, asid, addr >> PAGE_SHIFT);
        if let Some(i) = hit {
            tlb[i].tag = 0;
        }
        let st = &mut self.cpu(cpu).stats;
        if hit.is_some() {
            st.fault_hits += 1;
        } else {
            st.fault_misses += 1;
        }
        hit.is_some()
    }

    /// After a fault: the CPU's page walk caches the PTE now mapping `addr` (frame `pfn`,
    /// writable or not), replacing the set's least recently used entry if it is full.
    pub fn fill(&mut self, cpu: usize, addr: usize, pfn: usize, writable: bool) {
        if self.nr == 0 || self.cpu_ref(cpu).loaded == 0 {
            return;
        }
        let s = self.cpu(cpu);
        s.clock = s.clock.wrapping_add(1);
        let (asid, stamp) = (s.loaded_asid, s.clock);
        let vpn = addr >> PAGE_SHIFT;
        let tlb = self.tlb(cpu);
        let set = &mut tlb[(vpn % TLB_SETS) * TLB_WAYS..][..TLB_WAYS];
        let tag = ((vpn as u64) << 8) | if writable { ENTRY_WRITE } else { 0 } | (asid as u64 + 1);
        let way = set
            .iter()
            .position(|e| e.asid() == Some(asid) && e.vpn() == vpn)
            .or_else(|| set.iter().position(|e| e.tag == 0));
        let evict = way.is_none();
        let way = way.unwrap_or_else(|| {
            let mut oldest = 0;
            for (i, e) in set.iter().enumerate() {
                if stamp.wrapping_sub(e.stamp) > stamp.wrapping_sub(set[oldest].stamp) {
                    oldest = i;
                }
            }
            oldest
        });
        set[way] = Entry { tag, pfn: pfn as u32, stamp };
        if evict {
            self.cpu(cpu).stats.evicted += 1;
        }
    }

    /// Reclaim cleared the accessed bit of the translation of `addr` in the mm of `ctx`:
    /// count, on each CPU running that mm, whether its TLB caches it.
    pub fn note_scan(&mut self, ctx: &TlbContext, addr: usize) -> bool {
        let mut cached = false;
        for c in 0..self.nr {
            if ctx.cpumask & (1 << c) == 0 || self.cpu_ref(c).loaded != ctx.ctx_id {
                continue;
            }
            let asid = self.cpu_ref(c).loaded_asid;
            if find(self.tlb_ref(c), asid, addr >> PAGE_SHIFT).is_some() {
                self.cpu(c).stats.scan_cached += 1;
                cached = true;
            }
        }
        cached
    }

    /// Per CPU `c`: its counters.
    pub fn stats(&self, c: usize) -> TlbStats {
        self.cpu_ref(c).stats
    }

    /// The counters of all CPUs added up.
    pub fn total(&self) -> TlbStats {
        let mut t = TlbStats::default();
        for c in 0..self.nr {
            let s = self.cpu_ref(c).stats;
            t.fault_hits += s.fault_hits;
            t.fault_misses += s.fault_misses;
            t.scan_cached += s.scan_cached;
            t.flushes_received += s.flushes_received;
            t.switches += s.switches;
            t.switch_flushes += s.switch_flushes;
            t.invalidated += s.invalidated;
            t.evicted += s.evicted;
        }
        t
    }

    /// Per CPU: the loaded mm's context id and ASID, the ASIDs' (context, generation), and
    /// the entries held per ASID.
    pub(crate) fn describe(
        &self,
        c: usize,
    ) -> (u64, usize, [(u64, u64); TLB_NR_DYN_ASIDS], [usize; TLB_NR_DYN_ASIDS]) {
        let s = self.cpu_ref(c);
        let mut held = [0; TLB_NR_DYN_ASIDS];
        for e in self.tlb_ref(c).iter() {
            if let Some(a) = e.asid() {
                held[a] += 1;
            }
        }
        (s.loaded, s.loaded_asid, s.ctxs, held)
    }

    /// Every entry a CPU holds for the mm of `ctx` in an ASID that has caught up with its
    /// flushes — the entries the CPU would use — as (address, frame, writable).
    pub(crate) fn for_each_current_entry(
        &self,
        ctx: &TlbContext,
        f: &mut dyn FnMut(usize, usize, usize, bool),
    ) {
        for c in 0..self.nr {
            let s = self.cpu_ref(c);
            for (asid, &(id, gen)) in s.ctxs.iter().enumerate() {
                if id != ctx.ctx_id || id == 0 || gen < ctx.tlb_gen {
                    continue;
                }
                for e in self.tlb_ref(c).iter() {
                    if e.asid() == Some(asid) {
                        f(c, e.vpn() << PAGE_SHIFT, e.pfn as usize, e.tag & ENTRY_WRITE != 0);
                    }
                }
            }
        }
    }
}

/// The way of `vpn` for `asid` in its set, if cached.
fn find(tlb: &[Entry], asid: usize, vpn: usize) -> Option<usize> {
    let base = (vpn % TLB_SETS) * TLB_WAYS;
    tlb[base..base + TLB_WAYS].iter().position(|e| e.asid() == Some(asid) && e.vpn() == vpn).map(|w| base + w)
}
