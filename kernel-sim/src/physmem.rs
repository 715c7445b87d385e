//! Simulated physical memory: a `memfd` holding every page frame, the kernel's direct map
//! of all of it, and `mem_map`, the array of frame descriptors.
//!
//! Frame `pfn` is bytes `pfn * PAGE_SIZE ..` of the memfd. The kernel reaches any frame
//! through the direct map (one `MAP_SHARED` mapping of the whole memfd, as Linux maps all
//! of RAM at `PAGE_OFFSET`); user pages are further `MAP_SHARED` mappings of single frames
//! at user addresses, so user and kernel views of a frame are the same bytes.
//!
//! Boot reserves frame 0 (as firmware would), frame 1 for the shared zero page, and the
//! frames at the top of memory for `mem_map` (memblock allocates it top-down), then gives
//! every other frame to the buddy allocator.

use crate::buddy::{Zone, MAX_NR_ZONES, MAX_PAGE_ORDER};
use crate::page::{Page, NIL, PAGE_SHIFT, PAGE_SIZE, PG_RESERVED};
use crate::Errno;

/// Frame numbers that start each zone, as on x86-64: DMA below 16 MiB, DMA32 below 4 GiB.
pub const ZONE_DMA_END_PFN: usize = (16 << 20) >> PAGE_SHIFT;
pub const ZONE_DMA32_END_PFN: usize = (4usize << 30) >> PAGE_SHIFT;

/// Counters of page use and of allocator events (Linux's `vmstat`).
#[derive(Clone, Copy, Debug, Default)]
pub struct VmStat {
    pub nr_anon_pages: usize,
    pub nr_file_pages: usize,
    pub nr_shmem: usize,
    pub nr_page_table_pages: usize,
    pub nr_slab_unreclaimable: usize,
    pub pgalloc: u64,
    pub pgfree: u64,
    pub pgfault: u64,
    /// Faults that had to read their page from the file (`pgmajfault`).
    pub pgmajfault: u64,
    /// Page-cache pages of regular files that are dirty (`nr_dirty`), and how many were
    /// ever dirtied and written back (`nr_dirtied`, `nr_written`).
    pub nr_dirty: usize,
    pub nr_dirtied: u64,
    pub nr_written: u64,
    /// Kilobytes read from files into the page cache and written back (`pgpgin`, `pgpgout`).
    pub pgpgin: u64,
    pub pgpgout: u64,
    /// Copy-on-write faults: a private copy of a shared page (the zero page, a file page,
    /// or an anonymous page shared with another process).
    pub cow_faults: u64,
    /// Allocations that fell below the low watermark and woke kswapd.
    pub kswapd_wakeups: u64,
    /// Reclaim: pages scanned and reclaimed by kswapd and by allocations themselves
    /// (direct reclaim), active pages scanned (`pgrefill`), pages moved between the
    /// active and inactive lists, and swap traffic in pages (`pswpin`, `pswpout`, and the
    /// pages swap-in read ahead, `swap_ra`).
    pub pgscan_kswapd: u64,
    pub pgscan_direct: u64,
    pub pgsteal_kswapd: u64,
    pub pgsteal_direct: u64,
    pub pgrefill: u64,
    pub pgactivate: u64,
    pub pgdeactivate: u64,
    pub pswpin: u64,
    pub pswpout: u64,
    pub swap_ra: u64,
    /// Times direct reclaim ran (`allocstall`) and kswapd's passes (`pageoutrun`).
    pub allocstall: u64,
    pub pageoutrun: u64,
    /// Pages of `VM_LOCKED` mappings (`nr_mlock`).
    pub nr_mlock: usize,
    /// Pages given up with `MADV_FREE`, and those of them reclaim dropped (`pglazyfree`,
    /// `pglazyfreed`).
    pub pglazyfree: u64,
    pub pglazyfreed: u64,
    /// TLB flushes: single pages of the running process's view, its whole view, and
    /// requests sent to other processes (`nr_tlb_*`).
    pub nr_tlb_local_flush_one: u64,
    pub nr_tlb_local_flush_all: u64,
    pub nr_tlb_remote_flush: u64,
    /// Compaction (`mm/compaction.c`): pages its migration scanner and its free scanner
    /// looked at, pages it isolated (to move, and free ones to move them to), the
    /// allocations that compacted directly (`compact_stall`) and whether that gave them
    /// their block; pages moved and pages that could not be (`pgmigrate_*`).
    pub compact_migrate_scanned: u64,
    pub compact_free_scanned: u64,
    pub compact_isolated: u64,
    pub compact_stall: u64,
    pub compact_fail: u64,
    pub compact_success: u64,
    pub pgmigrate_success: u64,
    pub pgmigrate_fail: u64,
    /// Allocations that found no zone above its min watermark.
    pub alloc_fail: u64,
    pub oom_kill: u64,
}

/// The direct map as a plain value, for a page-table walk whose callback allocates and
/// frees frames through `&mut PhysMem` meanwhile. Only `PhysMem` makes one, so the frames
/// it reaches are a machine's memory.
#[derive(Clone, Copy, Debug)]
pub struct DirectMap {
    /// Address of frame 0.
    base: usize,
    nr_frames: usize,
}

impl DirectMap {
    /// The bytes of frame `pfn`. A frame the machine does not have is a simulator bug and
    /// stops it: no pointer outside the direct map is ever made.
    #[inline]
    pub fn frame(self, pfn: usize) -> *mut u8 {
        if pfn >= self.nr_frames {
            crate::util::bug("no such frame", pfn, self.nr_frames);
        }
        (self.base + pfn * PAGE_SIZE) as *mut u8
    }
}

pub struct PhysMem {
    /// The CMA area (`cma_declare_contiguous`): its first frame and its frames, 0 for none.
    pub cma_base: usize,
    pub cma_count: usize,
    memfd: i32,
    direct_map: DirectMap,
    /// Private, like `mem_map`: `page` trusts it as the length of `mem_map`.
    nr_frames: usize,
    mem_map: *const Page,
    pub zones: [Zone; MAX_NR_ZONES],
    pub zero_pfn: usize,
    pub reserved_pages: usize,
    pub min_free_kbytes: usize,
    pub vmstat: VmStat,
    /// Set while one process takes pages from another's page tables (a truncation): user
    /// pages freed meanwhile wait, linked through their descriptors from `deferred`, until
    /// no process's host view is stale (`Task::stale`), as Linux's wait for the TLB flush
    /// of every CPU that may cache them.
    pub defer_user_frees: bool,
    deferred: u32,
    /// The LRU lists (`swap`).
    pub lru: [crate::swap::LruList; crate::swap::NR_LRU_LISTS],
    /// The swap area, where anonymous pages go when reclaimed (`swapfile`).
    pub swap: crate::swapfile::SwapInfo,
    /// An allocation fell below the low watermark: kswapd runs when the machine lock is
    /// next let go.
    pub kswapd_woken: bool,
    /// Set while a system call holds user pages it is about to copy under the lock:
    /// reclaim would take them back (`file`'s `fault_in_buffer`).
    pub reclaim_disabled: bool,
    /// Set while a process's address space is torn down at exit: its flushes count nothing
    /// (`tlb::flush_tlb_mm_range`).
    pub tlb_lazy: bool,
    /// The CPUs and their TLBs.
    pub cpus: crate::cpu_tlbstate::Cpus,
}

impl PhysMem {
    /// Create `bytes` of physical memory (rounded down to whole frames) and hand its free
    /// frames to the buddy allocator. `min_free_kbytes` overrides Linux's default sizing
    /// of the watermarks.
    /// Boot a machine of `bytes` of RAM, with a CMA area of `cma_bytes` (rounded up to
    /// 4 MiB, the largest buddy block, and placed at the top of memory below `mem_map`, as
    /// memblock allocates it top-down; `EINVAL` if it does not fit in one zone).
    pub fn boot(bytes: usize, min_free_kbytes: Option<usize>, cma_bytes: usize) -> Result<PhysMem, Errno> {
        let nr_frames = bytes >> PAGE_SHIFT;
        let mem_map_bytes = nr_frames * core::mem::size_of::<Page>();
        let mem_map_frames = mem_map_bytes.div_ceil(PAGE_SIZE);
        // Frame 0, the zero page, mem_map and at least a few frames to manage.
        if nr_frames > NIL as usize || nr_frames < mem_map_frames + 16 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: memfd_create with a NUL-terminated name; no pointers kept.
        let memfd = unsafe { libc::memfd_create(c"kernel-sim-phys".as_ptr(), libc::MFD_CLOEXEC) };
        if memfd < 0 {
            return Err(Errno(ptalloc::errno()));
        }
        let len = nr_frames * PAGE_SIZE;
        // SAFETY: sizing a descriptor we own.
        if unsafe { libc::ftruncate(memfd, len as libc::off_t) } != 0 {
            let e = ptalloc::errno();
            // SAFETY: closing our own descriptor.
            unsafe { libc::close(memfd) };
            return Err(Errno(e));
        }
        // SAFETY: a new shared mapping of the whole memfd; nothing else is at that address.
        let dm = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd,
                0,
            )
        };
        if dm == libc::MAP_FAILED {
            let e = ptalloc::errno();
            // SAFETY: closing our own descriptor.
            unsafe { libc::close(memfd) };
            return Err(Errno(e));
        }
        let direct_map = DirectMap { base: dm as usize, nr_frames };
        let mem_map_pfn = nr_frames - mem_map_frames;
        let mut pm = PhysMem {
            memfd,
            direct_map,
            nr_frames,
            mem_map: direct_map.frame(mem_map_pfn) as *const Page,
            zones: Zone::layout(nr_frames),
            zero_pfn: 1,
            reserved_pages: 0,
            min_free_kbytes: 0,
            vmstat: VmStat::default(),
            defer_user_frees: false,
            deferred: NIL,
            lru: [crate::swap::LruList::EMPTY; crate::swap::NR_LRU_LISTS],
            swap: crate::swapfile::SwapInfo::NONE,
            kswapd_woken: false,
            reclaim_disabled: false,
            tlb_lazy: false,
            cpus: crate::cpu_tlbstate::Cpus::none(),
            cma_base: 0,
            cma_count: 0,
        };
        // The memfd reads as zero, so every descriptor starts all-zero: not reserved, not
        // free. Mark the reserved frames, then free the rest in maximal aligned blocks.
        let reserve = |pm: &mut PhysMem, pfn: usize| {
            let p = pm.page(pfn);
            p.set(PG_RESERVED);
            p.refcount.set(1);
            p.next.set(NIL);
            p.prev.set(NIL);
            pm.reserved_pages += 1;
        };
        reserve(&mut pm, 0);
        let zero_pfn = pm.zero_pfn;
        reserve(&mut pm, zero_pfn);
        for pfn in mem_map_pfn..nr_frames {
            reserve(&mut pm, pfn);
        }
        // Every pageblock starts movable (`memmap_init_zone`); the CMA area's are CMA
        // (`init_cma_reserved_pageblock`).
        pm.set_pageblock_range(0, nr_frames, crate::buddy::MIGRATE_MOVABLE);
        if cma_bytes > 0 {
            const CMA_ALIGN: usize = 1 << MAX_PAGE_ORDER;
            let count = (cma_bytes >> PAGE_SHIFT).next_multiple_of(CMA_ALIGN);
            let base = mem_map_pfn.saturating_sub(count) & !(CMA_ALIGN - 1);
            if count > mem_map_pfn || base < CMA_ALIGN || pm.zone_of(base) != pm.zone_of(base + count - 1) {
                // SAFETY: nothing has been handed out of the memory just made.
                unsafe { pm.shutdown() };
                return Err(Errno::EINVAL);
            }
            pm.cma_base = base;
            pm.cma_count = count;
            pm.set_pageblock_range(base, count, crate::buddy::MIGRATE_CMA);
        }
        for z in 0..MAX_NR_ZONES {
            let (start, end) = (pm.zones[z].zone_start_pfn, pm.zones[z].zone_end_pfn());
            let (start, end) = (start.max(2), end.min(mem_map_pfn));
            let mut pfn = start;
            while pfn < end {
                let mut order = (pfn.trailing_zeros() as usize).min(MAX_PAGE_ORDER);
                while pfn + (1 << order) > end {
                    order -= 1;
                }
                pm.zones[z].managed_pages += 1 << order;
                // SAFETY: boot, and frames between the reserved ones at each end: nothing has
                // used them.
                unsafe { pm.free_boot_block(pfn, order) };
                pfn += 1 << order;
            }
        }
        pm.setup_watermarks(min_free_kbytes);
        Ok(pm)
    }

    /// The descriptor of frame `pfn` (which must exist).
    #[inline]
    pub fn page(&self, pfn: usize) -> &Page {
        if pfn >= self.nr_frames {
            crate::util::bug("page(): no such frame", pfn, self.nr_frames);
        }
        // SAFETY: mem_map holds nr_frames descriptors in the direct map, which stays mapped
        // while the machine exists; Page is all Cells, so shared references may coexist.
        unsafe { &*self.mem_map.add(pfn) }
    }

    /// The memfd whose pages are the frames (what user mappings map).
    #[inline]
    pub fn memfd(&self) -> i32 {
        self.memfd
    }

    /// The number of frames, reserved ones included.
    #[inline]
    pub fn nr_frames(&self) -> usize {
        self.nr_frames
    }

    #[inline]
    pub fn direct_map(&self) -> DirectMap {
        self.direct_map
    }

    /// The frame's bytes in the direct map (see `DirectMap::frame`).
    #[inline]
    pub fn frame(&self, pfn: usize) -> *mut u8 {
        self.direct_map.frame(pfn)
    }

    /// The frame that holds direct-map address `addr` (a frame number past the end if
    /// `addr` is outside the direct map, which `page` and `frame` refuse).
    #[inline]
    pub fn virt_to_pfn(&self, addr: usize) -> usize {
        addr.wrapping_sub(self.direct_map.base) >> PAGE_SHIFT
    }

    /// Zero frame `pfn`.
    ///
    /// # Safety
    /// The caller owns the frame: nothing else reads or writes it meanwhile (it has just
    /// been allocated and is mapped nowhere).
    pub unsafe fn clear_frame(&self, pfn: usize) {
        // SAFETY: `frame` gives a whole frame inside the direct map, which stays mapped until
        // `shutdown`; the caller owns it.
        unsafe { core::ptr::write_bytes(self.frame(pfn), 0, PAGE_SIZE) }
    }

    /// Copy frame `src` to frame `dst`.
    ///
    /// # Safety
    /// `dst` and `src` are different frames; the caller owns `dst` (as for `clear_frame`),
    /// and nothing writes `src` meanwhile.
    pub unsafe fn copy_frame(&self, dst: usize, src: usize) {
        // SAFETY: two whole frames inside the direct map (checked by `frame`), not the same
        // one, so they do not overlap; the caller owns `dst` and `src` holds still.
        unsafe { core::ptr::copy_nonoverlapping(self.frame(src), self.frame(dst), PAGE_SIZE) }
    }

    /// Free a page that was user memory (anonymous or page cache), or hold it back while a
    /// process's host view may still reach it (`defer_user_frees`).
    ///
    /// # Safety
    /// As for `free_pages` of one frame.
    pub unsafe fn free_user_page(&mut self, pfn: usize) {
        self.lru_del(pfn);
        if self.defer_user_frees {
            self.page(pfn).next.set(self.deferred);
            self.deferred = pfn as u32;
            return;
        }
        // SAFETY: the caller's promise.
        unsafe { self.free_pages(pfn, 0) };
    }

    /// No process has a stale view any more: free what waited.
    pub fn free_deferred(&mut self) {
        self.defer_user_frees = false;
        while self.deferred != NIL {
            let pfn = self.deferred as usize;
            self.deferred = self.page(pfn).next.get();
            self.page(pfn).next.set(NIL);
            // SAFETY: freed by its owner before it was held back (`free_user_page`), and no
            // host view reaches it now.
            unsafe { self.free_pages(pfn, 0) };
        }
    }

    /// Total pages managed by the buddy allocator (Linux's `totalram_pages`).
    pub fn totalram_pages(&self) -> usize {
        self.zones.iter().map(|z| z.managed_pages).sum()
    }

    pub fn nr_free_pages(&self) -> usize {
        self.zones.iter().map(|z| z.free_pages).sum()
    }

    /// Release the host resources: the direct map and the memfd.
    ///
    /// # Safety
    /// No frame is reached afterwards: no `page`, `frame` or allocator call on this
    /// `PhysMem`, and no `KPtr`, `PteSlot` or `DirectMap` that came from it is used again.
    pub unsafe fn shutdown(&mut self) {
        // SAFETY: our own mapping and descriptors; the caller promises nothing uses them.
        unsafe {
            libc::munmap(self.direct_map.base as *mut libc::c_void, self.nr_frames * PAGE_SIZE);
            libc::close(self.memfd);
            if self.swap.fd >= 0 {
                libc::close(self.swap.fd);
            }
            self.cpus.shutdown();
        }
        self.swap.fd = -1;
    }
}
