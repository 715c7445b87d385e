//! Demand paging: what happens when an access reaches a page the page tables do not
//! allow (Linux's `do_user_addr_fault` → `handle_mm_fault`).
//!
//! 1. Find the VMA (growing a stack VMA down to the address with `vma::expand_downwards`
//!    if that is where it falls); none is `SIGSEGV` with `SEGV_MAPERR`.
//! 2. Check the access against the VMA's flags; a write to a read-only VMA, or any access
//!    to a `PROT_NONE` one, is `SIGSEGV` with `SEGV_ACCERR`.
//! 3. `handle_mm_fault`: allocate page tables as needed and resolve the PTE —
//!    - none, private anonymous: a read maps the shared zero page read-only; a write
//!      takes a zeroed frame from the buddy allocator (`do_anonymous_page`);
//!    - none, shared anonymous: the shmem inode's page at that offset, allocated zeroed on
//!      first use (`SIGBUS` beyond the inode's size);
//!    - none, file: the page-cache page (read from the file if it is not cached: a major
//!      fault, with read-around, `filemap`), mapped read-only; a write to a private mapping
//!      takes a private copy, a write to a shared one dirties the page and maps it writable;
//!    - present but read-only, on a write: copy-on-write from the zero page or the page
//!      cache, dirtying a shared file page (write-notify), or simply making the process's
//!      own page writable (`do_wp_page`).
//! 4. Mirror the new PTE into the host range, so the access retries and succeeds.
//!
//! Running out of frames is `VM_FAULT_OOM`; the signal handler turns it into the OOM kill.
//!
//! The same path serves faults without an access: `fault_in` (one page, as
//! `get_user_pages` takes it) and `populate` (a range, for `MAP_POPULATE` and `MAP_LOCKED`,
//! as `populate_vma_page_range` does).

use crate::machine::State;
use crate::mm::{
    VmaPtr, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_ACCESS_FLAGS, VM_EXEC, VM_GROWSDOWN, VM_SHARED,
    VM_WRITE,
};
use crate::page::{
    PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PG_ANON, PG_DIRTY, PG_FILE, PG_SWAPBACKED, PG_SWAPCACHE,
};
use crate::page_table::{
    is_swap_pte, mk_pte, mk_pte_writable, pte_alloc, pte_host_prot, pte_none, pte_pfn, pte_special,
    pte_to_swp_offset, pte_write, PteSlot, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW, PTE_SPECIAL,
};
use crate::vma::{anon_vma_prepare, expand_downwards};

pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const BUS_ADRERR: i32 = 2;

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// `SIGSEGV` with this `si_code` (`SEGV_MAPERR` or `SEGV_ACCERR`).
    Segv(i32),
    /// `SIGBUS` (`BUS_ADRERR`): a shared mapping beyond the end of its object.
    Bus,
    /// No frame could be found (`VM_FAULT_OOM`).
    Oom,
}

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub exec: bool,
}

/// A fault taken by an access of the process (from the SIGSEGV handler): counted as the
/// process's fault when resolved.
///
/// The CPU's TLB is looked up first (a hit: it cached a translation the access could not
/// use, which the fault drops) and caches the page's translation after (the walk the
/// retried access makes).
pub(crate) fn handle_user_fault(st: &mut State, addr: usize, access: Access) -> Result<(), FaultError> {
    st.fault_major = false;
    let cpu = st.phys.cpus.this_cpu;
    st.phys.cpus.fault_lookup(cpu, addr);
    let r = do_user_addr_fault(st, addr, access);
    if r.is_ok() {
        let pgd = st.mm.pgd;
        let e = crate::page_table::pte_lookup(&st.phys, pgd, addr & PAGE_MASK).map_or(0, |s| s.get());
        if e & PTE_PRESENT != 0 {
            st.phys.cpus.fill(cpu, addr, pte_pfn(e), pte_write(e));
        }
    }
    match r {
        Ok(true) => {
            st.stats.faults += 1;
            if st.fault_major {
                st.mm.maj_flt += 1;
            } else {
                st.mm.min_flt += 1;
            }
        }
        Ok(false) => st.stats.spurious_faults += 1,
        Err(FaultError::Segv(_)) => st.stats.segv += 1,
        Err(FaultError::Bus) => st.stats.sigbus += 1,
        Err(FaultError::Oom) => {}
    }
    r.map(|_| ())
}

/// Resolve a fault at `addr` as an access would, without the access (`get_user_pages`).
pub(crate) fn fault_in(st: &mut State, addr: usize, write: bool) -> Result<(), FaultError> {
    do_user_addr_fault(st, addr, Access { write, exec: false }).map(|_| ())
}

/// Returns whether a PTE had to change (false: another thread already resolved it).
fn do_user_addr_fault(st: &mut State, addr: usize, access: Access) -> Result<bool, FaultError> {
    let vma = lock_mm_and_find_vma(st, addr)?;
    if access_error(vma, access) {
        return Err(FaultError::Segv(SEGV_ACCERR));
    }
    handle_mm_fault(st, vma, addr, access.write)
}

/// The VMA for `addr`, expanding a stack VMA downwards if `addr` is just below it.
fn lock_mm_and_find_vma(st: &mut State, addr: usize) -> Result<VmaPtr, FaultError> {
    let vma = st.mm.find_vma(addr).ok_or(FaultError::Segv(SEGV_MAPERR))?;
    if vma.start() <= addr {
        return Ok(vma);
    }
    if vma.flags() & VM_GROWSDOWN == 0 {
        return Err(FaultError::Segv(SEGV_MAPERR));
    }
    let (mm, mut env) = st.vma_env();
    expand_downwards(mm, &mut env, vma, addr).map_err(|()| FaultError::Segv(SEGV_MAPERR))?;
    Ok(vma)
}

/// x86's `access_error`: writes need `VM_WRITE`, instruction fetches `VM_EXEC`, reads any
/// access right at all.
fn access_error(vma: VmaPtr, access: Access) -> bool {
    if access.write {
        return vma.flags() & VM_WRITE == 0;
    }
    if access.exec {
        return vma.flags() & VM_EXEC == 0;
    }
    vma.flags() & VM_ACCESS_FLAGS == 0
}

/// Resolve the PTE for `addr` in `vma` for a read or a write. Returns whether a PTE was
/// changed. A page mapped by a `VM_LOCKED` VMA leaves the LRU lists (`mlock_new_folio`).
pub(crate) fn handle_mm_fault(
    st: &mut State,
    vma: VmaPtr,
    addr: usize,
    write: bool,
) -> Result<bool, FaultError> {
    let r = handle_pte_fault(st, vma, addr, write);
    if r.is_ok() && vma.flags() & crate::mm::VM_LOCKED != 0 {
        let pgd = st.mm.pgd;
        let e = crate::page_table::pte_lookup(&st.phys, pgd, addr & PAGE_MASK).map_or(0, |s| s.get());
        if e & PTE_PRESENT != 0 && !pte_special(e) && crate::swap::page_lru_kind(st.phys.page(pte_pfn(e))) {
            st.phys.set_mlocked(pte_pfn(e), true);
        }
    }
    r
}

fn handle_pte_fault(st: &mut State, vma: VmaPtr, addr: usize, write: bool) -> Result<bool, FaultError> {
    st.phys.vmstat.pgfault += 1;
    // Reclaim before any PTE is looked at: nothing this fault holds can be taken.
    crate::vmscan::reclaim_before_alloc(st);
    let addr = addr & PAGE_MASK;
    let pgd = st.mm.pgd;
    let slot = pte_alloc(&mut st.phys, &mut st.mm.pgtables_bytes, pgd, addr).map_err(|_| FaultError::Oom)?;
    let e = slot.get();
    if is_swap_pte(e) {
        do_swap_page(st, vma, addr, slot, e, write)?;
        return Ok(true);
    }
    if pte_none(e) && !write && !vma.is_anonymous() {
        do_fault_around(st, vma, addr);
        if !pte_none(slot.get()) {
            return Ok(true);
        }
    }
    if pte_none(e) {
        if vma.is_anonymous() {
            do_anonymous_page(st, vma, addr, slot, write)?;
        } else if vma.is_shmem() {
            do_shmem_fault(st, vma, addr, slot, write)?;
        } else if write && vma.flags() & VM_SHARED == 0 {
            do_cow_fault(st, vma, addr, slot)?;
        } else if write {
            do_shared_fault(st, vma, addr, slot)?;
        } else {
            do_read_fault(st, vma, addr, slot)?;
        }
        return Ok(true);
    }
    if write && !pte_write(e) {
        do_wp_page(st, vma, addr, slot, e)?;
        return Ok(true);
    }
    if e & PTE_PRESENT == 0 {
        // A PROT_NONE entry under an accessible VMA: give it the VMA's protection.
        let writable = crate::memory::pte_may_write(&st.phys, e, vma.flags());
        let n = crate::page_table::pte_modify(e, vma.flags(), writable) | PTE_ACCESSED;
        slot.set(n);
        // SAFETY: `n` was just written to the PTE of `addr` (`slot` is pte_alloc's for it).
        unsafe { st.host.protect(addr, PAGE_SIZE, pte_host_prot(n)) };
        return Ok(true);
    }
    // The PTE allows the access. Either reclaim cleared its accessed bit and the host view
    // with it, so this touch is what sets the bit again (a minor fault), or another thread
    // resolved the fault first. Make sure the host agrees, and retry.
    let changed = e & PTE_ACCESSED == 0;
    let n = e | PTE_ACCESSED | if write { PTE_DIRTY } else { 0 };
    slot.set(n);
    // SAFETY: `n` is the PTE of `addr` (`slot` is pte_alloc's for it), just written.
    unsafe { st.host.map_frames(addr, pte_pfn(n), 1, pte_host_prot(n)) };
    Ok(changed)
}

/// Pages around a read fault on a file or shmem mapping that are already in the page
/// cache get mapped too (`do_fault_around`, 64 KiB windows: `fault_around_bytes`), each
/// counted in RSS. Nothing is allocated for them.
fn do_fault_around(st: &mut State, vma: VmaPtr, addr: usize) {
    const FAULT_AROUND_PAGES: usize = 16;
    let Some(inode) = vma.file() else { return };
    let pte_off = (addr >> PAGE_SHIFT) & 511;
    let vma_off = (addr - vma.start()) >> PAGE_SHIFT;
    let from = (pte_off & !(FAULT_AROUND_PAGES - 1)).max(pte_off - pte_off.min(vma_off));
    let to = (from + FAULT_AROUND_PAGES).min(512).min(pte_off + vma.pages() - vma_off);
    let table_base = addr & !((512 << PAGE_SHIFT) - 1);
    let pgd = st.mm.pgd;
    let shmem = vma.is_shmem();
    // Writable only where the mapping is shared; private mappings copy on write.
    let flags = if shmem { vma.flags() } else { vma.flags() & !VM_WRITE };
    let mut batch = crate::mmu::Batch::mapping(st.host);
    for i in from..to {
        let a = table_base + (i << PAGE_SHIFT);
        let index = vma.pgoff_at(a);
        if index >= inode.size_pages.get() {
            break;
        }
        let Some(pfn) = crate::shmem::find_page(&st.phys, &inode, index) else { continue };
        let Some(slot) = crate::page_table::pte_lookup(&st.phys, pgd, a) else { continue };
        if !pte_none(slot.get()) {
            continue;
        }
        let page = st.phys.page(pfn);
        page.map_ref();
        st.mm.rss[if shmem { MM_SHMEMPAGES } else { MM_FILEPAGES }] += 1;
        let mut e = mk_pte(pfn, flags);
        if flags & VM_WRITE != 0 && e & PTE_PRESENT != 0 {
            e |= PTE_RW;
        }
        slot.set(e);
        // SAFETY: `e`, mapping `pfn`, was just written to the PTE of `a` (`slot` is
        // pte_lookup's for it), and nothing else changes the page tables before the flush.
        unsafe { batch.push(a, pfn, pte_host_prot(e)) };
    }
}

/// Write `e` to `slot`, the PTE of `addr`, and mirror it to the host.
fn set_pte(st: &mut State, addr: usize, slot: PteSlot, e: u64) {
    slot.set(e);
    // SAFETY: `e` was just written to the PTE of `addr`: every caller passes the slot that
    // handle_mm_fault took for `addr` (pte_alloc) with that `addr`.
    unsafe { st.host.map_frames(addr, pte_pfn(e), 1, pte_host_prot(e)) };
}

fn new_anon_page(
    st: &mut State,
    vma: VmaPtr,
    addr: usize,
    copy_from: Option<usize>,
) -> Result<usize, FaultError> {
    let (mm, mut env) = st.vma_env();
    anon_vma_prepare(mm, &mut env, vma).map_err(|_| FaultError::Oom)?;
    let pfn = st
        .phys
        .alloc_pages(0, copy_from.is_none(), crate::buddy::MIGRATE_MOVABLE)
        .map_err(|_| FaultError::Oom)?;
    if let Some(src) = copy_from {
        // SAFETY: `pfn` was just allocated, so it is not `src` and no one else has it. `src`
        // is mapped read-only wherever a copy is taken from it: a page-cache page of a
        // private mapping (only shared mappings map cache pages writable, and they never
        // copy), or an anonymous page shared after fork, which fork write-protected in
        // every process that maps it.
        unsafe { st.phys.copy_frame(pfn, src) };
    }
    let page = st.phys.page(pfn);
    page.set(PG_ANON | PG_DIRTY);
    // The allocation's reference becomes the mapping's.
    page.mapcount.set(1);
    page.index.set(vma.pgoff_at(addr) as u64);
    page.mapping.set(vma.anon().map_or(0, |a| a.addr()));
    st.mm.rss[MM_ANONPAGES] += 1;
    st.phys.vmstat.nr_anon_pages += 1;
    st.phys.lru_add(pfn);
    Ok(pfn)
}

fn do_anonymous_page(
    st: &mut State,
    vma: VmaPtr,
    addr: usize,
    slot: PteSlot,
    write: bool,
) -> Result<(), FaultError> {
    if !write {
        let e = mk_pte(st.phys.zero_pfn, vma.flags() & !VM_WRITE) | PTE_SPECIAL;
        set_pte(st, addr, slot, e);
        return Ok(());
    }
    let pfn = new_anon_page(st, vma, addr, None)?;
    set_pte(st, addr, slot, mk_pte_writable(pfn, vma.flags()));
    Ok(())
}

fn do_shmem_fault(
    st: &mut State,
    vma: VmaPtr,
    addr: usize,
    slot: PteSlot,
    write: bool,
) -> Result<(), FaultError> {
    let Some(inode) = vma.file() else {
        return Err(FaultError::Bus);
    };
    let index = vma.pgoff_at(addr);
    if index >= inode.size_pages.get() {
        return Err(FaultError::Bus);
    }
    let pfn = crate::shmem::get_page(&mut st.phys, &inode, index).map_err(|_| FaultError::Oom)?;
    let page = st.phys.page(pfn);
    page.map_ref();
    st.mm.rss[MM_SHMEMPAGES] += 1;
    let mut e = mk_pte(pfn, vma.flags());
    if vma.flags() & VM_WRITE != 0 && e & PTE_PRESENT != 0 {
        e |= PTE_RW;
        if write {
            e |= PTE_DIRTY;
        }
    }
    set_pte(st, addr, slot, e);
    Ok(())
}

/// The page-cache page behind `addr` of a file mapping (`filemap_fault`), read from the
/// file with its read-around window if it is not cached (a major fault); SIGBUS past the
/// end of the file or if the file cannot be read.
fn file_page(st: &mut State, vma: VmaPtr, addr: usize) -> Result<usize, FaultError> {
    let Some(inode) = vma.file() else {
        return Err(FaultError::Bus);
    };
    let index = vma.pgoff_at(addr);
    if index >= inode.size_pages.get() {
        return Err(FaultError::Bus);
    }
    let (start, count) = crate::filemap::fault_window(vma, index);
    match crate::filemap::filemap_get_page_around(st, inode, index, start, count) {
        Ok((pfn, major)) => {
            if major {
                st.fault_major = true;
                st.phys.vmstat.pgmajfault += 1;
            }
            Ok(pfn)
        }
        Err(e) if e.0 == libc::EIO => Err(FaultError::Bus),
        Err(_) => Err(FaultError::Oom),
    }
}

/// A write to a shared file mapping where nothing is mapped yet (`do_shared_fault`): the
/// page-cache page, dirtied (`page_mkwrite`) and mapped writable.
fn do_shared_fault(st: &mut State, vma: VmaPtr, addr: usize, slot: PteSlot) -> Result<(), FaultError> {
    let pfn = file_page(st, vma, addr)?;
    if let Some(inode) = vma.file() {
        crate::page_writeback::set_page_dirty(&mut st.phys, &inode, pfn);
    }
    let page = st.phys.page(pfn);
    page.map_ref();
    st.mm.rss[MM_FILEPAGES] += 1;
    set_pte(st, addr, slot, mk_pte_writable(pfn, vma.flags()));
    Ok(())
}

/// Map the page-cache page read-only: a private file mapping (a write copies it) or a
/// shared one (a write dirties it first: `vma_wants_writenotify`).
fn do_read_fault(st: &mut State, vma: VmaPtr, addr: usize, slot: PteSlot) -> Result<(), FaultError> {
    let pfn = file_page(st, vma, addr)?;
    let page = st.phys.page(pfn);
    page.map_ref();
    st.mm.rss[MM_FILEPAGES] += 1;
    set_pte(st, addr, slot, mk_pte(pfn, vma.flags() & !VM_WRITE));
    Ok(())
}

/// A private copy of the page-cache page (a private file mapping, written).
fn do_cow_fault(st: &mut State, vma: VmaPtr, addr: usize, slot: PteSlot) -> Result<(), FaultError> {
    let src = file_page(st, vma, addr)?;
    let pfn = new_anon_page(st, vma, addr, Some(src))?;
    st.phys.vmstat.cow_faults += 1;
    set_pte(st, addr, slot, mk_pte_writable(pfn, vma.flags()));
    Ok(())
}

/// A write to a present, read-only page of a writable VMA.
fn do_wp_page(st: &mut State, vma: VmaPtr, addr: usize, slot: PteSlot, e: u64) -> Result<(), FaultError> {
    if pte_special(e) {
        let pfn = new_anon_page(st, vma, addr, None)?;
        st.phys.vmstat.cow_faults += 1;
        set_pte(st, addr, slot, mk_pte_writable(pfn, vma.flags()));
        // wp_page_copy's ptep_clear_flush of the old entry.
        crate::tlb::flush_tlb_mm_range(&mut st.phys, &mut st.mm.context, addr, addr + PAGE_SIZE);
        return Ok(());
    }
    let old = pte_pfn(e);
    if vma.flags() & VM_SHARED != 0 && st.phys.page(old).has(PG_FILE) {
        // wp_page_shared: the first write since the page was clean dirties it.
        if let Some(inode) = vma.file() {
            crate::page_writeback::set_page_dirty(&mut st.phys, &inode, old);
        }
    }
    if st.phys.page(old).has(PG_SWAPCACHE) && st.phys.page(old).mapcount.get() == 1 {
        // Our write makes the copy in swap stale: give up the slot if no other swap entry
        // names it (wp_can_reuse_anon_folio → folio_free_swap).
        st.phys.try_free_swap(old);
    }
    // A write to a lazily freed page takes it back (it is dirty: reclaim must keep it).
    st.phys.clear_lazyfree(old);
    let page = st.phys.page(old);
    // wp_can_reuse_anon_folio: no reference but this mapping's.
    let exclusive_anon = page.has(PG_ANON) && page.refcount.get() == 1 && page.mapcount.get() == 1;
    if exclusive_anon || (vma.flags() & VM_SHARED != 0 && page.has(PG_SWAPBACKED | PG_FILE)) {
        // The page is ours alone (wp_can_reuse_anon_folio) or shared by design: just allow
        // the write.
        let n = e | PTE_RW | PTE_DIRTY;
        slot.set(n);
        // SAFETY: `n` was just written to the PTE of `addr`: handle_mm_fault passes the slot
        // it took for `addr` (pte_alloc).
        unsafe { st.host.protect(addr, PAGE_SIZE, pte_host_prot(n)) };
        return Ok(());
    }
    let pfn = new_anon_page(st, vma, addr, Some(old))?;
    st.phys.vmstat.cow_faults += 1;
    let page = st.phys.page(old);
    page.unmap_ref();
    let unmapped = page.mapcount.get() == 0;
    if page.has(crate::page::PG_MLOCKED) {
        // As in zap_page_range: reclaim re-locks it if a locked mapping still holds it.
        st.phys.set_mlocked(old, false);
    }
    let page = st.phys.page(old);
    if page.has(PG_ANON) {
        // An anonymous page another process still maps (after fork) keeps it; one only the
        // swap cache holds now waits there for reclaim.
        st.mm.rss[MM_ANONPAGES] -= 1;
        if unmapped {
            st.phys.vmstat.nr_anon_pages -= 1;
        }
    } else if page.has(PG_SWAPBACKED) {
        st.mm.rss[MM_SHMEMPAGES] -= 1;
    } else {
        st.mm.rss[MM_FILEPAGES] -= 1;
    }
    set_pte(st, addr, slot, mk_pte_writable(pfn, vma.flags()));
    crate::tlb::flush_tlb_mm_range(&mut st.phys, &mut st.mm.context, addr, addr + PAGE_SIZE);
    Ok(())
}

/// A fault on a swap entry (`do_swap_page`): the page from the swap cache, or read back
/// from swap with its neighbours (a major fault); mapped read-only while it stays in the
/// swap cache, so that a write frees its slot first. A write that finds the page ours alone
/// (no other swap entry names the slot, no other PTE maps it) takes it out of the cache at
/// once and maps it writable, as does a swap area more than half full (`vm_swap_full`).
fn do_swap_page(
    st: &mut State,
    vma: VmaPtr,
    addr: usize,
    slot: PteSlot,
    e: u64,
    write: bool,
) -> Result<(), FaultError> {
    let entry = pte_to_swp_offset(e);
    let (pfn, major) =
        st.phys
            .swapin(entry)
            .map_err(|e| if e.0 == libc::EIO { FaultError::Bus } else { FaultError::Oom })?;
    if major {
        st.fault_major = true;
        st.phys.vmstat.pgmajfault += 1;
    }
    let (mm, mut env) = st.vma_env();
    anon_vma_prepare(mm, &mut env, vma).map_err(|_| FaultError::Oom)?;
    let page = st.phys.page(pfn);
    let first = page.mapcount.get() == 0;
    if first {
        page.index.set(vma.pgoff_at(addr) as u64);
        page.mapping.set(vma.anon().map_or(0, |a| a.addr()));
    }
    page.map_ref();
    if first {
        st.phys.vmstat.nr_anon_pages += 1;
    }
    st.mm.rss[MM_ANONPAGES] += 1;
    st.mm.rss[crate::mm::MM_SWAPENTS] -= 1;
    st.phys.swap.swap_put(entry);
    let locked = vma.flags() & crate::mm::VM_LOCKED != 0;
    let page = st.phys.page(pfn);
    if (write || st.phys.swap.vm_swap_full() || locked) && page.mapcount.get() == 1 {
        st.phys.try_free_swap(pfn);
    }
    let page = st.phys.page(pfn);
    let own = !page.has(PG_SWAPCACHE) && page.mapcount.get() == 1;
    let pte = if own { mk_pte_writable(pfn, vma.flags()) } else { mk_pte(pfn, vma.flags() & !VM_WRITE) };
    set_pte(st, addr, slot, pte);
    if write && !own {
        // A write to a page still shared through the swap cache: copy it now, as Linux's
        // do_swap_page goes on to do_wp_page, so the access that faulted can complete.
        do_wp_page(st, vma, addr, slot, pte)?;
    }
    Ok(())
}

/// Fault in every page of `[start, end)` as `MAP_POPULATE` and `MAP_LOCKED` do: writes
/// for private writable VMAs, reads otherwise; `PROT_NONE` VMAs and holes stop it. Errors
/// are not reported (the mapping itself succeeded).
pub(crate) fn populate(st: &mut State, start: usize, end: usize) {
    let mut addr = start;
    while addr < end {
        let Some(vma) = st.mm.vma_lookup(addr) else {
            return;
        };
        if vma.flags() & VM_ACCESS_FLAGS == 0 {
            return;
        }
        if vma.flags() & crate::mm::VM_LOCKONFAULT != 0 {
            // Locked on fault: faulted in by its accesses only (populate_vma_page_range).
            addr = vma.end();
            continue;
        }
        let write = vma.flags() & (VM_WRITE | VM_SHARED) == VM_WRITE;
        let stop = vma.end().min(end);
        while addr < stop {
            let pgd = st.mm.pgd;
            let present = crate::page_table::pte_lookup(&st.phys, pgd, addr)
                .map(|s| s.get())
                .is_some_and(|e| e & PTE_PRESENT != 0 && (!write || pte_write(e)));
            if !present && handle_mm_fault(st, vma, addr, write).is_err() {
                return;
            }
            addr += PAGE_SIZE;
        }
    }
}
