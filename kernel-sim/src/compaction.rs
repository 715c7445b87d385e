//! Memory compaction (Linux's `mm/compaction.c`): making a free block of a high order out
//! of scattered free frames by moving movable pages out of the way.
//!
//! Two scanners walk a zone a pageblock (`1 << PAGEBLOCK_ORDER` frames, 2 MiB) at a time:
//! the migration scanner up from the zone's start, isolating movable pages (at most
//! `COMPACT_CLUSTER_MAX` at a time, `isolate_migratepages_block`), and the free scanner
//! down from its end, isolating free blocks split into single frames as targets
//! (`isolate_freepages_block`, never taking the zone below its min watermark). Each batch
//! is moved (`migrate_pages`) — the pages collect at the top of the zone and the frames
//! they leave merge into larger free blocks at the bottom — until a block of the wanted
//! order is free (`COMPACT_SUCCESS`) or the scanners meet (`COMPACT_COMPLETE`). Targets
//! not used go back to the free lists; pages not moved go back to their lists.
//!
//! Two callers, as in Linux: an allocation of order above 0 that found no block compacts
//! directly before it fails (`__alloc_pages_direct_compact`: `compact_stall`, then
//! `compact_success` or `compact_fail`), and `vm.compact_memory` compacts every zone whole
//! (`compact_node`, order -1: to the scanners' meeting). The free scanner fills only
//! movable and CMA pageblocks; the migration scanner, running as Linux's synchronous
//! compaction does, looks at every pageblock. Not simulated: the skip bits and deferral that stop
//! repeated failing scans, kcompactd and proactive compaction.

use crate::buddy::{
    MAX_NR_ZONES, MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_MOVABLE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER,
    WMARK_LOW,
};
use crate::machine::State;
use crate::page::{NIL, PG_BUDDY, PG_LRU};

/// Pages isolated for migration at a time.
const COMPACT_CLUSTER_MAX: usize = 32;

/// How a compaction run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompactResult {
    /// Not run: too little free memory to be worth it, or a process's view is stale.
    Skipped,
    /// The scanners met.
    Complete,
    /// A free block of the requested order exists.
    Success,
}

struct CompactControl {
    zone: usize,
    /// The order wanted; `None` compacts the whole zone.
    order: Option<usize>,
    migrate_pfn: usize,
    /// The start of the pageblock the free scanner takes next (it moves down).
    free_pfn: usize,
    /// Isolated pages to move, and isolated free frames to move them to (a stack linked
    /// through `Page::next`).
    migratepages: [usize; COMPACT_CLUSTER_MAX],
    nr_migratepages: usize,
    freepages: u32,
    nr_freepages: usize,
}

/// Compact zone `zone` until a block of `order` is free (or wholly with `None`).
pub(crate) fn compact_zone(st: &mut State, zone: usize, order: Option<usize>) -> CompactResult {
    let z = &st.phys.zones[zone];
    if !z.populated() || st.tasks.iter().any(|t| t.stale) {
        return CompactResult::Skipped;
    }
    if let Some(order) = order {
        // `compaction_suitable`: enough free frames above the low watermark to hold what
        // moves while the block forms (Linux's compact gap, twice the block).
        let mark = z.watermark[WMARK_LOW] + (2 << order);
        if !st.phys.zone_watermark_ok(zone, 0, mark, zone) {
            return CompactResult::Skipped;
        }
        if block_free(st, zone, order) {
            return CompactResult::Success;
        }
    }
    let start = z.zone_start_pfn;
    let end = z.zone_end_pfn();
    let mut cc = CompactControl {
        zone,
        order,
        migrate_pfn: start,
        free_pfn: (end - 1) & !(PAGEBLOCK_NR_PAGES - 1),
        migratepages: [0; COMPACT_CLUSTER_MAX],
        nr_migratepages: 0,
        freepages: NIL,
        nr_freepages: 0,
    };
    let result = loop {
        if cc.migrate_pfn >= end || cc.free_pfn <= cc.migrate_pfn {
            break CompactResult::Complete;
        }
        isolate_migratepages(st, &mut cc);
        migrate_pages(st, &mut cc);
        if let Some(order) = cc.order {
            if block_free(st, zone, order) {
                break CompactResult::Success;
            }
        }
    };
    // Pages isolated and not moved go back; targets not used are freed again.
    for i in 0..cc.nr_migratepages {
        st.phys.lru_putback(cc.migratepages[i]);
    }
    while let Some(pfn) = pop_free(st, &mut cc) {
        st.phys.release_isolated(pfn);
    }
    result
}

/// `__compact_finished`'s test: a free block of at least `order` in the zone.
fn block_free(st: &State, zone: usize, order: usize) -> bool {
    st.phys.zones[zone].free_area[order..].iter().any(|a| a.nr_free > 0)
}

/// Isolate movable pages from the migration scanner's position on, up to a batch or the
/// end of the pageblock it is in (`isolate_migratepages`).
fn isolate_migratepages(st: &mut State, cc: &mut CompactControl) {
    let block_end = (cc.migrate_pfn | (PAGEBLOCK_NR_PAGES - 1)) + 1;
    let end = block_end.min(st.phys.zones[cc.zone].zone_end_pfn());
    let mut pfn = cc.migrate_pfn;
    while pfn < end && cc.nr_migratepages < COMPACT_CLUSTER_MAX {
        st.phys.vmstat.compact_migrate_scanned += 1;
        let p = st.phys.page(pfn);
        if p.has(PG_BUDDY) {
            // A free block: skip it whole.
            pfn += 1 << p.order.get();
            continue;
        }
        if crate::migrate::movable(p) {
            if p.has(PG_LRU) {
                st.phys.lru_del(pfn);
            }
            cc.migratepages[cc.nr_migratepages] = pfn;
            cc.nr_migratepages += 1;
            st.phys.vmstat.compact_isolated += 1;
        }
        pfn += 1;
    }
    cc.migrate_pfn = pfn;
}

/// Isolate free frames from the pageblocks below the free scanner, until there are as
/// many as pages to move or the scanners meet (`isolate_freepages`).
fn isolate_freepages(st: &mut State, cc: &mut CompactControl) {
    let zone_start = st.phys.zones[cc.zone].zone_start_pfn;
    let zone_end = st.phys.zones[cc.zone].zone_end_pfn();
    while cc.nr_freepages < cc.nr_migratepages {
        let block = cc.free_pfn;
        // Down to where the migration scanner is: they have met.
        if block <= cc.migrate_pfn {
            return;
        }
        let end = (block + PAGEBLOCK_NR_PAGES).min(zone_end);
        let mut pfn = if suitable_migration_target(st, block) { block.max(zone_start) } else { end };
        while pfn < end {
            st.phys.vmstat.compact_free_scanned += 1;
            let p = st.phys.page(pfn);
            if !p.has(PG_BUDDY) {
                pfn += 1;
                continue;
            }
            match st.phys.isolate_free_block(pfn) {
                Some(order) => {
                    for f in pfn..pfn + (1 << order) {
                        push_free(st, cc, f);
                    }
                    st.phys.vmstat.compact_isolated += 1 << order;
                    pfn += 1 << order;
                }
                // The zone is down to its min watermark: compaction ends here.
                None => {
                    cc.free_pfn = zone_start;
                    return;
                }
            }
        }
        cc.free_pfn = block.saturating_sub(PAGEBLOCK_NR_PAGES).max(zone_start);
    }
}

/// Whether the free frames of the pageblock at `block` may take moved pages
/// (`suitable_migration_target`): a movable or CMA pageblock that is not free whole —
/// breaking up a free pageblock to fill it would undo what compaction is for.
fn suitable_migration_target(st: &State, block: usize) -> bool {
    let mt = st.phys.pageblock_migratetype(block);
    (mt == MIGRATE_MOVABLE || mt == MIGRATE_CMA)
        && !(PAGEBLOCK_ORDER..=MAX_PAGE_ORDER).any(|order| {
            let head = block & !((1 << order) - 1);
            let p = st.phys.page(head);
            p.has(PG_BUDDY) && p.order.get() as usize == order
        })
}

fn push_free(st: &mut State, cc: &mut CompactControl, pfn: usize) {
    st.phys.page(pfn).next.set(cc.freepages);
    cc.freepages = pfn as u32;
    cc.nr_freepages += 1;
}

fn pop_free(st: &mut State, cc: &mut CompactControl) -> Option<usize> {
    if cc.freepages == NIL {
        return None;
    }
    let pfn = cc.freepages as usize;
    cc.freepages = st.phys.page(pfn).next.get();
    st.phys.page(pfn).next.set(NIL);
    cc.nr_freepages -= 1;
    Some(pfn)
}

/// Move the isolated pages to isolated free frames (`migrate_pages`); a page that cannot
/// move, or finds no frame, goes back to its list.
fn migrate_pages(st: &mut State, cc: &mut CompactControl) {
    if cc.nr_migratepages == 0 {
        return;
    }
    isolate_freepages(st, cc);
    let n = core::mem::take(&mut cc.nr_migratepages);
    for i in 0..n {
        let old = cc.migratepages[i];
        let Some(new) = pop_free(st, cc) else {
            st.phys.lru_putback(old);
            continue;
        };
        if !crate::migrate::migrate_page(st, old, new) {
            st.phys.vmstat.pgmigrate_fail += 1;
            st.phys.lru_putback(old);
            push_free(st, cc, new);
        }
    }
}

/// An allocation of `order` found no block: compact the zones it may use, highest first,
/// until one has a block (`try_to_compact_pages`, counted as Linux's direct compaction).
/// Returns whether a block is free now.
pub(crate) fn try_to_compact_pages(st: &mut State, order: usize) -> bool {
    st.phys.vmstat.compact_stall += 1;
    for zone in (0..MAX_NR_ZONES).rev() {
        if compact_zone(st, zone, Some(order)) == CompactResult::Success {
            st.phys.vmstat.compact_success += 1;
            return true;
        }
    }
    st.phys.vmstat.compact_fail += 1;
    false
}

/// `vm.compact_memory`: compact every zone whole.
pub(crate) fn compact_nodes(st: &mut State) {
    for zone in 0..MAX_NR_ZONES {
        compact_zone(st, zone, None);
    }
}
