//! Inodes with a page cache: shmem objects behind shared anonymous mappings, the simulated
//! executable's file, and regular files of the host (`file`, `filemap`).
//!
//! `mmap(MAP_SHARED | MAP_ANONYMOUS)` gets a fresh shmem inode the size of the mapping
//! (Linux's `shmem_zero_setup`, shown as `/dev/zero (deleted)`). Its pages live in the
//! inode's page cache, found by page offset through a three-level index of 1024-entry
//! frames (an entry is a frame number; 0, never a page-cache frame, means a hole). Pages
//! stay in the cache when unmapped or dropped with `MADV_DONTNEED`, so their contents
//! survive, and go back to the buddy allocator when the last mapping of the inode goes.
//! Touching a page beyond the inode's size (a shared mapping grown with `mremap`) is a
//! `SIGBUS`, as in Linux.
//!
//! A host file's inode (`INODE_REG`) keeps the host descriptors its pages are read from and
//! written back to, its size in bytes, its name (a `names_cache` object) and its place on
//! the machine's list of such inodes (`SuperBlock`), by which a second `open` of the same
//! file finds the same page cache.

use core::cell::Cell;

use crate::kptr::KPtr;
use crate::page::{PAGE_SIZE, PG_DIRTY, PG_FILE, PG_RADIX, PG_SWAPBACKED};
use crate::physmem::PhysMem;
use crate::slab::{Slab, CACHE_INODE, CACHE_NAMES};
use crate::Errno;

pub const INODE_SHMEM: u32 = 1;
/// The synthetic program file of the boot image: pages start zeroed, nothing is stored.
pub const INODE_FILE: u32 = 2;
/// A regular file of the host, read into the cache and written back (`filemap`).
pub const INODE_REG: u32 = 3;
/// A directory of the host: it can be opened, not mapped or read.
pub const INODE_DIR: u32 = 4;
/// Any other host file (devices, pipes, sockets): opened, not mapped.
pub const INODE_SPECIAL: u32 = 5;

/// The longest name a host inode keeps, with its terminating NUL (a `names_cache` object).
pub const NAME_MAX_BYTES: usize = 256;

const FANOUT_BITS: u32 = 10;
const FANOUT: usize = 1 << FANOUT_BITS;
/// The largest inode, in pages (three levels of 1024).
pub const MAX_INODE_PAGES: usize = 1 << (3 * FANOUT_BITS);

#[repr(C)]
pub struct Inode {
    /// VMAs that map this inode (the simulation's stand-in for the file's reference count).
    pub refcount: Cell<usize>,
    pub kind: Cell<u32>,
    pub ino: Cell<u64>,
    /// `i_size` in pages.
    pub size_pages: Cell<usize>,
    /// Pages in the cache.
    pub nr_pages: Cell<usize>,
    /// Pages charged to the commit limit when the inode was made (released with it).
    pub charged: Cell<usize>,
    /// Root frame of the page index, or 0.
    pub root: Cell<usize>,
    /// Host inodes: `st_dev` of the host file (with `ino`, what identifies it).
    pub dev: Cell<u64>,
    /// Host inodes: the host file's `st_mode`.
    pub mode: Cell<u32>,
    /// Host inodes: `i_size` in bytes (`size_pages` is it rounded up to pages).
    pub size_bytes: Cell<u64>,
    /// Host inodes: the file's name, a `names_cache` object (direct-map address), or 0.
    pub name: Cell<usize>,
    /// Open files of the inode (part of `refcount`).
    pub nr_open: Cell<usize>,
    /// Cached pages that are dirty.
    pub nr_dirty: Cell<usize>,
    /// The next inode on the machine's list of host inodes.
    pub next: Cell<Option<InodePtr>>,
}

/// The machine's host inodes (a superblock's `s_inodes`), so that opening a file twice
/// finds one page cache.
#[derive(Default)]
pub struct SuperBlock {
    pub inodes: Option<InodePtr>,
}

impl SuperBlock {
    /// The inode of host file `(dev, ino)`, if it is in use.
    pub fn find(&self, dev: u64, ino: u64) -> Option<InodePtr> {
        let mut cur = self.inodes;
        while let Some(i) = cur {
            if i.dev.get() == dev && i.ino.get() == ino {
                return Some(i);
            }
            cur = i.next.get();
        }
        None
    }

    pub fn add(&mut self, inode: InodePtr) {
        inode.next.set(self.inodes);
        self.inodes = Some(inode);
    }

    pub fn remove(&mut self, inode: InodePtr) {
        let mut prev: Option<InodePtr> = None;
        let mut cur = self.inodes;
        while let Some(i) = cur {
            if i == inode {
                match prev {
                    Some(p) => p.next.set(i.next.get()),
                    None => self.inodes = i.next.get(),
                }
                return;
            }
            prev = cur;
            cur = i.next.get();
        }
    }
}

pub type InodePtr = KPtr<Inode>;

impl Inode {
    pub fn is_shmem(&self) -> bool {
        self.kind.get() == INODE_SHMEM
    }

    /// A file of the host (on the machine's `SuperBlock`).
    pub fn is_host(&self) -> bool {
        matches!(self.kind.get(), INODE_REG | INODE_DIR | INODE_SPECIAL)
    }

    /// A regular file of the host, whose pages come from it and go back to it.
    pub fn is_reg(&self) -> bool {
        self.kind.get() == INODE_REG
    }

    pub fn set_size_bytes(&self, size: u64) {
        self.size_bytes.set(size);
        self.size_pages.set(size.div_ceil(PAGE_SIZE as u64).min(MAX_INODE_PAGES as u64) as usize);
    }
}

/// The name `/proc/PID/maps` gives the mapping of an inode, copied into `out`.
pub fn inode_path(inode: &Inode, out: &mut crate::proc::Name) {
    match inode.kind.get() {
        INODE_SHMEM => out.set(b"/dev/zero (deleted)"),
        INODE_FILE => out.set(b"/ksim/bin/init"),
        _ => {
            let addr = inode.name.get();
            if addr == 0 {
                out.set(b"");
                return;
            }
            // SAFETY: a names_cache object of this inode (set by `file::new_host_inode`,
            // freed only with the inode), NAME_MAX_BYTES long in the direct map and
            // NUL-terminated within them; nothing writes it after it is made.
            let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, NAME_MAX_BYTES) };
            let len = bytes.iter().position(|&b| b == 0).unwrap_or(NAME_MAX_BYTES);
            out.set(&bytes[..len]);
        }
    }
}

/// The device `/proc/PID/maps` shows for an inode (major, minor).
pub fn inode_dev(inode: &Inode) -> (u32, u32) {
    match inode.kind.get() {
        INODE_SHMEM => (0, 1),
        INODE_FILE => (0xfe, 0),
        _ => {
            let d = inode.dev.get();
            (libc::major(d), libc::minor(d))
        }
    }
}

/// Entry `i` of index node `node`. Anything else is a simulator bug and stops the machine:
/// a stray write would land in a frame that is someone else's, perhaps mapped by the process.
fn entry(phys: &PhysMem, node: usize, i: usize) -> *mut u32 {
    if i >= FANOUT || !phys.page(node).has(PG_RADIX) {
        crate::util::bug("shmem: not an entry of an index node", node, i);
    }
    (phys.frame(node) as *mut u32).wrapping_add(i)
}

fn get(phys: &PhysMem, node: usize, i: usize) -> usize {
    // SAFETY: `entry` checked that `node` is an index frame, which only this module touches,
    // under the machine lock, and that `i < FANOUT`: an aligned u32 inside that frame.
    unsafe { entry(phys, node, i).read() as usize }
}

fn put(phys: &PhysMem, node: usize, i: usize, v: usize) {
    // SAFETY: as in `get`.
    unsafe { entry(phys, node, i).write(v as u32) }
}

const _: () = assert!(FANOUT * core::mem::size_of::<u32>() == PAGE_SIZE);

fn digits(index: usize) -> [usize; 3] {
    [index >> (2 * FANOUT_BITS), (index >> FANOUT_BITS) & (FANOUT - 1), index & (FANOUT - 1)]
}

/// Make an inode of `kind` and `size_pages` pages with one reference.
pub fn new_inode(
    slab: &mut Slab,
    phys: &mut PhysMem,
    kind: u32,
    ino: u64,
    size_pages: usize,
) -> Result<InodePtr, Errno> {
    let addr = slab.alloc(phys, CACHE_INODE)?;
    // SAFETY: a fresh, zeroed Inode-sized object of the inode cache.
    let inode: InodePtr = unsafe { KPtr::from_addr(addr) };
    inode.refcount.set(1);
    inode.kind.set(kind);
    inode.ino.set(ino);
    inode.size_pages.set(size_pages);
    Ok(inode)
}

/// The cached page at `index`, if any.
pub fn find_page(phys: &PhysMem, inode: &Inode, index: usize) -> Option<usize> {
    if index >= MAX_INODE_PAGES {
        return None;
    }
    let mut node = inode.root.get();
    for d in digits(index) {
        if node == 0 {
            return None;
        }
        node = get(phys, node, d);
    }
    (node != 0).then_some(node)
}

/// Put frame `new` in the index at `index` in place of the page there (a migration's
/// `folio_migrate_mapping`: the page moved, its place in the file did not).
pub fn replace_page(phys: &PhysMem, inode: &Inode, index: usize, new: usize) {
    let [a, b, c] = digits(index);
    let root = inode.root.get();
    let mid = if root == 0 { 0 } else { get(phys, root, a) };
    let leaf = if mid == 0 { 0 } else { get(phys, mid, b) };
    if leaf == 0 || get(phys, leaf, c) == 0 {
        crate::util::bug("shmem: replacing a page not in the index", index, new);
    }
    put(phys, leaf, c, new);
}

/// The page at `index`, allocating a zeroed one into the cache if there is none.
pub fn get_page(phys: &mut PhysMem, inode: &Inode, index: usize) -> Result<usize, Errno> {
    if let Some(pfn) = find_page(phys, inode, index) {
        return Ok(pfn);
    }
    add_to_page_cache(phys, inode, index)
}

/// A zeroed page put into the cache at `index`, where there is none.
pub fn add_to_page_cache(phys: &mut PhysMem, inode: &Inode, index: usize) -> Result<usize, Errno> {
    if index >= MAX_INODE_PAGES {
        return Err(Errno(libc::EFBIG));
    }
    let [a, b, c] = digits(index);
    let mut root = inode.root.get();
    if root == 0 {
        root = new_node(phys)?;
        inode.root.set(root);
    }
    let mut mid = get(phys, root, a);
    if mid == 0 {
        mid = new_node(phys)?;
        put(phys, root, a, mid);
    }
    let mut leaf = get(phys, mid, b);
    if leaf == 0 {
        leaf = new_node(phys)?;
        put(phys, mid, b, leaf);
    }
    let pfn = phys.alloc_pages(0, true, crate::buddy::MIGRATE_MOVABLE)?;
    let p = phys.page(pfn);
    p.set(if inode.is_shmem() { PG_SWAPBACKED | PG_DIRTY } else { PG_FILE });
    p.mapping.set(inode as *const Inode as usize);
    p.index.set(index as u64);
    put(phys, leaf, c, pfn);
    inode.nr_pages.set(inode.nr_pages.get() + 1);
    if inode.is_shmem() {
        phys.vmstat.nr_shmem += 1;
    }
    phys.vmstat.nr_file_pages += 1;
    // A regular file's page goes on the file LRU (shmem pages are never reclaimed here).
    phys.lru_add(pfn);
    Ok(pfn)
}

/// The first cached page at an index in `[from, end)`: its index and frame.
pub fn next_page(phys: &PhysMem, inode: &Inode, from: usize, end: usize) -> Option<(usize, usize)> {
    next_entry(phys, inode, from, end).map(|(index, _, _, pfn)| (index, pfn))
}

/// As `next_page`, with the leaf index node and slot that hold the page, skipping absent
/// index nodes whole.
fn next_entry(
    phys: &PhysMem,
    inode: &Inode,
    from: usize,
    end: usize,
) -> Option<(usize, usize, usize, usize)> {
    let root = inode.root.get();
    if root == 0 {
        return None;
    }
    let end = end.min(MAX_INODE_PAGES);
    let mut index = from;
    while index < end {
        let [a, b, c] = digits(index);
        let mid = get(phys, root, a);
        if mid == 0 {
            index = (index | ((1 << (2 * FANOUT_BITS)) - 1)) + 1;
            continue;
        }
        let leaf = get(phys, mid, b);
        if leaf == 0 {
            index = (index | (FANOUT - 1)) + 1;
            continue;
        }
        let pfn = get(phys, leaf, c);
        if pfn != 0 {
            return Some((index, leaf, c, pfn));
        }
        index += 1;
    }
    None
}

fn new_node(phys: &mut PhysMem) -> Result<usize, Errno> {
    // Linux's index nodes come from a slab cache of reclaimable objects.
    let pfn = phys.alloc_pages(0, true, crate::buddy::MIGRATE_RECLAIMABLE)?;
    phys.page(pfn).set(PG_RADIX);
    Ok(pfn)
}

/// Drop the cached pages at indices `[start, end)` back to the buddy allocator. They must
/// be mapped nowhere (checked); a later fault finds a fresh zeroed page instead.
///
/// # Safety
/// The range rule (see `Machine`) for the user memory of every mapping of those pages
/// that is left: their contents are gone.
pub unsafe fn truncate_range(phys: &mut PhysMem, inode: &Inode, start: usize, end: usize) {
    let mut from = start;
    while let Some((index, leaf, slot, pfn)) = next_entry(phys, inode, from, end) {
        put(phys, leaf, slot, 0);
        // SAFETY: just taken out of the index; the caller gives up its contents.
        unsafe { release_cache_page(phys, inode, pfn) };
        from = index + 1;
    }
}

/// Free page-cache page `pfn` of `inode`, taken out of its index.
///
/// # Safety
/// As for `truncate_range`, for that page.
unsafe fn release_cache_page(phys: &mut PhysMem, inode: &Inode, pfn: usize) {
    if phys.page(pfn).mapcount.get() != 0 {
        crate::util::bug("shmem: dropping a mapped page", pfn, phys.page(pfn).mapcount.get() as usize);
    }
    if phys.page(pfn).has(PG_DIRTY) && !inode.is_shmem() {
        inode.nr_dirty.set(inode.nr_dirty.get() - 1);
        phys.vmstat.nr_dirty -= 1;
    }
    inode.nr_pages.set(inode.nr_pages.get() - 1);
    if inode.is_shmem() {
        phys.vmstat.nr_shmem -= 1;
    }
    phys.vmstat.nr_file_pages -= 1;
    // SAFETY: no PTE maps the page (checked above), the index no longer holds it, and the
    // caller gives up its contents; nothing else reaches a page-cache page (a stale host
    // view of another process aside, for which it waits: `free_user_page`).
    unsafe { phys.free_user_page(pfn) };
}

/// Free every page and index frame of an inode and the inode itself (its last reference
/// is gone). Returns the pages it had charged to the commit limit.
///
/// # Safety
/// No VMA maps the inode any more, and the free rule (see `kptr`) for it: no `KPtr` to
/// it is used afterwards.
pub unsafe fn evict_inode(slab: &mut Slab, phys: &mut PhysMem, inode: InodePtr) -> usize {
    if inode.is_reg() {
        // Nothing maps the pages any more, so none can be dirtied while they are written.
        // An error cannot be reported to anyone now (Linux logs it and drops the pages).
        let _ = crate::page_writeback::write_dirty_pages(phys, &inode, 0, MAX_INODE_PAGES);
    }
    // SAFETY: no VMA maps the inode, so no user memory is backed by its pages.
    unsafe { truncate_range(phys, &inode, 0, MAX_INODE_PAGES) };
    if inode.is_host() {
        crate::file::release_host_fds(&inode);
    }
    if inode.name.get() != 0 {
        // SAFETY: the inode's names_cache object, freed only here, with the inode.
        unsafe { slab.free(phys, CACHE_NAMES, inode.name.get()) };
    }
    let root = inode.root.get();
    if root != 0 {
        for a in 0..FANOUT {
            let mid = get(phys, root, a);
            if mid == 0 {
                continue;
            }
            for b in 0..FANOUT {
                let leaf = get(phys, mid, b);
                if leaf != 0 {
                    // SAFETY: an index frame of this inode, reached only through its index,
                    // which goes with it.
                    unsafe { phys.free_pages(leaf, 0) };
                }
            }
            // SAFETY: as for the leaves.
            unsafe { phys.free_pages(mid, 0) };
        }
        // SAFETY: as for the leaves.
        unsafe { phys.free_pages(root, 0) };
    }
    let charged = inode.charged.get();
    // SAFETY: an object of the inode cache (new_inode's), and the caller's promise that no
    // KPtr to it is used afterwards.
    unsafe { slab.free(phys, CACHE_INODE, inode.addr()) };
    charged
}
