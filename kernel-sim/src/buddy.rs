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
//! Allocations try zones from the highest the request may use down to DMA. A zone gives a
//! page only while its free pages stay above a watermark plus the `lowmem_reserve` that
//! protects lower zones from allocations that could have gone higher: first the low
//! watermark, then (where Linux would wake kswapd and retry) the min watermark. With no
//! swap and no reclaimable caches there is nothing more to try, so falling below min is
//! running out of memory and returns `ENOMEM`. Per-CPU page lists are not simulated.

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

/// `sysctl vm.lowmem_reserve_ratio` for DMA, DMA32, Normal.
const LOWMEM_RESERVE_RATIO: [usize; MAX_NR_ZONES] = [256, 256, 32];
/// `sysctl vm.watermark_scale_factor` (in 1/10000 of a zone).
const WATERMARK_SCALE_FACTOR: usize = 10;

pub const WMARK_MIN: usize = 0;
pub const WMARK_LOW: usize = 1;
pub const WMARK_HIGH: usize = 2;
/// Linux also has `WMARK_PROMO` (for memory tiering), which this simulation lacks.
pub const NR_WMARK: usize = WMARK_HIGH + 1;

/// One order's free list: a doubly linked list of block heads through `Page::next/prev`.
#[derive(Clone, Copy, Debug)]
pub struct FreeArea {
    pub head: u32,
    pub tail: u32,
    pub nr_free: usize,
}

impl FreeArea {
    const EMPTY: FreeArea = FreeArea { head: NIL, tail: NIL, nr_free: 0 };
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

    fn add_to_free_list(&mut self, pfn: usize, order: usize, to_tail: bool) {
        let z = self.zone_of(pfn);
        let p = self.page(pfn);
        p.set(PG_BUDDY);
        p.order.set(order as u8);
        p.refcount.set(0);
        let area = self.zones[z].free_area[order];
        if to_tail {
            p.next.set(NIL);
            p.prev.set(area.tail);
            if area.tail == NIL {
                self.zones[z].free_area[order].head = pfn as u32;
            } else {
                self.page(area.tail as usize).next.set(pfn as u32);
            }
            self.zones[z].free_area[order].tail = pfn as u32;
        } else {
            p.prev.set(NIL);
            p.next.set(area.head);
            if area.head == NIL {
                self.zones[z].free_area[order].tail = pfn as u32;
            } else {
                self.page(area.head as usize).prev.set(pfn as u32);
            }
            self.zones[z].free_area[order].head = pfn as u32;
        }
        self.zones[z].free_area[order].nr_free += 1;
    }

    fn del_from_free_list(&mut self, pfn: usize, order: usize) {
        let z = self.zone_of(pfn);
        let (next, prev) = (self.page(pfn).next.get(), self.page(pfn).prev.get());
        if prev == NIL {
            self.zones[z].free_area[order].head = next;
        } else {
            self.page(prev as usize).next.set(next);
        }
        if next == NIL {
            self.zones[z].free_area[order].tail = prev;
        } else {
            self.page(next as usize).prev.set(prev);
        }
        let p = self.page(pfn);
        p.clear(PG_BUDDY);
        p.next.set(NIL);
        p.prev.set(NIL);
        self.zones[z].free_area[order].nr_free -= 1;
    }

    /// Whether `buddy` heads a free block of exactly `order` in zone `z`.
    fn page_is_buddy(&self, buddy: usize, order: usize, z: usize) -> bool {
        buddy < self.nr_frames() && self.zones[z].contains(buddy) && {
            let p: &Page = self.page(buddy);
            p.has(PG_BUDDY) && p.order.get() as usize == order
        }
    }

    /// Take the first block of the smallest order >= `order` that zone `z` has, and split
    /// it down to `order`.
    fn rmqueue_smallest(&mut self, z: usize, order: usize) -> Option<usize> {
        for current in order..NR_PAGE_ORDERS {
            let head = self.zones[z].free_area[current].head;
            if head != NIL {
                let pfn = head as usize;
                self.del_from_free_list(pfn, current);
                self.expand(pfn, order, current);
                self.zones[z].free_pages -= 1 << order;
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
        while order < MAX_PAGE_ORDER {
            let buddy = pfn ^ (1 << order);
            if !self.page_is_buddy(buddy, order, z) {
                break;
            }
            self.del_from_free_list(buddy, order);
            pfn &= buddy;
            order += 1;
        }
        // If the buddy of the block we would merge into next is free, this block is likely
        // to merge soon: keep it at the tail so it is not handed out first.
        let to_tail = force_tail || {
            order < MAX_PAGE_ORDER - 1 && {
                let higher = pfn & (pfn ^ (1 << order));
                self.page_is_buddy(higher ^ (1 << (order + 1)), order + 1, z)
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

    /// Allocate `1 << order` contiguous frames from the highest zone that can spare them,
    /// optionally zeroed. Returns the first frame number.
    pub fn alloc_pages(&mut self, order: usize, zero: bool) -> Result<usize, Errno> {
        if order > MAX_PAGE_ORDER {
            return Err(Errno::ENOMEM);
        }
        let highest = MAX_NR_ZONES - 1;
        let mut found = self.get_page_from_freelist(order, WMARK_LOW, highest);
        if found.is_none() {
            if !self.kswapd_woken {
                self.vmstat.kswapd_wakeups += 1;
            }
            self.kswapd_woken = true;
            found = self.get_page_from_freelist(order, WMARK_MIN, highest);
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

    fn get_page_from_freelist(&mut self, order: usize, wmark: usize, highest: usize) -> Option<usize> {
        for z in (0..=highest).rev() {
            if !self.zones[z].populated() {
                continue;
            }
            let mark = self.zones[z].watermark[wmark];
            if self.zone_watermark_ok(z, order, mark, highest) {
                if let Some(pfn) = self.rmqueue_smallest(z, order) {
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
                let mut n = 0;
                let mut prev = NIL;
                let mut pfn = area.head;
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
                    if order < MAX_PAGE_ORDER && self.page_is_buddy(f ^ (1 << order), order, zi) {
                        return fail("free buddies left unmerged", f, order);
                    }
                    n += 1;
                    zone_free += 1 << order;
                    prev = pfn;
                    pfn = p.next.get();
                }
                if area.tail != prev {
                    return fail("free list tail wrong", zi, order);
                }
                if n != area.nr_free {
                    return fail("nr_free differs from the list", n, area.nr_free);
                }
                report.free_blocks += n;
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
