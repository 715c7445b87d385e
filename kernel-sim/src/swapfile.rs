//! The swap area (Linux's `mm/swapfile.c`): one host file of page-sized slots, the count
//! of swap entries that point at each slot (`swap_map`), the slot allocator, `swapon`, and
//! `/proc/swaps`.
//!
//! Slot 0 is the header `mkswap` writes (`SWAPSPACE2` at the end of the first page), as on
//! Linux, so an area of N pages has N - 1 slots. Each slot's word holds the number of PTEs
//! (of every process) whose swap entry names it, and the frame of its swap-cache page plus
//! one (0: not cached; see `swap_state`). The words are kernel memory `vmalloc`ed at
//! `swapon`, as Linux's `swap_map` is, reached through the area's frames.
//!
//! Slots are handed out by a next-fit scan from where the last one was found, as Linux did
//! before its cluster allocator: neighbouring pages swapped out together get neighbouring
//! slots, which is what swap-in's read-ahead of neighbouring slots counts on.
//!
//! Not modelled: several areas and their priorities, `swapoff`, bad-block lists, discard.

use core::fmt::Write as _;

use crate::page::{PAGE_SHIFT, PAGE_SIZE};
use crate::physmem::PhysMem;
use crate::Errno;

/// Where `mkswap` puts the signature: the last 10 bytes of the first page.
const SWAP_SIGNATURE: &[u8; 10] = b"SWAPSPACE2";
/// Fewer pages than this and `swapon` refuses the area (Linux: header plus 9).
const MIN_SWAP_PAGES: usize = 10;
const SLOT_CACHE_SHIFT: u32 = 32;
const SLOT_COUNT_MASK: u64 = (1 << SLOT_CACHE_SHIFT) - 1;
/// The count of the header slot, which is never handed out.
const SWAP_MAP_BAD: u64 = SLOT_COUNT_MASK;

/// The machine's swap area, or none (`fd < 0`).
pub struct SwapInfo {
    pub fd: i32,
    /// Pages of the area, the header included (`si->max`).
    pub max: usize,
    /// Slots in use: counted by a PTE or holding a swap-cache page.
    pub inuse_pages: usize,
    /// Pages in the swap cache (`SwapCached`).
    pub nr_cached: usize,
    /// The slot words: their vmalloc address, the area's frames, and the direct map.
    pub map_va: u64,
    map_pages: *const u32,
    dm: Option<crate::physmem::DirectMap>,
    cursor: usize,
    /// The name `/proc/swaps` shows.
    pub name: [u8; 96],
    pub name_len: usize,
    pub prio: i32,
    /// `vm.swappiness`.
    pub swappiness: usize,
    /// `vm.page-cluster`: swap-in reads 2^page_cluster neighbouring slots.
    pub page_cluster: u32,
}

impl SwapInfo {
    pub const NONE: SwapInfo = SwapInfo {
        fd: -1,
        max: 0,
        inuse_pages: 0,
        nr_cached: 0,
        map_va: 0,
        map_pages: core::ptr::null(),
        dm: None,
        cursor: 1,
        name: [0; 96],
        name_len: 0,
        prio: -2,
        swappiness: 60,
        page_cluster: 3,
    };

    pub fn active(&self) -> bool {
        self.fd >= 0
    }

    /// Usable slots (`total_swap_pages`).
    pub fn total_pages(&self) -> usize {
        self.max.saturating_sub(1)
    }

    /// Free slots (`nr_swap_pages`).
    pub fn free_pages(&self) -> usize {
        self.total_pages() - self.inuse_pages.min(self.total_pages())
    }

    /// Whether more than half of the area is used (`vm_swap_full`): swap-in then frees a
    /// page's slot as soon as it can.
    pub fn vm_swap_full(&self) -> bool {
        self.inuse_pages * 2 > self.total_pages()
    }

    #[inline]
    fn word(&self, slot: usize) -> u64 {
        if slot >= self.max {
            crate::util::bug("swap slot beyond the area", slot, self.max);
        }
        // SAFETY: `word_ptr` gives the slot's word in a frame of the vmalloc area, which
        // the swap area owns until the machine goes; the machine lock serialises access.
        unsafe { self.word_ptr(slot).read() }
    }

    /// Slot `slot`'s word (`slot < max`): in page `slot / 512` of the vmalloc area.
    fn word_ptr(&self, slot: usize) -> *mut u64 {
        let Some(dm) = self.dm else { crate::util::bug("swap slot of no area", slot, 0) };
        // SAFETY: `map_pages` is the area's array of frames, one per 512 slots of `max`.
        let pfn = unsafe { self.map_pages.add(slot / 512).read() } as usize;
        (dm.frame(pfn) as *mut u64).wrapping_add(slot % 512)
    }

    #[inline]
    fn set_word(&mut self, slot: usize, w: u64) {
        if slot >= self.max {
            crate::util::bug("swap slot beyond the area", slot, self.max);
        }
        // SAFETY: as in `word`.
        unsafe { self.word_ptr(slot).write(w) }
    }

    /// PTEs that hold `slot` (`swap_count`).
    pub fn swap_count(&self, slot: usize) -> usize {
        (self.word(slot) & SLOT_COUNT_MASK) as usize
    }

    /// The frame of `slot`'s swap-cache page.
    pub fn cached_page(&self, slot: usize) -> Option<usize> {
        let c = self.word(slot) >> SLOT_CACHE_SHIFT;
        (c != 0).then(|| c as usize - 1)
    }

    pub(crate) fn set_cached_page(&mut self, slot: usize, pfn: Option<usize>) {
        let w = self.word(slot) & SLOT_COUNT_MASK;
        let was = self.word(slot) >> SLOT_CACHE_SHIFT != 0;
        let c = pfn.map_or(0, |p| p as u64 + 1);
        self.set_word(slot, w | (c << SLOT_CACHE_SHIFT));
        match (was, pfn.is_some()) {
            (false, true) => self.nr_cached += 1,
            (true, false) => self.nr_cached -= 1,
            _ => {}
        }
        self.release_if_unused(slot);
    }

    fn release_if_unused(&mut self, slot: usize) {
        if self.word(slot) == 0 {
            self.inuse_pages -= 1;
        }
    }

    /// A free slot, taken (`folio_alloc_swap`); its count stays 0 until a PTE holds it, the
    /// caller puts a page in its cache at once.
    pub(crate) fn get_swap_slot(&mut self) -> Option<usize> {
        if !self.active() || self.inuse_pages >= self.total_pages() {
            return None;
        }
        let mut slot = self.cursor;
        for _ in 0..self.max {
            if slot >= self.max {
                slot = 1;
            }
            if self.word(slot) == 0 {
                self.cursor = slot + 1;
                self.inuse_pages += 1;
                return Some(slot);
            }
            slot += 1;
        }
        None
    }

    /// One more PTE holds `slot` (`swap_duplicate`).
    pub(crate) fn swap_duplicate(&mut self, slot: usize) {
        let w = self.word(slot);
        if w & SLOT_COUNT_MASK == 0 && w >> SLOT_CACHE_SHIFT == 0 {
            crate::util::bug("swap_duplicate of a free slot", slot, 0);
        }
        self.set_word(slot, w + 1);
    }

    /// A PTE that held `slot` is gone (`swap_free`). Returns the count left.
    pub(crate) fn swap_put(&mut self, slot: usize) -> usize {
        let w = self.word(slot);
        if w & SLOT_COUNT_MASK == 0 {
            crate::util::bug("swap_free of a slot no PTE holds", slot, 0);
        }
        self.set_word(slot, w - 1);
        self.release_if_unused(slot);
        self.swap_count(slot)
    }

    /// Read slot `slot` into `frame` (`swap_read_folio`).
    pub(crate) fn read_slot(&self, slot: usize, frame: *mut u8) -> Result<(), Errno> {
        self.slot_io(slot, frame, false)
    }

    /// Write `frame` to slot `slot` (`swap_writeout`).
    pub(crate) fn write_slot(&self, slot: usize, frame: *const u8) -> Result<(), Errno> {
        self.slot_io(slot, frame as *mut u8, true)
    }

    /// The whole page between `frame` and slot `slot`, in as many host calls as it takes.
    fn slot_io(&self, slot: usize, frame: *mut u8, write: bool) -> Result<(), Errno> {
        let mut done = 0;
        while done < PAGE_SIZE {
            let (buf, len, pos) =
                (frame.wrapping_add(done), PAGE_SIZE - done, ((slot << PAGE_SHIFT) + done) as libc::off_t);
            // SAFETY: `frame` is a whole frame: for a read the caller owns it and the host
            // writes into it; for a write it holds still and the host only reads it.
            let n = unsafe {
                if write {
                    libc::pwrite(self.fd, buf.cast(), len, pos)
                } else {
                    libc::pread(self.fd, buf.cast(), len, pos)
                }
            };
            if n <= 0 {
                return Err(Errno(libc::EIO));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Checker: the counts of all slots against `swap_entries` (the swap entries found in
    /// every page table), the cache words against their pages, `inuse_pages`, `nr_cached`.
    pub(crate) fn check(&self, phys: &PhysMem, swap_entries: usize) -> Result<(), crate::check::CheckError> {
        if !self.active() {
            return if swap_entries == 0 {
                Ok(())
            } else {
                crate::check::fail("swap entries without swap", swap_entries, 0)
            };
        }
        let (mut inuse, mut cached, mut counts) = (0, 0, 0);
        for slot in 1..self.max {
            if self.word(slot) != 0 {
                inuse += 1;
            }
            counts += self.swap_count(slot);
            if let Some(pfn) = self.cached_page(slot) {
                cached += 1;
                let p = phys.page(pfn);
                if !p.has(crate::page::PG_SWAPCACHE) || p.swap_slot() != slot {
                    return crate::check::fail("swap cache word names a page not cached there", slot, pfn);
                }
            }
        }
        if counts != swap_entries {
            return crate::check::fail("swap counts differ from the swap entries", counts, swap_entries);
        }
        if inuse != self.inuse_pages || cached != self.nr_cached {
            return crate::check::fail("swap slots in use or cached miscounted", inuse, cached);
        }
        Ok(())
    }
}

/// Write a swap header to the host file `fd` of `bytes` (`mkswap`): version 1, the last
/// page, no bad pages, the signature.
pub fn mkswap(fd: i32, bytes: usize) -> Result<(), Errno> {
    let pages = bytes >> PAGE_SHIFT;
    if pages < MIN_SWAP_PAGES {
        return Err(Errno::EINVAL);
    }
    let mut page = [0u8; PAGE_SIZE];
    // struct swap_header_v1_2: bootbits[1024], version, last_page, nr_badpages, uuid...
    page[1024..1028].copy_from_slice(&1u32.to_ne_bytes());
    page[1028..1032].copy_from_slice(&((pages - 1) as u32).to_ne_bytes());
    page[PAGE_SIZE - 10..].copy_from_slice(SWAP_SIGNATURE);
    // SAFETY: writing our stack buffer to a descriptor the caller owns.
    let n = unsafe { libc::pwrite(fd, page.as_ptr().cast(), PAGE_SIZE, 0) };
    if n != PAGE_SIZE as isize {
        return Err(Errno(libc::EIO));
    }
    Ok(())
}

/// Take `fd` (a host file with a swap header) as the machine's swap area, named `name`
/// (`sys_swapon`). `EBUSY` if there is one already, `EINVAL` without the signature or with
/// fewer than 10 pages or more than the slot words can describe, `ENOMEM` without frames
/// for those words. On success the area owns `fd`.
pub(crate) fn swapon(st: &mut crate::machine::State, fd: i32, name: &[u8]) -> Result<(), Errno> {
    if st.phys.swap.active() {
        return Err(Errno(libc::EBUSY));
    }
    // SAFETY: an all-zero stat is a valid value of the plain C struct fstat fills.
    let mut sb: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat of a descriptor into our stack struct.
    if unsafe { libc::fstat(fd, &mut sb) } != 0 || sb.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EINVAL);
    }
    let mut header = [0u8; PAGE_SIZE];
    // SAFETY: reading the first page into our stack buffer.
    let n = unsafe { libc::pread(fd, header.as_mut_ptr().cast(), PAGE_SIZE, 0) };
    if n != PAGE_SIZE as isize || &header[PAGE_SIZE - 10..] != SWAP_SIGNATURE {
        return Err(Errno::EINVAL);
    }
    let last_page = u32::from_ne_bytes([header[1028], header[1029], header[1030], header[1031]]) as usize;
    let max = (last_page + 1).min(sb.st_size as usize >> PAGE_SHIFT);
    if max < MIN_SWAP_PAGES {
        return Err(Errno::EINVAL);
    }
    if max > u32::MAX as usize {
        return Err(Errno::EINVAL);
    }
    let va = crate::vmalloc::vmalloc(&mut st.vmalloc, &mut st.phys, &mut st.slab, max * 8, "swapon")?;
    let (pages, _) = crate::vmalloc::area_pages(&st.vmalloc, va).unwrap_or((core::ptr::null(), 0));
    let dm = st.phys.direct_map();
    let s = &mut st.phys.swap;
    s.fd = fd;
    s.max = max;
    s.map_va = va;
    s.map_pages = pages;
    s.dm = Some(dm);
    s.cursor = 1;
    s.inuse_pages = 0;
    s.nr_cached = 0;
    s.set_word(0, SWAP_MAP_BAD);
    s.name_len = name.len().min(s.name.len());
    s.name[..s.name_len].copy_from_slice(&name[..s.name_len]);
    Ok(())
}

/// Create the swap area `Config::swap_bytes` asks for: a new file in the host's `/tmp`,
/// unlinked at once (it lives as long as the descriptor), with a swap header.
pub(crate) fn swapon_tmpfile(st: &mut crate::machine::State, bytes: usize) -> Result<(), Errno> {
    static SERIAL: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let mut path = crate::util::StackWriter::<80>::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let n = SERIAL.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let _ = write!(path, "/tmp/ksim-swap-{pid}-{n}\0");
    let cpath = path.as_bytes();
    // SAFETY: a NUL-terminated path in our buffer.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr().cast(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(Errno(ptalloc::errno()));
    }
    // SAFETY: removing the name we just created; the descriptor keeps the file.
    unsafe { libc::unlink(cpath.as_ptr().cast()) };
    let bytes = bytes & !(PAGE_SIZE - 1);
    // SAFETY: sizing our own descriptor.
    let r = if unsafe { libc::ftruncate(fd, bytes as libc::off_t) } != 0 {
        Err(Errno(ptalloc::errno()))
    } else {
        mkswap(fd, bytes)
    };
    let mut name = crate::util::StackWriter::<96>::new();
    let _ = write!(name, "/tmp/ksim-swap-{pid}-{n} (deleted)");
    let r = r.and_then(|()| swapon(st, fd, name.as_bytes()));
    if r.is_err() {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
    }
    r
}

/// What `/proc/swaps` shows, copied out of the locked state (writing it may allocate).
pub(crate) struct SwapsLine {
    active: bool,
    name: [u8; 96],
    name_len: usize,
    size_kb: usize,
    used_kb: usize,
    prio: i32,
}

impl SwapsLine {
    pub(crate) fn of(s: &SwapInfo) -> SwapsLine {
        let kb = |p: usize| p << (PAGE_SHIFT - 10);
        SwapsLine {
            active: s.active(),
            name: s.name,
            name_len: s.name_len,
            size_kb: kb(s.total_pages()),
            used_kb: kb(s.inuse_pages),
            prio: s.prio,
        }
    }

    pub(crate) fn write(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        writeln!(w, "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority")?;
        if !self.active {
            return Ok(());
        }
        let name = core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?");
        let (size, used) = (self.size_kb, self.used_kb);
        let tab = |v: usize| if v < 10_000_000 { "\t" } else { "" };
        // Linux's swap_show: the name padded to 40 columns (at least one space), then tabs.
        let pad = 40usize.saturating_sub(name.len()).max(1);
        writeln!(w, "{name}{:pad$}file\t{size}\t{}{used}\t{}{}", "", tab(size), tab(used), self.prio)
    }
}
