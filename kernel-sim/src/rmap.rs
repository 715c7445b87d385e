//! The reverse map (Linux's `mm/rmap.c`): from a page to every PTE of every process that
//! maps it, for reclaim.
//!
//! An anonymous page records its anon_vma and its page offset (`Page::mapping`, `index`),
//! a page-cache page its inode and its offset in the file. A VMA of any process that points
//! at the same anon_vma (fork copies the pointer) or maps the same inode, over a range of
//! offsets holding the page's, maps it at `vm_start + (index - vm_pgoff) * PAGE_SIZE` if
//! the PTE there names the frame (`rmap_walk_anon`, `rmap_walk_file`, with the VMAs of all
//! processes standing in for the anon_vma chains and the file's interval tree).
//!
//! `folio_referenced` reads and clears the accessed bits of those PTEs. The host has no
//! accessed bits to show, so for the calling process it also makes the page inaccessible in
//! the host view: the next touch faults, and the fault sets the bit again (`fault`). Another
//! process's view is left alone, as x86 clears the bit without flushing the TLB, so its
//! touches are seen only after it next faults on the page. `try_to_unmap` replaces each
//! PTE with a swap entry (anonymous pages, whose swap-cache slot it names) or clears it
//! (page cache, moving a dirty bit to the page), and flushes the page from every view —
//! the calling process's at once, the others' through the `TlbBatch` the caller sends.

use crate::machine::{State, MAX_TASKS};
use crate::mm::{Mm, VmFlags, VmaPtr, MM_ANONPAGES, MM_FILEPAGES, MM_SWAPENTS};
use crate::page::{PAGE_SHIFT, PAGE_SIZE, PG_ANON};
use crate::page_table::{pte_lookup, pte_pfn, pte_present, pte_special, swp_entry_to_pte, PteSlot};
use crate::page_table::{PTE_ACCESSED, PTE_DIRTY};
use crate::physmem::PhysMem;
use crate::tlb::TlbBatch;

/// PTEs found for one page at most; a page mapped more often is kept (not reclaimed).
const MAX_HITS: usize = 32;

#[derive(Clone, Copy)]
pub(crate) struct Hit {
    pub(crate) task: usize,
    pub(crate) addr: usize,
    pub(crate) slot: PteSlot,
    pub(crate) vma: VmaPtr,
}

pub(crate) struct Hits {
    pub(crate) hits: [Option<Hit>; MAX_HITS],
    pub(crate) n: usize,
    pub(crate) overflow: bool,
}

/// The address space of task `t` (the running one's is `st.mm`), with physical memory.
fn mm_of(st: &mut State, t: usize) -> (&mut Mm, &mut PhysMem) {
    if t == st.current {
        (&mut st.mm, &mut st.phys)
    } else {
        (&mut st.tasks[t].mm, &mut st.phys)
    }
}

fn live_task(st: &State, t: usize) -> bool {
    st.tasks[t].pid != 0 && !st.tasks[t].zombie
}

/// Every PTE of every process that maps `pfn`.
pub(crate) fn find_mappings(st: &State, pfn: usize) -> Hits {
    let mut out = Hits { hits: [None; MAX_HITS], n: 0, overflow: false };
    let page = st.phys.page(pfn);
    if page.mapcount.get() == 0 || page.mapping.get() == 0 {
        return out;
    }
    let (anon, owner, index) = (page.has(PG_ANON), page.mapping.get(), page.index.get() as usize);
    for t in 0..MAX_TASKS {
        if !live_task(st, t) {
            continue;
        }
        let mm = if t == st.current { &st.mm } else { &st.tasks[t].mm };
        for v in mm.iter() {
            let same = if anon {
                v.anon().is_some_and(|a| a.addr() == owner)
            } else {
                v.file().is_some_and(|f| f.addr() == owner)
            };
            if !same || index < v.pgoff() || index - v.pgoff() >= v.pages() {
                continue;
            }
            let addr = v.start() + ((index - v.pgoff()) << PAGE_SHIFT);
            let Some(slot) = pte_lookup(&st.phys, mm.pgd, addr) else { continue };
            let e = slot.get();
            if !pte_present(e) || pte_special(e) || pte_pfn(e) != pfn {
                continue;
            }
            if out.n == MAX_HITS {
                out.overflow = true;
                return out;
            }
            out.hits[out.n] = Some(Hit { task: t, addr, slot, vma: v });
            out.n += 1;
        }
    }
    out
}

/// How many PTEs mapping `pfn` were accessed since last asked, clearing their accessed
/// bits (`folio_referenced`), and the flags of all VMAs that map it.
pub(crate) fn folio_referenced(st: &mut State, pfn: usize) -> (usize, VmFlags) {
    let hits = find_mappings(st, pfn);
    if hits.overflow {
        return (MAX_HITS, 0);
    }
    let (mut referenced, mut flags) = (0, 0);
    for h in hits.hits[..hits.n].iter().flatten() {
        flags |= h.vma.flags();
        let e = h.slot.get();
        if e & PTE_ACCESSED == 0 {
            continue;
        }
        referenced += 1;
        h.slot.set(e & !PTE_ACCESSED);
        // x86 clears the bit without a flush (`ptep_clear_flush_young`): a CPU that caches
        // the translation goes on using it, unseen.
        let ctx = st.mm_of_task(h.task).context;
        st.phys.cpus.note_scan(&ctx, h.addr);
        if h.task == st.me {
            // Re-arm: the next touch faults and sets the bit (see the top of the file). The
            // frame stays mapped, inaccessible, so that a later protection change of the
            // PTE reaches the frame and not the bare reservation.
            // SAFETY: PROT_NONE allows less than any PTE.
            unsafe { st.user_host.protect(h.addr, PAGE_SIZE, libc::PROT_NONE) };
        }
    }
    (referenced, flags)
}

/// Whether a `VM_LOCKED` VMA of any process maps `pfn`.
pub(crate) fn mapped_in_locked_vma(st: &State, pfn: usize) -> bool {
    let hits = find_mappings(st, pfn);
    hits.overflow || hits.hits[..hits.n].iter().flatten().any(|h| h.vma.flags() & crate::mm::VM_LOCKED != 0)
}

/// Unmap `pfn` from every process (`try_to_unmap`): an anonymous page, already in the
/// swap cache, gets its slot's swap entry in each PTE; a page-cache page's PTEs are
/// cleared. The calling process's view drops the page at once; the other processes' are
/// queued on `batch`, which the caller must flush before the page's bytes are written
/// out or its frame reused. Returns whether no PTE maps the page any more.
pub(crate) fn try_to_unmap(st: &mut State, pfn: usize, batch: &mut TlbBatch) -> bool {
    let hits = find_mappings(st, pfn);
    if hits.overflow {
        return false;
    }
    let anon = st.phys.page(pfn).has(PG_ANON);
    for h in hits.hits[..hits.n].iter().flatten() {
        if h.vma.flags() & crate::mm::VM_LOCKED != 0 {
            // mlock raced with reclaim's look at the page: it stays.
            return false;
        }
    }
    if anon && st.phys.page(pfn).has(crate::page::PG_LAZYFREE) {
        let written = st.phys.page(pfn).has(crate::page::PG_DIRTY)
            || hits.hits[..hits.n]
                .iter()
                .flatten()
                .any(|h| h.slot.get() & (crate::page_table::PTE_RW | PTE_DIRTY) != 0);
        if written {
            // Written since MADV_FREE: the process's again, kept (try_to_unmap_one).
            st.phys.clear_lazyfree(pfn);
            return false;
        }
    }
    let me = st.me;
    let user_host = st.user_host;
    for h in hits.hits[..hits.n].iter().flatten() {
        let e = h.slot.get();
        let (mm, phys) = mm_of(st, h.task);
        let page = phys.page(pfn);
        if anon && page.has(crate::page::PG_LAZYFREE) {
            // Clean since MADV_FREE (a write would have taken the flag away): dropped, the
            // next touch finds zeros (`try_to_unmap_one`'s lazyfree case).
            h.slot.set(0);
            mm.rss[MM_ANONPAGES] -= 1;
        } else if anon {
            if e & (crate::page_table::PTE_RW | PTE_DIRTY) != 0 {
                // Written through this PTE (the host shows no dirty bit: writable is all
                // there is to go by).
                page.set(crate::page::PG_DIRTY);
            }
            let slot = page.swap_slot();
            phys.swap.swap_duplicate(slot);
            h.slot.set(swp_entry_to_pte(slot));
            mm.rss[MM_ANONPAGES] -= 1;
            mm.rss[MM_SWAPENTS] += 1;
        } else {
            h.slot.set(0);
            mm.rss[MM_FILEPAGES] -= 1;
            if e & PTE_DIRTY != 0 {
                if let Some(inode) = h.vma.file() {
                    crate::page_writeback::set_page_dirty(phys, &inode, pfn);
                }
            }
        }
        phys.page(pfn).unmap_ref();
        if h.task == me {
            user_host.unmap(h.addr, PAGE_SIZE);
            batch.local = true;
        } else {
            batch.add(h.task, h.addr);
        }
    }
    let unmapped = st.phys.page(pfn).mapcount.get() == 0;
    if anon && hits.n > 0 && unmapped {
        st.phys.vmstat.nr_anon_pages -= 1;
    }
    unmapped
}
