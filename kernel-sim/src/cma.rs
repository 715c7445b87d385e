//! The contiguous memory allocator (Linux's `mm/cma.c`, with `alloc_contig_range` of
//! `mm/page_alloc.c` and the isolation of `mm/page_isolation.c`).
//!
//! Boot reserves the CMA area (`Config::cma_bytes`) at the top of memory and gives its
//! pageblocks the CMA migratetype: the buddy allocator lends its frames to movable
//! allocations — user and page-cache pages — never to the kernel's own. `cma_alloc` takes
//! a range back: its pageblocks are isolated (their free frames move to lists no
//! allocation takes from), every page in use in the range is migrated to a frame outside
//! it, the range's free frames are taken off the free lists, and the pageblocks return to
//! CMA. A page that cannot move (not of the kinds `migrate::movable` allows, or with no
//! frame to go to) makes the range busy: the pages already moved stay moved, the range is
//! given up and the next aligned one tried. `cma_release` frees a range back to the area.

use crate::buddy::{MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_ISOLATE, MIGRATE_MOVABLE, PAGEBLOCK_NR_PAGES};

const MAX_ORDER_NR_PAGES: usize = 1 << MAX_PAGE_ORDER;
use crate::machine::State;
use crate::page::{PG_BUDDY, PG_LRU};
use crate::Errno;

/// The largest alignment a range gets, as an order (`CONFIG_CMA_ALIGNMENT`'s default).
const CMA_ALIGNMENT: u32 = 8;

/// Take `count` frames of the CMA area, aligned to their size's order (at most
/// `CMA_ALIGNMENT`). Returns the first frame. `EINVAL` without an area or for 0 frames,
/// `ENOMEM` when no range of the area can be freed.
pub(crate) fn cma_alloc(st: &mut State, count: usize) -> Result<usize, Errno> {
    let (base, total) = (st.phys.cma_base, st.phys.cma_count);
    if total == 0 || count == 0 {
        return Err(Errno::EINVAL);
    }
    if count > total || st.tasks.iter().any(|t| t.stale) {
        return Err(Errno::ENOMEM);
    }
    let slot = st.cma_allocs.iter().position(|a| a.1 == 0).ok_or(Errno::ENOMEM)?;
    let align = 1usize << count.next_power_of_two().trailing_zeros().min(CMA_ALIGNMENT);
    let mut start = base;
    while start + count <= base + total {
        let taken = st.cma_allocs.iter().any(|&(s, n)| n != 0 && s < start + count && start < s + n);
        if !taken && alloc_contig_range(st, start, start + count) {
            st.cma_allocs[slot] = (start, count);
            return Ok(start);
        }
        start += align;
    }
    Err(Errno::ENOMEM)
}

/// Give back a range `cma_alloc` returned (`cma_release`); `EINVAL` for any other.
pub(crate) fn cma_release(st: &mut State, pfn: usize, count: usize) -> Result<(), Errno> {
    let slot = st.cma_allocs.iter().position(|&a| a == (pfn, count) && count != 0).ok_or(Errno::EINVAL)?;
    st.cma_allocs[slot] = (0, 0);
    for f in pfn..pfn + count {
        // SAFETY: a frame of a range this API handed out, which only these calls reach;
        // the caller gives it up.
        unsafe { st.phys.free_pages(f, 0) };
    }
    Ok(())
}

/// Make `[start, end)` of the CMA area free and take it (`alloc_contig_range`). Returns
/// false, with every frame of the range back in the area, if a page in it could not move.
fn alloc_contig_range(st: &mut State, start: usize, end: usize) -> bool {
    // Whole blocks of the largest order (the area is made of them): no free block reaches
    // past what is isolated.
    let first_block = start & !(MAX_ORDER_NR_PAGES - 1);
    let last = end.next_multiple_of(MAX_ORDER_NR_PAGES);
    let blocks = (first_block..last).step_by(PAGEBLOCK_NR_PAGES);
    for b in blocks.clone() {
        st.phys.move_freepages_block(b, MIGRATE_ISOLATE);
    }
    let mut ok = true;
    let mut pfn = start;
    while pfn < end {
        let p = st.phys.page(pfn);
        if p.has(PG_BUDDY) {
            pfn += 1 << p.order.get();
            continue;
        }
        if p.refcount.get() == 0 {
            // Inside a free block: a frame freed by a move just now merged with it.
            pfn += 1;
            continue;
        }
        if !crate::migrate::movable(p) {
            ok = false;
            break;
        }
        let lru = p.has(PG_LRU);
        if lru {
            st.phys.lru_del(pfn);
        }
        let moved = match st.phys.alloc_pages(0, false, MIGRATE_MOVABLE) {
            Ok(new) => {
                let moved = crate::migrate::migrate_page(st, pfn, new);
                if !moved {
                    // SAFETY: a frame just allocated, which nothing has used.
                    unsafe { st.phys.free_pages(new, 0) };
                }
                moved
            }
            Err(_) => false,
        };
        if !moved {
            st.phys.vmstat.pgmigrate_fail += 1;
            st.phys.lru_putback(pfn);
            ok = false;
            break;
        }
        pfn += 1;
    }
    if ok {
        // Every frame of the range is free now, on the isolated lists: take them.
        let mut pfn = first_block;
        while pfn < end {
            let p = st.phys.page(pfn);
            if !p.has(PG_BUDDY) {
                pfn += 1;
                continue;
            }
            let order = p.order.get() as usize;
            if pfn + (1 << order) > start {
                st.phys.take_free_range(pfn, order, start, end);
            }
            pfn += 1 << order;
        }
    }
    for b in blocks {
        st.phys.move_freepages_block(b, MIGRATE_CMA);
    }
    ok
}
