//! `madvise` (Linux's `mm/madvise.c`).
//!
//! `MADV_DONTNEED` drops the pages of the range: anonymous pages return to the buddy
//! allocator and read as zero on the next touch (which faults again); shmem pages stay in
//! their inode, so a shared mapping keeps its contents. Advice that only records a hint in
//! the VMA flags (`MADV_RANDOM`, `MADV_SEQUENTIAL`, `MADV_DONTFORK`, `MADV_DONTDUMP`,
//! `MADV_HUGEPAGE`, ...) splits and merges VMAs like mprotect. Advice about reclaim and
//! swap is accepted and has nothing to do (there is no reclaim); advice the simulation does
//! not model (`MADV_POPULATE_*`, `MADV_GUARD_*`, `MADV_COLLAPSE`, poisoning) is `EINVAL`.
//!
//! As in Linux the walk applies the advice to every VMA in the range and reports `ENOMEM`
//! afterwards if the range had holes.

use crate::machine::State;
use crate::mm::{
    VmaPtr, VM_DONTCOPY, VM_DONTDUMP, VM_HUGEPAGE, VM_LOCKED, VM_MAYWRITE, VM_MERGEABLE, VM_NOHUGEPAGE,
    VM_RAND_READ, VM_SEQ_READ, VM_SHARED, VM_WIPEONFORK,
};
use crate::page::{offset_in_page, page_align};
use crate::vma::vma_modify;
use crate::Errno;

const MADV_NORMAL: i32 = 0;
const MADV_RANDOM: i32 = 1;
const MADV_SEQUENTIAL: i32 = 2;
const MADV_WILLNEED: i32 = 3;
const MADV_DONTNEED: i32 = 4;
const MADV_FREE: i32 = 8;
const MADV_REMOVE: i32 = 9;
const MADV_DONTFORK: i32 = 10;
const MADV_DOFORK: i32 = 11;
const MADV_MERGEABLE: i32 = 12;
const MADV_UNMERGEABLE: i32 = 13;
const MADV_HUGEPAGE: i32 = 14;
const MADV_NOHUGEPAGE: i32 = 15;
const MADV_DONTDUMP: i32 = 16;
const MADV_DODUMP: i32 = 17;
const MADV_WIPEONFORK: i32 = 18;
const MADV_KEEPONFORK: i32 = 19;
const MADV_COLD: i32 = 20;
const MADV_PAGEOUT: i32 = 21;
const MADV_POPULATE_READ: i32 = 22;
const MADV_POPULATE_WRITE: i32 = 23;
const MADV_DONTNEED_LOCKED: i32 = 24;
const MADV_COLLAPSE: i32 = 25;
const MADV_HWPOISON: i32 = 100;
const MADV_SOFT_OFFLINE: i32 = 101;
const MADV_GUARD_INSTALL: i32 = 102;
const MADV_GUARD_REMOVE: i32 = 103;

fn madvise_behavior_valid(b: i32) -> bool {
    matches!(
        b,
        MADV_NORMAL..=MADV_DONTNEED
            | MADV_FREE..=MADV_COLLAPSE
            | MADV_HWPOISON
            | MADV_SOFT_OFFLINE
            | MADV_GUARD_INSTALL
            | MADV_GUARD_REMOVE
    )
}

/// The `madvise` system call.
///
/// # Safety
/// `Machine::madvise`'s condition: the range rule (see `Machine`) for advice that discards
/// contents — for `MADV_REMOVE`, in every mapping of the shared object's pages it punches
/// out. And the free rule (see `kptr`) for the VMAs of the range and the one after it,
/// which merges may remove.
pub(crate) unsafe fn sys_madvise(
    st: &mut State,
    start: usize,
    len_in: usize,
    behavior: i32,
) -> Result<(), Errno> {
    if !madvise_behavior_valid(behavior) {
        return Err(Errno::EINVAL);
    }
    if offset_in_page(start) != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_align(len_in);
    if len_in != 0 && len == 0 {
        return Err(Errno::EINVAL);
    }
    let Some(end) = start.checked_add(len) else {
        return Err(Errno::EINVAL);
    };
    if end == start {
        return Ok(());
    }
    if matches!(
        behavior,
        MADV_POPULATE_READ | MADV_POPULATE_WRITE | MADV_COLLAPSE | MADV_GUARD_INSTALL | MADV_GUARD_REMOVE
    ) || behavior == MADV_HWPOISON
        || behavior == MADV_SOFT_OFFLINE
    {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the caller's promises.
    unsafe { madvise_walk_vmas(st, start, end, behavior) }
}

/// Apply the advice to every VMA of `[start, end)`.
///
/// # Safety
/// As for `sys_madvise`.
unsafe fn madvise_walk_vmas(st: &mut State, start: usize, end: usize, behavior: i32) -> Result<(), Errno> {
    let (found, mut prev) = st.mm.find_vma_prev(start);
    let mut vma = found;
    if let Some(v) = vma {
        if start > v.start() {
            prev = Some(v);
        }
    }
    let mut start = start;
    let mut unmapped_error = Ok(());
    loop {
        let Some(v) = vma else {
            return Err(Errno::ENOMEM);
        };
        if start < v.start() {
            unmapped_error = Err(Errno::ENOMEM);
            start = v.start();
            if start >= end {
                break;
            }
        }
        let tmp = v.end().min(end);
        // SAFETY: the caller's promises, for part of the range; `v` is not used again: the
        // walk goes on from `prev`, which the call sets, or looks the next VMA up.
        unsafe { madvise_vma_behavior(st, v, &mut prev, start, tmp, behavior) }?;
        start = tmp;
        if let Some(p) = prev {
            if start < p.end() {
                start = p.end();
            }
        }
        if start >= end {
            break;
        }
        vma = match prev {
            Some(p) => st.mm.find_vma(p.end()),
            None => st.mm.find_vma(start),
        };
    }
    unmapped_error
}

/// Apply the advice to `[start, end)` of `vma`, setting `*prev` to the VMA that covers it
/// afterwards (or `None`).
///
/// # Safety
/// As for `sys_madvise`, for `[start, end)`, `vma` and the VMA after it.
unsafe fn madvise_vma_behavior(
    st: &mut State,
    vma: VmaPtr,
    prev: &mut Option<VmaPtr>,
    start: usize,
    end: usize,
    behavior: i32,
) -> Result<(), Errno> {
    let flags = vma.flags();
    let new_flags = match behavior {
        MADV_DONTNEED | MADV_DONTNEED_LOCKED => {
            *prev = Some(vma);
            if flags & VM_LOCKED != 0 && behavior == MADV_DONTNEED {
                return Err(Errno::EINVAL);
            }
            // SAFETY: the caller's promise for [start, end), whose contents this discards.
            unsafe { crate::memory::zap_page_range(&mut st.mm, &mut st.phys, st.host, start, end) };
            return Ok(());
        }
        MADV_FREE => {
            *prev = Some(vma);
            if flags & VM_LOCKED != 0 || !vma.is_anonymous() {
                return Err(Errno::EINVAL);
            }
            madvise_free_pte_range(st, start, end);
            return Ok(());
        }
        MADV_COLD | MADV_PAGEOUT => {
            *prev = Some(vma);
            if flags & VM_LOCKED != 0 {
                return Err(Errno::EINVAL);
            }
            let pageout = behavior == MADV_PAGEOUT;
            if st.me == st.current {
                crate::kstack::on_kernel_stack(st, &mut |st| {
                    crate::vmscan::madvise_cold_or_pageout(st, start, end, pageout);
                    0
                });
            }
            return Ok(());
        }
        MADV_WILLNEED => {
            *prev = Some(vma);
            return Ok(());
        }
        MADV_REMOVE => {
            *prev = None;
            if flags & VM_LOCKED != 0 || !vma.is_shmem() {
                return Err(Errno::EINVAL);
            }
            if flags & (VM_SHARED | VM_MAYWRITE) != (VM_SHARED | VM_MAYWRITE) {
                return Err(Errno::EACCES);
            }
            if let Some(inode) = vma.file() {
                // Punching a hole unmaps the pages from every mapping of the inode first
                // (`unmap_mapping_range`, in every process), then frees them.
                let (a, b) = (vma.pgoff_at(start), vma.pgoff_at(end));
                crate::truncate::unmap_mapping_range(st, inode, a, b);
                // SAFETY: no PTE of any process maps these pages now, and the caller's
                // promise covers the memory they backed.
                unsafe { crate::shmem::truncate_range(&mut st.phys, &inode, a, b) };
                st.phys.defer_user_frees = false;
            }
            return Ok(());
        }
        MADV_NORMAL => flags & !(VM_RAND_READ | VM_SEQ_READ),
        MADV_SEQUENTIAL => (flags & !VM_RAND_READ) | VM_SEQ_READ,
        MADV_RANDOM => (flags & !VM_SEQ_READ) | VM_RAND_READ,
        MADV_DONTFORK => flags | VM_DONTCOPY,
        MADV_DOFORK => flags & !VM_DONTCOPY,
        MADV_WIPEONFORK => {
            if vma.file().is_some() || flags & VM_SHARED != 0 {
                return Err(Errno::EINVAL);
            }
            flags | VM_WIPEONFORK
        }
        MADV_KEEPONFORK => flags & !VM_WIPEONFORK,
        MADV_DONTDUMP => flags | VM_DONTDUMP,
        MADV_DODUMP => flags & !VM_DONTDUMP,
        MADV_HUGEPAGE => (flags & !VM_NOHUGEPAGE) | VM_HUGEPAGE,
        MADV_NOHUGEPAGE => (flags & !VM_HUGEPAGE) | VM_NOHUGEPAGE,
        MADV_MERGEABLE => flags | VM_MERGEABLE,
        MADV_UNMERGEABLE => flags & !VM_MERGEABLE,
        _ => return Err(Errno::EINVAL),
    };
    if new_flags == flags {
        *prev = Some(vma);
        return Ok(());
    }
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise for `vma` and the VMA after it.
    let v = unsafe { vma_modify(mm, &mut env, *prev, vma, start, end, new_flags) }?;
    *prev = Some(v);
    v.vm_flags.set(new_flags);
    Ok(())
}

/// `MADV_FREE` over `[start, end)` (`madvise_free_pte_range`): swap entries are freed (the
/// pages read back as zeros), and each present anonymous page this process alone maps is
/// made clean, old and lazily freed (`folio_mark_lazyfree`). Its PTE loses write permission
/// too, so that a later write faults and takes the page back (the host shows no dirty bit);
/// a page still clean when reclaim reaches it is dropped instead of swapped.
fn madvise_free_pte_range(st: &mut State, start: usize, end: usize) {
    use crate::page_table::{is_swap_pte, pte_pfn, pte_present, pte_special, pte_to_swp_offset};
    use crate::page_table::{PTE_ACCESSED, PTE_DIRTY, PTE_RW};
    let (dm, pgd, host) = (st.phys.direct_map(), st.mm.pgd, st.host);
    let live = st.me == st.current;
    let (phys, rss) = (&mut st.phys, &mut st.mm.rss);
    let mut tlb = crate::tlb::MmuGather::new();
    crate::page_table::for_each_pte(dm, pgd, start, end, &mut |a, slot| {
        let e = slot.get();
        if is_swap_pte(e) {
            slot.set(0);
            rss[crate::mm::MM_SWAPENTS] -= 1;
            phys.free_swap_and_cache(pte_to_swp_offset(e));
            return;
        }
        if !pte_present(e) || pte_special(e) {
            return;
        }
        let pfn = pte_pfn(e);
        let p = phys.page(pfn);
        if !p.has(crate::page::PG_ANON)
            || p.mapcount.get() != 1
            || p.has(crate::page::PG_MLOCKED | crate::page::PG_LAZYFREE)
        {
            return;
        }
        if p.has(crate::page::PG_SWAPCACHE) && !phys.try_free_swap(pfn) {
            return;
        }
        let n = e & !(PTE_RW | PTE_DIRTY | PTE_ACCESSED);
        slot.set(n);
        if e & (PTE_ACCESSED | PTE_DIRTY) != 0 {
            // Linux gathers only young or dirty entries it makes old and clean.
            tlb.adjust(a, crate::page::PAGE_SIZE);
        }
        if live {
            // Inaccessible in the host view, so that a read sets the accessed bit again and a
            // write takes the page back. SAFETY: PROT_NONE allows less than any PTE.
            unsafe { host.protect(a, crate::page::PAGE_SIZE, libc::PROT_NONE) };
        }
        phys.mark_lazyfree(pfn);
    });
    crate::tlb::tlb_finish_mmu(&mut st.phys, &mut st.mm.context, &tlb);
}
