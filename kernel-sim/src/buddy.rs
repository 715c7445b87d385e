//! The buddy page allocator: zones, their free lists, and the watermarks that decide when
//! memory has run out.
//!
//! Each zone keeps `free_area[order]` for every order 0..=`MAX_PAGE_ORDER` (10), so
//! `NR_PAGE_ORDERS` lists of free blocks of `1 << order` frames, each aligned to its size.
//! Allocation takes the first block of the smallest sufficient order and splits off the
//! unused halves (`expand`); freeing merges a block with its buddy at `pfn ^ (1 << order)`
//! for as long as the buddy is free, of the same order and in the same zone
//! (`free_one_page`).
//!
//! Every pageblock (`1 << PAGEBLOCK_ORDER` frames, 2 MiB) has a migratetype, and each
//! order keeps a free list per migratetype: a free block is on the list of its pageblock's
//! type. Boot makes every pageblock `MIGRATE_MOVABLE`. An allocation asks for a type —
//! user and page-cache pages movable, the kernel's own unmovable — and takes the smallest
//! block of its type; failing that it falls back to another type (`fallbacks`), from the
//! largest block down, and claims the whole pageblock for its own type when the block is
//! a pageblock or more, or when enough of the pageblock is free or of its kind
//! (`try_to_claim_block`), else takes the block alone (`__rmqueue_steal`). So unmovable
//! pages gather in few pageblocks and the movable ones, which compaction can move, fill
//! the rest. Blocks of a pageblock or more merge across types only between the three
//! ordinary ones, the freed block's type winning.
//!
//! Allocations try zones from the highest the request may use down to DMA. A zone gives a
//! page only while its free pages stay above a watermark plus the `lowmem_reserve` that
//! protects lower zones from allocations that could have gone higher: first the low
//! watermark, then (waking kswapd, which runs when the machine lock is let go) the min
//! watermark. Below min this allocator returns `ENOMEM`: reclaim and compaction are its
//! callers' to try (`vmscan`'s direct reclaim before a fault, `compaction` for kmalloc's
//! whole pages), as they hold the machine state it does not. Per-CPU page lists are not
//! simulated.

use crate::check::{fail, CheckError};
use crate::page::{Page, NIL, PG_BUDDY, PG_RESERVED};
use crate::physmem::{PhysMem, ZONE_DMA32_END_PFN, ZONE_DMA_END_PFN};
use crate::Errno;

/// The largest block is `1 << MAX_PAGE_ORDER` frames (4 MiB), as on x86-64.
pub const MAX_PAGE_ORDER: usize = 10;
pub const NR_PAGE_ORDERS: usize = MAX_PAGE_ORDER + 1;
pub const MAX_NR_ZONES: usize = 3;
pub const ZONE_DMA: usize = 0;
pub const ZONE_DMA32: usize = 1;
pub const ZONE_NORMAL: usize = 2;
pub const ZONE_NAMES: [&str; MAX_NR_ZONES] = ["DMA", "DMA32", "Normal"];

/// Migratetypes of pageblocks (`enum migratetype`, with `CONFIG_CMA` and
/// `CONFIG_MEMORY_ISOLATION`).
pub const MIGRATE_UNMOVABLE: usize = 0;
pub const MIGRATE_MOVABLE: usize = 1;
pub const MIGRATE_RECLAIMABLE: usize = 2;
/// The first type that is not one of the ordinary ones (`MIGRATE_PCPTYPES`).
pub const MIGRATE_PCPTYPES: usize = 3;
/// 3 is `MIGRATE_HIGHATOMIC`, reserved for high-order atomic allocations (none in the
/// simulation).
pub const MIGRATE_CMA: usize = 4;
/// Pageblocks being taken out of use (`alloc_contig_range`): their free frames are on
/// lists no allocation takes from.
pub const MIGRATE_ISOLATE: usize = 5;
pub const MIGRATE_TYPES: usize = 6;
pub const MIGRATETYPE_NAMES: [&str; MIGRATE_TYPES] =
    ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"];
/// Where each ordinary type falls back to, in order (`fallbacks[]`).
const FALLBACKS: [[usize; 2]; MIGRATE_PCPTYPES] = [
    [MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE],
    [MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE],
    [MIGRATE_UNMOVABLE, MIGRATE_MOVABLE],
];
/// Order of a pageblock: a PMD's worth of frames on x86-64 (`HPAGE_PMD_ORDER`).
pub const PAGEBLOCK_ORDER: usize = 9;
pub const PAGEBLOCK_NR_PAGES: usize = 1 << PAGEBLOCK_ORDER;

/// `sysctl vm.lowmem_reserve_ratio` for DMA, DMA32, Normal.
const LOWMEM_RESERVE_RATIO: [usize; MAX_NR_ZONES] = [256, 256, 32];
/// `sysctl vm.watermark_scale_factor` (in 1/10000 of a zone).
const WATERMARK_SCALE_FACTOR: usize = 10;

pub const WMARK_MIN: usize = 0;
pub const WMARK_LOW: usize = 1;
pub const WMARK_HIGH: usize = 2;
/// Linux also has `WMARK_PROMO` (for memory tiering), which this simulation lacks.
pub const NR_WMARK: usize = WMARK_HIGH + 1;

/// One free list: a doubly linked list of block heads through `Page::next/prev`.
#[derive(Clone, Copy, Debug)]
pub struct FreeList {
    pub head: u32,
    pub tail: u32,
    pub nr_free: usize,
}

/// One order's free lists, a list per migratetype, and their total (`struct free_area`).
#[derive(Clone, Copy, Debug)]
pub struct FreeArea {
    pub free_list: [FreeList; MIGRATE_TYPES],
    pub nr_free: usize,
}

impl FreeArea {
    const EMPTY: FreeArea =
        FreeArea { free_list: [FreeList { head: NIL, tail: NIL, nr_free: 0 }; MIGRATE_TYPES], nr_free: 0 };
}

#[derive(Clone, Debug)]
pub struct Zone {
    pub name: &'static str,
    pub zone_start_pfn: usize,
    pub spanned_pages: usize,
    /// Frames given to the buddy allocator at boot.
    pub managed_pages: usize,
    /// Free frames in this zone (`NR_FREE_PAGES`).
    pub free_pages: usize,
    pub free_area: [FreeArea; NR_PAGE_ORDERS],
    /// Indexed by `WMARK_MIN`, `WMARK_LOW`, `WMARK_HIGH`.
    pub watermark: [usize; NR_WMARK],
    pub lowmem_reserve: [usize; MAX_NR_ZONES],
}

/// The result of walking every free list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuddyReport {
    pub free_pages: usize,
    pub free_blocks: usize,
    pub allocated_pages: usize,
    pub reserved_pages: usize,
}

impl Zone {
    /// The zones of a machine with `nr_frames` frames, by frame number as on x86-64.
    pub fn layout(nr_frames: usize) -> [Zone; MAX_NR_ZONES] {
        let bounds = [0, ZONE_DMA_END_PFN.min(nr_frames), ZONE_DMA32_END_PFN.min(nr_frames), nr_frames];
        core::array::from_fn(|i| Zone {
            name: ZONE_NAMES[i],
            zone_start_pfn: bounds[i],
            spanned_pages: bounds[i + 1] - bounds[i],
            managed_pages: 0,
            free_pages: 0,
            free_area: [FreeArea::EMPTY; NR_PAGE_ORDERS],
            watermark: [0; NR_WMARK],
            lowmem_reserve: [0; MAX_NR_ZONES],
        })
    }

    pub fn zone_end_pfn(&self) -> usize {
        self.zone_start_pfn + self.spanned_pages
    }

    pub fn populated(&self) -> bool {
        self.managed_pages > 0
    }

    fn contains(&self, pfn: usize) -> bool {
        pfn >= self.zone_start_pfn && pfn < self.zone_end_pfn()
    }
}

impl PhysMem {
    #[inline]
    pub fn zone_of(&self, pfn: usize) -> usize {
        if pfn < ZONE_DMA_END_PFN {
            ZONE_DMA
        } else if pfn < ZONE_DMA32_END_PFN {
            ZONE_DMA32
        } else {
            ZONE_NORMAL
        }
    }

    /// The migratetype of the pageblock holding `pfn` (`get_pfnblock_migratetype`).
    #[inline]
    pub fn pageblock_migratetype(&self, pfn: usize) -> usize {
        self.page(pfn & !(PAGEBLOCK_NR_PAGES - 1)).pageblock_mt.get() as usize
    }

    /// Set the migratetype of the pageblocks of `[pfn, pfn + nr)` (whole pageblocks), with
    /// no free list touched: the caller moves any free block in them.
    pub(crate) fn set_pageblock_range(&mut self, pfn: usize, nr: usize, mt: usize) {
        let mut b = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        while b < pfn + nr && b < self.nr_frames() {
            self.page(b).pageblock_mt.set(mt as u8);
            b += PAGEBLOCK_NR_PAGES;
        }
    }

    fn add_to_free_list(&mut self, pfn: usize, order: usize, to_tail: bool) {
        let mt = self.pageblock_migratetype(pfn);
        self.add_to_free_list_of(pfn, order, mt, to_tail);
    }

    fn add_to_free_list_of(&mut self, pfn: usize, order: usize, mt: usize, to_tail: bool) {
        let z = self.zone_of(pfn);
        let p = self.page(pfn);
        p.set(PG_BUDDY);
        p.order.set(order as u8);
        p.refcount.set(0);
        let list = self.zones[z].free_area[order].free_list[mt];
        if to_tail {
            p.next.set(NIL);
            p.prev.set(list.tail);
            if list.tail == NIL {
                self.zones[z].free_area[order].free_list[mt].head = pfn as u32;
            } else {
                self.page(list.tail as usize).next.set(pfn as u32);
            }
            self.zones[z].free_area[order].free_list[mt].tail = pfn as u32;
        } else {
            p.prev.set(NIL);
            p.next.set(list.head);
            if list.head == NIL {
                self.zones[z].free_area[order].free_list[mt].tail = pfn as u32;
            } else {
                self.page(list.head as usize).prev.set(pfn as u32);
            }
            self.zones[z].free_area[order].free_list[mt].head = pfn as u32;
        }
        self.zones[z].free_area[order].free_list[mt].nr_free += 1;
        self.zones[z].free_area[order].nr_free += 1;
    }

    /// Take a free block off its list (that of its pageblock's type, which must not change
    /// while the block is listed).
    fn del_from_free_list(&mut self, pfn: usize, order: usize) {
        let mt = self.pageblock_migratetype(pfn);
        self.del_from_free_list_of(pfn, order, mt);
    }

    fn del_from_free_list_of(&mut self, pfn: usize, order: usize, mt: usize) {
        let z = self.zone_of(pfn);
        let (next, prev) = (self.page(pfn).next.get(), self.page(pfn).prev.get());
        let list = &mut self.zones[z].free_area[order].free_list[mt];
        if prev == NIL {
            list.head = next;
        }
        if next == NIL {
            list.tail = prev;
        }
        list.nr_free -= 1;
        self.zones[z].free_area[order].nr_free -= 1;
        if prev != NIL {
            self.page(prev as usize).next.set(next);
        }
        if next != NIL {
            self.page(next as usize).prev.set(prev);
        }
        let p = self.page(pfn);
        p.clear(PG_BUDDY);
        p.next.set(NIL);
        p.prev.set(NIL);
    }

    /// Give the pageblock at `start` migratetype `mt`, moving the free blocks in it to
    /// `mt`'s lists (`move_freepages_block`). Returns the free pages moved.
    pub(crate) fn move_freepages_block(&mut self, start: usize, mt: usize) -> usize {
        let old = self.pageblock_migratetype(start);
        let mut moved = 0;
        let mut pfn = start;
        while pfn < start + PAGEBLOCK_NR_PAGES {
            let p = self.page(pfn);
            if !p.has(PG_BUDDY) {
                pfn += 1;
                continue;
            }
            let order = p.order.get() as usize;
            self.del_from_free_list_of(pfn, order, old);
            self.add_to_free_list_of(pfn, order, mt, false);
            moved += 1 << order;
            pfn += 1 << order;
        }
        self.set_pageblock_range(start, PAGEBLOCK_NR_PAGES, mt);
        moved
    }

    /// Whether `buddy` heads a free block of exactly `order` in zone `z`.
    fn page_is_buddy(&self, buddy: usize, order: usize, z: usize) -> bool {
        buddy < self.nr_frames() && self.zones[z].contains(buddy) && {
            let p: &Page = self.page(buddy);
            p.has(PG_BUDDY) && p.order.get() as usize == order
        }
    }

    /// Take the first block of type `mt` of the smallest order >= `order` that zone `z`
    /// has, and split it down to `order` (`__rmqueue_smallest`).
    fn rmqueue_smallest(&mut self, z: usize, order: usize, mt: usize) -> Option<usize> {
        for current in order..NR_PAGE_ORDERS {
            let head = self.zones[z].free_area[current].free_list[mt].head;
            if head != NIL {
                let pfn = head as usize;
                self.take_block(z, pfn, order, current);
                return Some(pfn);
            }
        }
        None
    }

    fn take_block(&mut self, z: usize, pfn: usize, order: usize, current: usize) {
        self.del_from_free_list(pfn, current);
        self.expand(pfn, order, current);
        self.zones[z].free_pages -= 1 << order;
    }

    /// A block of type `mt` from zone `z` (`__rmqueue`): its own type; for movable
    /// requests CMA pageblocks too, first when they hold more than half the zone's free
    /// frames; then another type's block (`__rmqueue_claim`, `__rmqueue_steal`).
    fn rmqueue(&mut self, z: usize, order: usize, mt: usize) -> Option<usize> {
        // Only a machine with a CMA area looks at its lists (a sum over the orders).
        let cma = mt == MIGRATE_MOVABLE && self.cma_count != 0;
        if cma && self.nr_free_of_type(z, MIGRATE_CMA) > self.zones[z].free_pages / 2 {
            if let Some(pfn) = self.rmqueue_smallest(z, order, MIGRATE_CMA) {
                return Some(pfn);
            }
        }
        if let Some(pfn) = self.rmqueue_smallest(z, order, mt) {
            return Some(pfn);
        }
        if cma {
            if let Some(pfn) = self.rmqueue_smallest(z, order, MIGRATE_CMA) {
                return Some(pfn);
            }
        }
        if mt >= MIGRATE_PCPTYPES {
            return None;
        }
        self.rmqueue_claim(z, order, mt).or_else(|| self.rmqueue_steal(z, order, mt))
    }

    /// Free frames of type `mt` in zone `z`.
    pub fn nr_free_of_type(&self, z: usize, mt: usize) -> usize {
        self.zones[z].free_area.iter().enumerate().map(|(o, a)| a.free_list[mt].nr_free << o).sum()
    }

    /// The first fallback type of `mt` with a free block of `order` in zone `z`
    /// (`find_suitable_fallback`).
    fn find_fallback(&self, z: usize, order: usize, mt: usize) -> Option<usize> {
        FALLBACKS[mt].into_iter().find(|&f| self.zones[z].free_area[order].free_list[f].nr_free > 0)
    }

    /// Take another type's block, largest first, claiming its pageblock for `mt` where that
    /// is worth it (`__rmqueue_claim`).
    fn rmqueue_claim(&mut self, z: usize, order: usize, mt: usize) -> Option<usize> {
        for current in (order..NR_PAGE_ORDERS).rev() {
            let Some(fallback) = self.find_fallback(z, current, mt) else { continue };
            // `should_try_claim_block`: small blocks of the movable type are stolen alone.
            if current < PAGEBLOCK_ORDER / 2 && mt == MIGRATE_MOVABLE {
                break;
            }
            let pfn = self.zones[z].free_area[current].free_list[fallback].head as usize;
            if let Some(pfn) = self.try_to_claim_block(z, pfn, current, order, mt, fallback) {
                return Some(pfn);
            }
        }
        None
    }

    /// Claim the pageblock(s) of the free block at `pfn` (of `current` order, type
    /// `fallback`) for `mt` if the block is a pageblock or more, or if at least half the
    /// pageblock is free or already of `mt`'s kind; then take `order` from `mt`'s lists.
    fn try_to_claim_block(
        &mut self,
        z: usize,
        pfn: usize,
        current: usize,
        order: usize,
        mt: usize,
        fallback: usize,
    ) -> Option<usize> {
        if current >= PAGEBLOCK_ORDER {
            self.del_from_free_list_of(pfn, current, fallback);
            self.set_pageblock_range(pfn, 1 << current, mt);
            self.add_to_free_list_of(pfn, current, mt, false);
            return self.rmqueue_smallest(z, order, mt);
        }
        let start = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let zone = &self.zones[z];
        if start < zone.zone_start_pfn || start + PAGEBLOCK_NR_PAGES > zone.zone_end_pfn() {
            return None;
        }
        let (mut free, mut movable, mut f) = (0, 0, start);
        while f < start + PAGEBLOCK_NR_PAGES {
            let p = self.page(f);
            if p.has(PG_BUDDY) {
                free += 1 << p.order.get();
                f += 1 << p.order.get();
                continue;
            }
            if p.has(crate::page::PG_LRU) {
                movable += 1;
            }
            f += 1;
        }
        let alike = if mt == MIGRATE_MOVABLE {
            movable
        } else if fallback == MIGRATE_MOVABLE {
            PAGEBLOCK_NR_PAGES - free - movable
        } else {
            0
        };
        if free + alike < PAGEBLOCK_NR_PAGES / 2 {
            return None;
        }
        self.move_freepages_block(start, mt);
        self.rmqueue_smallest(z, order, mt)
    }

    /// Take the smallest block of a fallback type without claiming its pageblock
    /// (`__rmqueue_steal`).
    fn rmqueue_steal(&mut self, z: usize, order: usize, mt: usize) -> Option<usize> {
        for current in order..NR_PAGE_ORDERS {
            if let Some(fallback) = self.find_fallback(z, current, mt) {
                let pfn = self.zones[z].free_area[current].free_list[fallback].head as usize;
                self.take_block(z, pfn, order, current);
                return Some(pfn);
            }
        }
        None
    }

    /// Split the block of order `high` at `pfn`, keeping its first `1 << low` frames and
    /// putting each upper half back on the free list of its order. The block is one just
    /// taken off a free list (`rmqueue_smallest`), so its upper halves are free.
    fn expand(&mut self, pfn: usize, low: usize, mut high: usize) {
        while high > low {
            high -= 1;
            self.add_to_free_list(pfn + (1 << high), high, false);
        }
    }

    /// Free a block, merging it with free buddies as far as possible (`__free_one_page`).
    /// Only `free_pages` calls it, under its caller's promise.
    fn free_one_page(&mut self, pfn: usize, order: usize) {
        let z = self.zone_of(pfn);
        self.zones[z].free_pages += 1 << order;
        self.merge_and_insert(pfn, order, false);
    }

    fn merge_and_insert(&mut self, mut pfn: usize, mut order: usize, force_tail: bool) {
        let z = self.zone_of(pfn);
        let mt = self.pageblock_migratetype(pfn);
        while order < MAX_PAGE_ORDER {
            let buddy = pfn ^ (1 << order);
            if !self.page_is_buddy(buddy, order, z) {
                break;
            }
            // From a pageblock up, blocks of different types merge only between the
            // ordinary types, into the freed block's (`migratetype_is_mergeable`).
            let buddy_mt = self.pageblock_migratetype(buddy);
            if order >= PAGEBLOCK_ORDER
                && buddy_mt != mt
                && (mt >= MIGRATE_PCPTYPES || buddy_mt >= MIGRATE_PCPTYPES)
            {
                break;
            }
            self.del_from_free_list(buddy, order);
            if buddy_mt != mt {
                self.set_pageblock_range(buddy, 1 << order, mt);
            }
            pfn &= buddy;
            order += 1;
        }
        // If the buddy of the block we would merge into next is free, this block is likely
        // to merge soon: keep it at the tail so it is not handed out first.
        let to_tail = force_tail || {
            order < MAX_PAGE_ORDER - 1 && {
                let higher = pfn & (pfn ^ (1 << order));
                let buddy = higher ^ (1 << (order + 1));
                self.page_is_buddy(buddy, order + 1, z) && self.pageblock_migratetype(buddy) == mt
            }
        };
        self.add_to_free_list(pfn, order, to_tail);
    }

    /// Boot-time freeing: to the tail, in frame order, so the lowest frames go out first.
    ///
    /// # Safety
    /// Boot: the frames are the machine's, not reserved, and nothing has used them yet.
    pub(crate) unsafe fn free_boot_block(&mut self, pfn: usize, order: usize) {
        let z = self.zone_of(pfn);
        for i in 0..1usize << order {
            let p = self.page(pfn + i);
            p.flags.set(0);
            p.refcount.set(0);
        }
        self.zones[z].free_pages += 1 << order;
        self.merge_and_insert(pfn, order, true);
    }

    /// Whether zone `z` can give a block of `order` and stay above watermark `mark` plus the
    /// reserve it keeps against allocations that could use zone `highest_zoneidx`.
    pub fn zone_watermark_ok(&self, z: usize, order: usize, mark: usize, highest_zoneidx: usize) -> bool {
        let zone = &self.zones[z];
        let free = zone.free_pages as isize - ((1isize << order) - 1);
        if free <= (mark + zone.lowmem_reserve[highest_zoneidx]) as isize {
            return false;
        }
        order == 0 || zone.free_area[order..].iter().any(|a| a.nr_free > 0)
    }

    /// Allocate `1 << order` contiguous frames of migratetype `mt` (one of the ordinary
    /// three: what `gfp_migratetype` makes of the request's flags) from the highest zone
    /// that can spare them, optionally zeroed. Returns the first frame number.
    pub fn alloc_pages(&mut self, order: usize, zero: bool, mt: usize) -> Result<usize, Errno> {
        if order > MAX_PAGE_ORDER || mt >= MIGRATE_PCPTYPES {
            return Err(Errno::ENOMEM);
        }
        let highest = MAX_NR_ZONES - 1;
        let mut found = self.get_page_from_freelist(order, WMARK_LOW, highest, mt);
        if found.is_none() {
            if !self.kswapd_woken {
                self.vmstat.kswapd_wakeups += 1;
            }
            self.kswapd_woken = true;
            found = self.get_page_from_freelist(order, WMARK_MIN, highest, mt);
        }
        let Some(pfn) = found else {
            self.vmstat.alloc_fail += 1;
            return Err(Errno::ENOMEM);
        };
        for i in 0..1usize << order {
            self.page(pfn + i).reset_allocated();
        }
        self.page(pfn).order.set(order as u8);
        self.vmstat.pgalloc += 1 << order;
        if zero {
            for i in 0..1usize << order {
                // SAFETY: the block was just taken off the free lists: no one else has it.
                unsafe { self.clear_frame(pfn + i) };
            }
        }
        Ok(pfn)
    }

    fn get_page_from_freelist(
        &mut self,
        order: usize,
        wmark: usize,
        highest: usize,
        mt: usize,
    ) -> Option<usize> {
        for z in (0..=highest).rev() {
            if !self.zones[z].populated() {
                continue;
            }
            let mark = self.zones[z].watermark[wmark];
            if self.zone_watermark_ok(z, order, mark, highest) {
                if let Some(pfn) = self.rmqueue(z, order, mt) {
                    return Some(pfn);
                }
            }
        }
        None
    }

    /// Give back a block that `alloc_pages` returned.
    ///
    /// # Safety
    /// Nothing uses the block's frames any more: no PTE maps them, a host mapping that
    /// mirrored one is gone before the next allocation, and no `KPtr`, `PteSlot` or pointer
    /// into them is used afterwards. The allocator hands them out again, zeroed or not, as
    /// memory no one else has.
    pub unsafe fn free_pages(&mut self, pfn: usize, order: usize) {
        let p = self.page(pfn);
        if p.has(PG_BUDDY | PG_RESERVED | crate::page::PG_SWAPCACHE) {
            crate::util::bug("free_pages: frame is free, reserved or in the swap cache", pfn, order);
        }
        self.lru_del(pfn);
        for i in 0..1usize << order {
            let q = self.page(pfn + i);
            q.flags.set(0);
            q.refcount.set(0);
            q.mapcount.set(0);
            q.mapping.set(0);
        }
        self.vmstat.pgfree += 1 << order;
        self.free_one_page(pfn, order);
    }

    /// Take the free block headed by `pfn` off its free list for compaction's free scanner
    /// (`__isolate_free_page`), if the zone stays above its min watermark without it: each of
    /// its frames becomes a page of its own, in no one's use, until it is a migration target
    /// or is released. Returns the block's order.
    pub(crate) fn isolate_free_block(&mut self, pfn: usize) -> Option<usize> {
        let p = self.page(pfn);
        if !p.has(PG_BUDDY) {
            return None;
        }
        let order = p.order.get() as usize;
        let z = self.zone_of(pfn);
        let mark = self.zones[z].watermark[WMARK_MIN] + (1 << order);
        if !self.zone_watermark_ok(z, 0, mark, z) {
            return None;
        }
        self.del_from_free_list(pfn, order);
        self.zones[z].free_pages -= 1 << order;
        for i in 0..1usize << order {
            self.page(pfn + i).reset_allocated();
        }
        Some(order)
    }

    /// Take the free block of `order` at `pfn` off its list and keep, as allocated frames,
    /// those of it inside `[start, end)`; the rest are free again (`isolate_freepages_range`
    /// splitting a block that reaches past the range).
    pub(crate) fn take_free_range(&mut self, pfn: usize, order: usize, start: usize, end: usize) {
        let z = self.zone_of(pfn);
        self.del_from_free_list(pfn, order);
        self.zones[z].free_pages -= 1 << order;
        for f in pfn..pfn + (1 << order) {
            self.page(f).reset_allocated();
            if f < start || f >= end {
                self.release_isolated(f);
            }
        }
    }

    /// Give back a page `isolate_free_block` took and compaction did not use
    /// (`release_free_list`): free again, merged with its buddies, not counted as a free of
    /// an allocation.
    pub(crate) fn release_isolated(&mut self, pfn: usize) {
        let p = self.page(pfn);
        if p.has(PG_BUDDY | PG_RESERVED) || p.mapcount.get() != 0 {
            crate::util::bug("release_isolated: not an isolated free page", pfn, 0);
        }
        p.flags.set(0);
        p.refcount.set(0);
        self.free_one_page(pfn, 0);
    }

    /// Linux's `setup_per_zone_wmarks` and `setup_per_zone_lowmem_reserve`.
    pub(crate) fn setup_watermarks(&mut self, min_free_kbytes: Option<usize>) {
        let lowmem_pages: usize = self.totalram_pages();
        let kbytes = min_free_kbytes
            .unwrap_or_else(|| ((lowmem_pages * 4 * 16) as f64).sqrt() as usize)
            .clamp(128, 262_144);
        self.min_free_kbytes = kbytes;
        let pages_min = kbytes >> 2;
        for z in &mut self.zones {
            let managed = z.managed_pages;
            let min = (pages_min * managed).checked_div(lowmem_pages).unwrap_or(0);
            let step = (min >> 2).max(managed * WATERMARK_SCALE_FACTOR / 10_000);
            z.watermark = [min, min + step, min + 2 * step];
        }
        for (i, ratio) in LOWMEM_RESERVE_RATIO.into_iter().enumerate() {
            let mut above = 0;
            for j in i + 1..MAX_NR_ZONES {
                above += self.zones[j].managed_pages;
                self.zones[i].lowmem_reserve[j] =
                    if self.zones[i].managed_pages == 0 { 0 } else { above.checked_div(ratio).unwrap_or(0) };
            }
        }
    }

    /// Walk every free list and every frame: blocks aligned to their order, flagged and
    /// linked consistently, no two free buddies left unmerged, `nr_free` and the zone's free
    /// count right, and every frame reserved, free or allocated exactly once.
    pub fn check_buddy(&self) -> Result<BuddyReport, CheckError> {
        let mut report = BuddyReport::default();
        for (zi, zone) in self.zones.iter().enumerate() {
            let mut zone_free = 0;
            for (order, area) in zone.free_area.iter().enumerate() {
                let mut in_area = 0;
                for (mt, list) in area.free_list.iter().enumerate() {
                    let mut n = 0;
                    let mut prev = NIL;
                    let mut pfn = list.head;
                    while pfn != NIL {
                        let f = pfn as usize;
                        if f >= self.nr_frames() || n > self.nr_frames() {
                            return fail("free list runs off mem_map", f, order);
                        }
                        let p = self.page(f);
                        if !p.has(PG_BUDDY) || p.order.get() as usize != order {
                            return fail("free block not flagged with its order", f, order);
                        }
                        if f & ((1 << order) - 1) != 0 {
                            return fail("free block not aligned to its order", f, order);
                        }
                        if !zone.contains(f) || !zone.contains(f + (1 << order) - 1) {
                            return fail("free block outside its zone", f, zi);
                        }
                        if p.prev.get() != prev {
                            return fail("free list back link broken", f, order);
                        }
                        if (f..f + (1 << order))
                            .step_by(PAGEBLOCK_NR_PAGES)
                            .any(|b| self.pageblock_migratetype(b) != mt)
                        {
                            return fail("free block on the list of another migratetype", f, mt);
                        }
                        if order < MAX_PAGE_ORDER
                            && self.page_is_buddy(f ^ (1 << order), order, zi)
                            && (order < PAGEBLOCK_ORDER || {
                                let b = self.pageblock_migratetype(f ^ (1 << order));
                                b == mt || (b < MIGRATE_PCPTYPES && mt < MIGRATE_PCPTYPES)
                            })
                        {
                            return fail("free buddies left unmerged", f, order);
                        }
                        n += 1;
                        zone_free += 1 << order;
                        prev = pfn;
                        pfn = p.next.get();
                    }
                    if list.tail != prev {
                        return fail("free list tail wrong", zi, order);
                    }
                    if n != list.nr_free {
                        return fail("nr_free differs from the list", n, list.nr_free);
                    }
                    in_area += n;
                }
                if in_area != area.nr_free {
                    return fail("nr_free differs from its lists", in_area, area.nr_free);
                }
                report.free_blocks += in_area;
            }
            if zone_free != zone.free_pages {
                return fail("zone free count differs from its lists", zone_free, zone.free_pages);
            }
            report.free_pages += zone_free;
        }
        let mut pfn = 0;
        let mut walked_free = 0;
        while pfn < self.nr_frames() {
            let p = self.page(pfn);
            if p.has(PG_BUDDY) {
                let order = p.order.get() as usize;
                for inner in pfn + 1..(pfn + (1 << order)).min(self.nr_frames()) {
                    if self.page(inner).has(PG_BUDDY | PG_RESERVED) {
                        return fail("frame inside a free block is itself free or reserved", inner, pfn);
                    }
                }
                walked_free += 1 << order;
                pfn += 1 << order;
                continue;
            }
            if p.has(PG_RESERVED) {
                report.reserved_pages += 1;
            } else {
                report.allocated_pages += 1;
            }
            pfn += 1;
        }
        if walked_free != report.free_pages {
            return fail("free frames in mem_map differ from the free lists", walked_free, report.free_pages);
        }
        let managed = self.totalram_pages();
        if report.allocated_pages + report.free_pages != managed
            || report.reserved_pages != self.reserved_pages
            || report.allocated_pages + report.free_pages + report.reserved_pages != self.nr_frames()
        {
            return fail("frames not conserved", report.allocated_pages + report.free_pages, managed);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
