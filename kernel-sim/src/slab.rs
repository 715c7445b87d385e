//! A small slab allocator for the kernel's own objects (VMAs, anon_vmas, inodes), and
//! `kmalloc` on it (`mm/slab_common.c`): the size classes `kmalloc-8` … `kmalloc-8k`, larger
//! requests straight from the buddy allocator (`kmalloc_large`), `kfree` for both.
//!
//! Each cache carves buddy blocks ("slabs": one page, two for `kmalloc-8k`) into equal
//! objects and reaches them through the direct map; every page of a slab names its cache
//! and its first page (`index`). A slab's free objects form a chain of object indices kept in
//! the objects themselves; the slab's descriptor in `mem_map` holds the chain's head and
//! the count in use. Slabs sit on one of three lists per cache — partial, full, empty — and
//! a cache keeps at most `MIN_PARTIAL` empty slabs before returning pages to the buddy
//! allocator (as SLUB's `min_partial` does). An object's slab is found from its address
//! alone: direct-map address → frame → descriptor.

use crate::check::{fail, CheckError};
use crate::page::{get_order, NIL, PAGE_SIZE, PG_LARGE_KMALLOC, PG_SLAB};
use crate::physmem::PhysMem;
use crate::Errno;

pub const CACHE_VMA: usize = 0;
pub const CACHE_ANON_VMA: usize = 1;
pub const CACHE_INODE: usize = 2;
/// Names of host files (Linux's `names_cache`, here `shmem::NAME_MAX_BYTES` an object).
pub const CACHE_NAMES: usize = 3;
/// The first of the `kmalloc-*` caches, one per size of `KMALLOC_SIZES`.
pub const CACHE_KMALLOC: usize = 4;
pub const KMALLOC_SIZES: [usize; 13] = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];
const KMALLOC_NAMES: [&str; 13] = [
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-32",
    "kmalloc-64",
    "kmalloc-96",
    "kmalloc-128",
    "kmalloc-192",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1k",
    "kmalloc-2k",
    "kmalloc-4k",
    "kmalloc-8k",
];
/// `KMALLOC_MAX_CACHE_SIZE`: larger requests take whole pages.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;
/// What `kmalloc(0)` returns (`ZERO_SIZE_PTR`): not null, never dereferenced.
pub const ZERO_SIZE_PTR: usize = 16;
pub const NR_CACHES: usize = CACHE_KMALLOC + KMALLOC_SIZES.len();

const MIN_PARTIAL: usize = 5;

#[derive(Clone, Debug)]
pub struct KmemCache {
    pub name: &'static str,
    pub object_size: usize,
    pub objects_per_slab: usize,
    /// Each slab is a buddy block of this order.
    pub order: usize,
    partial: u32,
    full: u32,
    empty: u32,
    pub nr_empty: usize,
    pub nr_slabs: usize,
    pub active_objs: usize,
}

impl KmemCache {
    pub fn new(name: &'static str, size: usize) -> KmemCache {
        let object_size = size.max(8).next_multiple_of(8);
        let order = get_order(object_size);
        KmemCache {
            name,
            object_size,
            objects_per_slab: (PAGE_SIZE << order) / object_size,
            order,
            partial: NIL,
            full: NIL,
            empty: NIL,
            nr_empty: 0,
            nr_slabs: 0,
            active_objs: 0,
        }
    }

    pub fn total_objs(&self) -> usize {
        self.nr_slabs * self.objects_per_slab
    }
}

pub struct Slab {
    caches: [KmemCache; NR_CACHES],
    n: usize,
}

fn list_add(phys: &PhysMem, head: &mut u32, pfn: usize) {
    let p = phys.page(pfn);
    p.prev.set(NIL);
    p.next.set(*head);
    if *head != NIL {
        phys.page(*head as usize).prev.set(pfn as u32);
    }
    *head = pfn as u32;
}

fn list_del(phys: &PhysMem, head: &mut u32, pfn: usize) {
    let p = phys.page(pfn);
    let (next, prev) = (p.next.get(), p.prev.get());
    if prev == NIL {
        *head = next;
    } else {
        phys.page(prev as usize).next.set(next);
    }
    if next != NIL {
        phys.page(next as usize).prev.set(prev);
    }
    p.next.set(NIL);
    p.prev.set(NIL);
}

/// The free-chain link kept in the first word of a free object.
///
/// # Safety
/// `addr` is an object of a slab (one of the first `objects_per_slab` slots of a `PG_SLAB`
/// frame, so in the direct map, 8-byte aligned and at least 8 bytes long) that is free or
/// being freed: nothing else uses its bytes.
#[inline]
unsafe fn read_link(addr: usize) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { (addr as *const u32).read() }
}

/// Set the free-chain link of a free object.
///
/// # Safety
/// As for `read_link`.
#[inline]
unsafe fn write_link(addr: usize, v: u32) {
    // SAFETY: the caller's promise.
    unsafe { (addr as *mut u32).write(v) }
}

impl Slab {
    /// Caches of these names and object sizes, at ids 0, 1, ...
    pub fn new(sizes: &[(&'static str, usize)]) -> Slab {
        let mut caches = core::array::from_fn(|_| KmemCache::new("", 8));
        for (c, &(name, size)) in caches.iter_mut().zip(sizes) {
            *c = KmemCache::new(name, size);
        }
        Slab { caches, n: sizes.len().min(NR_CACHES) }
    }

    /// The caches the simulated kernel allocates from, at `CACHE_VMA`, `CACHE_ANON_VMA`,
    /// `CACHE_INODE`, `CACHE_NAMES` and the `kmalloc-*` ones from `CACHE_KMALLOC`, named as
    /// `/proc/slabinfo` names Linux's.
    pub fn kernel_caches() -> Slab {
        let mut sizes = [("", 0usize); NR_CACHES];
        sizes[CACHE_VMA] = ("vm_area_struct", core::mem::size_of::<crate::mm::Vma>());
        sizes[CACHE_ANON_VMA] = ("anon_vma", core::mem::size_of::<crate::mm::AnonVma>());
        sizes[CACHE_INODE] = ("shmem_inode_cache", core::mem::size_of::<crate::shmem::Inode>());
        sizes[CACHE_NAMES] = ("names_cache", crate::shmem::NAME_MAX_BYTES);
        for (i, (&size, &name)) in KMALLOC_SIZES.iter().zip(&KMALLOC_NAMES).enumerate() {
            sizes[CACHE_KMALLOC + i] = (name, size);
        }
        Slab::new(&sizes)
    }

    /// The caches in use.
    pub fn caches(&self) -> &[KmemCache] {
        &self.caches[..self.n]
    }

    /// `kmalloc`: a zeroed object of at least `size` bytes, from the smallest `kmalloc-*`
    /// cache that fits; beyond 8 KiB, whole zeroed pages from the buddy allocator
    /// (`kmalloc_large`, counted as unreclaimable slab as Linux counts them).
    /// `kmalloc(0)` is `ZERO_SIZE_PTR`.
    pub fn kmalloc(&mut self, phys: &mut PhysMem, size: usize) -> Result<usize, Errno> {
        if size == 0 {
            return Ok(ZERO_SIZE_PTR);
        }
        if size <= KMALLOC_MAX_CACHE_SIZE {
            let i = KMALLOC_SIZES.iter().position(|&s| s >= size).unwrap_or(KMALLOC_SIZES.len() - 1);
            return self.alloc(phys, CACHE_KMALLOC + i);
        }
        let order = get_order(size);
        let pfn = phys.alloc_pages(order, true, crate::buddy::MIGRATE_UNMOVABLE)?;
        phys.page(pfn).set(PG_LARGE_KMALLOC);
        phys.vmstat.nr_slab_unreclaimable += 1 << order;
        Ok(phys.frame(pfn) as usize)
    }

    /// `kfree` of what `kmalloc` returned (null and `ZERO_SIZE_PTR` do nothing).
    ///
    /// # Safety
    /// As for `free`: nothing uses the object afterwards.
    pub unsafe fn kfree(&mut self, phys: &mut PhysMem, addr: usize) {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return;
        }
        let pfn = phys.virt_to_pfn(addr);
        let p = phys.page(pfn);
        if p.has(PG_SLAB) {
            let id = p.slab_cache.get() as usize;
            if id < CACHE_KMALLOC {
                crate::util::bug("kfree of an object of a named cache", addr, id);
            }
            // SAFETY: the caller's promise.
            unsafe { self.free(phys, id, addr) };
        } else if p.has(PG_LARGE_KMALLOC) && addr.is_multiple_of(PAGE_SIZE) {
            let order = p.order.get() as usize;
            p.clear(PG_LARGE_KMALLOC);
            phys.vmstat.nr_slab_unreclaimable -= 1 << order;
            // SAFETY: the caller's promise; the block is the one kmalloc_large took.
            unsafe { phys.free_pages(pfn, order) };
        } else {
            crate::util::bug("kfree of memory kmalloc did not give", addr, pfn);
        }
    }

    /// A zeroed object from cache `id`, as a direct-map address.
    pub fn alloc(&mut self, phys: &mut PhysMem, id: usize) -> Result<usize, Errno> {
        let c = &mut self.caches[id];
        let n = c.objects_per_slab;
        if c.partial == NIL {
            if c.empty != NIL {
                let pfn = c.empty as usize;
                list_del(phys, &mut c.empty, pfn);
                c.nr_empty -= 1;
                list_add(phys, &mut c.partial, pfn);
            } else {
                let pfn = phys.alloc_pages(c.order, false, crate::buddy::MIGRATE_UNMOVABLE)?;
                let base = phys.frame(pfn) as usize;
                for i in 0..1usize << c.order {
                    let q = phys.page(pfn + i);
                    q.set(PG_SLAB);
                    q.slab_cache.set(id as u16);
                    q.index.set(pfn as u64);
                }
                let p = phys.page(pfn);
                p.inuse.set(0);
                p.freelist.set(0);
                for i in 0..n {
                    let next = if i + 1 < n { (i + 1) as u32 } else { NIL };
                    // SAFETY: slot `i < n` of the new slab, which no one else has yet.
                    unsafe { write_link(base + i * c.object_size, next) };
                }
                list_add(phys, &mut c.partial, pfn);
                c.nr_slabs += 1;
                phys.vmstat.nr_slab_unreclaimable += 1 << c.order;
            }
        }
        let pfn = c.partial as usize;
        let base = phys.frame(pfn) as usize;
        let p = phys.page(pfn);
        let idx = p.freelist.get();
        if idx == NIL || idx as usize >= n {
            crate::util::bug("slab: partial slab without a free object", pfn, idx as usize);
        }
        let addr = base + idx as usize * c.object_size;
        // SAFETY: slot `idx < n` of the slab, the head of its free chain.
        p.freelist.set(unsafe { read_link(addr) });
        p.inuse.set(p.inuse.get() + 1);
        if p.inuse.get() as usize == n {
            list_del(phys, &mut c.partial, pfn);
            list_add(phys, &mut c.full, pfn);
        }
        c.active_objs += 1;
        // SAFETY: the object now belongs to the caller; zero its bytes.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, c.object_size) };
        Ok(addr)
    }

    /// Return an object that `alloc(.., id)` gave out (`kmem_cache_free`). Its slot is
    /// checked to be one of this cache's; that it is in use is checked in debug builds.
    ///
    /// # Safety
    /// The free rule (see `kptr`): no `KPtr` or reference to the object is used afterwards.
    /// Its slot holds the free-chain link from now on, and is another object's once it is
    /// allocated again; its slab page may go back to the buddy allocator.
    pub unsafe fn free(&mut self, phys: &mut PhysMem, id: usize, addr: usize) {
        let c = &mut self.caches[id];
        let n = c.objects_per_slab;
        let pfn = phys.virt_to_pfn(addr);
        if !phys.page(pfn).has(PG_SLAB) {
            crate::util::bug("slab: freeing an object not from a slab", addr, id);
        }
        // The slab's first page, whichever of its pages the object lies in.
        let pfn = phys.page(pfn).index.get() as usize;
        let base = phys.frame(pfn) as usize;
        let p = phys.page(pfn);
        if !p.has(PG_SLAB)
            || p.slab_cache.get() as usize != id
            || !(addr - base).is_multiple_of(c.object_size)
            || (addr - base) / c.object_size >= n
        {
            crate::util::bug("slab: freeing an object not from this cache", addr, id);
        }
        let idx = ((addr - base) / c.object_size) as u32;
        if cfg!(debug_assertions) {
            let mut i = p.freelist.get();
            let mut steps = 0;
            while i != NIL && steps <= n {
                if i == idx {
                    crate::util::bug("slab: double free", addr, id);
                }
                if i as usize >= n {
                    crate::util::bug("slab: free chain corrupt", pfn, i as usize);
                }
                // SAFETY: slot `i < n` of the slab, on its free chain.
                i = unsafe { read_link(base + i as usize * c.object_size) };
                steps += 1;
            }
        }
        let was_full = p.inuse.get() as usize == n;
        // SAFETY: `addr` was checked above to be a slot `< n` of a slab of this cache, and
        // the caller is giving it back, promising nothing uses it any more.
        unsafe { write_link(addr, p.freelist.get()) };
        p.freelist.set(idx);
        p.inuse.set(p.inuse.get() - 1);
        c.active_objs -= 1;
        if was_full {
            list_del(phys, &mut c.full, pfn);
            list_add(phys, &mut c.partial, pfn);
        }
        if p.inuse.get() == 0 {
            list_del(phys, &mut c.partial, pfn);
            list_add(phys, &mut c.empty, pfn);
            c.nr_empty += 1;
            if c.nr_empty > MIN_PARTIAL {
                let victim = c.empty as usize;
                list_del(phys, &mut c.empty, victim);
                c.nr_empty -= 1;
                c.nr_slabs -= 1;
                phys.vmstat.nr_slab_unreclaimable -= 1 << c.order;
                for i in 0..1usize << c.order {
                    let v = phys.page(victim + i);
                    v.clear(PG_SLAB);
                    v.slab_cache.set(0);
                }
                // SAFETY: an empty slab: every object on it was freed, under the free rule,
                // so nothing uses its frames, which only the direct map reaches.
                unsafe { phys.free_pages(victim, c.order) };
            }
        }
    }

    /// Every slab on the list its use says, free chains of the right length, counts right.
    pub fn check(&self, phys: &PhysMem) -> Result<(), CheckError> {
        for (id, c) in self.caches().iter().enumerate() {
            let n = c.objects_per_slab;
            let mut slabs = 0;
            let mut active = 0;
            for (list, kind) in [(c.partial, 1), (c.full, 2), (c.empty, 0)] {
                let mut pfn = list;
                while pfn != NIL {
                    let f = pfn as usize;
                    let p = phys.page(f);
                    if !p.has(PG_SLAB) || p.slab_cache.get() as usize != id {
                        return fail("slab list holds a frame of another cache", f, id);
                    }
                    let inuse = p.inuse.get() as usize;
                    let right_list = match kind {
                        0 => inuse == 0,
                        1 => inuse > 0 && inuse < n,
                        _ => inuse == n,
                    };
                    if !right_list {
                        return fail("slab on the wrong list for its use", f, inuse);
                    }
                    for t in f..f + (1usize << c.order) {
                        let q = phys.page(t);
                        if !q.has(PG_SLAB) || q.slab_cache.get() as usize != id || q.index.get() as usize != f
                        {
                            return fail("slab page not naming its cache and first page", t, id);
                        }
                    }
                    let base = phys.frame(f) as usize;
                    let mut free = 0;
                    let mut i = p.freelist.get();
                    while i != NIL {
                        if i as usize >= n || free > n {
                            return fail("slab free chain corrupt", f, i as usize);
                        }
                        free += 1;
                        // SAFETY: slot `i < n` (checked above) of this slab, on its free chain.
                        i = unsafe { read_link(base + i as usize * c.object_size) };
                    }
                    if free + inuse != n {
                        return fail("slab free chain length wrong", f, free);
                    }
                    slabs += 1;
                    active += inuse;
                    if slabs > phys.nr_frames() {
                        return fail("slab list loops", id, slabs);
                    }
                    pfn = p.next.get();
                }
            }
            if slabs != c.nr_slabs || active != c.active_objs {
                return fail("slab cache counters wrong", slabs, active);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
