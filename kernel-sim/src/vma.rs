//! Making, merging, splitting, growing and removing VMAs (Linux's `mm/vma.c`), and the VMA,
//! anon_vma and inode objects they work with (which Linux keeps in `vma_init.c`, `rmap.c`
//! and the VFS).
//!
//! Merge rules, as Linux applies them to anonymous memory: two neighbouring ranges merge
//! when their flags are equal (ignoring `VM_SOFTDIRTY`), they map the same file (or both
//! none), their page offsets continue each other, and their anon_vmas are compatible — equal,
//! or at least one of them has none yet. A VMA gets an anon_vma when it first needs an
//! anonymous page (a write fault), possibly borrowing a neighbour's (`anon_vma_prepare`).
//! So two adjacent private mappings that were each written separately do not merge, while
//! a never-written one merges with a written neighbour. When merging with both neighbours,
//! the two neighbours' anon_vmas must also be compatible with each other.
//!
//! * `vma_merge_new_range` — a new range (mmap, brk, mremap) joins the VMA before it, the
//!   one after it, or both.
//! * `vma_modify` — changing the flags of part of a VMA (mprotect, madvise) merges the part
//!   into a neighbour if it can, and otherwise splits it off.
//! * `split_vma` — one VMA becomes two at an address.
//! * `do_munmap` — splits at the ends and removes every VMA in between.
//! * `mmap_region` — a new mapping: charged to the commit limit if it is writable and
//!   private, given a shmem inode if it is shared, replacing whatever a `MAP_FIXED` mapping
//!   overlaps, and merged into a neighbour or linked as a VMA of its own.
//! * `do_brk_flags` — the heap grows: its VMA is extended, or a new one linked.
//! * `expand_downwards` — a stack VMA grows down to a faulting address, within the stack
//!   rlimit and clear of the guard gap, and is charged for it.
//! * `copy_vma` — the VMA at the destination of an `mremap` move.
//! * `anon_vma_prepare` — a VMA gets its anon_vma before its first anonymous page.
//!
//! Each takes the address space and a [`VmaEnv`], not the machine's whole state: the tests
//! run them on physical memory, slab caches and an `Mm` of their own, with no machine.
//!
//! Those that can free a VMA — an unmap, or a merge that absorbs a neighbour — are
//! `unsafe fn`s under the free rule (see `kptr`): no `KPtr` to a VMA they remove is used
//! afterwards. A VMA an unmap splits is removed too (its parts outside the range are new
//! objects), and a merge keeps the VMA it returns. Those that unmap or discard pages also
//! carry the range rule (see `Machine`) for that memory.

use crate::kptr::KPtr;
use crate::mm::{
    is_data_mapping, is_exec_mapping, is_stack_mapping, AnonVma, Mm, VmFlags, VmaPtr, STACK_GUARD_GAP,
    VM_ACCESS_FLAGS, VM_ACCOUNT, VM_DATA_DEFAULT_FLAGS, VM_GROWSDOWN, VM_LOCKED, VM_NORESERVE, VM_SHARED,
    VM_SOFTDIRTY, VM_WRITE,
};
use crate::mmu::Host;
use crate::overcommit::VmSysctl;
use crate::page::{offset_in_page, page_align, PAGE_MASK, PAGE_SHIFT};
use crate::physmem::PhysMem;
use crate::shmem::InodePtr;
use crate::slab::{Slab, CACHE_ANON_VMA, CACHE_VMA};
use crate::Errno;

pub type AnonVmaPtr = KPtr<AnonVma>;

/// What the VMA layer uses besides the address space: frames and slab objects for VMAs,
/// anon_vmas and inodes, the commit charge and `max_map_count`, the host MMU that an unmap
/// updates, and the inode numbers. Linux's `mm/vma.c` reaches these as globals, which its
/// user-space tests stub out; here they are borrowed from the machine (`State::vma_env`),
/// so a test can hand the VMA layer its own and leave the rest of the machine out.
pub(crate) struct VmaEnv<'a> {
    pub phys: &'a mut PhysMem,
    pub slab: &'a mut Slab,
    pub sys: &'a mut VmSysctl,
    pub host: Host,
    pub next_ino: &'a mut u64,
    /// The machine's host inodes, which an inode's last reference takes it off.
    pub sb: &'a mut crate::shmem::SuperBlock,
}

impl VmaEnv<'_> {
    /// A fresh inode number (`get_next_ino`).
    pub fn get_next_ino(&mut self) -> u64 {
        *self.next_ino += 1;
        *self.next_ino
    }

    /// Charge `pages` to the commit limit for a process of `mm`'s size.
    fn vm_enough_memory(&mut self, mm: &Mm, pages: usize) -> Result<(), Errno> {
        let ram = self.phys.totalram_pages();
        self.sys.vm_enough_memory(pages, ram, mm.total_vm)
    }
}

/// A VMA that does not exist yet, or the new state of part of one (Linux's
/// `vma_merge_struct`).
#[derive(Clone, Copy, Debug)]
pub struct VmaDesc {
    pub start: usize,
    pub end: usize,
    pub flags: VmFlags,
    pub pgoff: usize,
    pub file: Option<InodePtr>,
    pub anon: Option<AnonVmaPtr>,
}

impl VmaDesc {
    fn pages(&self) -> usize {
        (self.end - self.start) >> PAGE_SHIFT
    }
}

pub(crate) fn vm_area_alloc(env: &mut VmaEnv) -> Result<VmaPtr, Errno> {
    let addr = env.slab.alloc(env.phys, CACHE_VMA)?;
    // SAFETY: a fresh zeroed object of the VMA cache; Vma is all Cells and zero is a valid
    // (empty, unlinked) VMA.
    Ok(unsafe { KPtr::from_addr(addr) })
}

/// Free a VMA that is not in the tree, dropping its references.
///
/// # Safety
/// `v` is in no tree or list, and the free rule (see `kptr`) for it and for the anon_vma
/// and inode whose last reference it holds: no `KPtr` to them is used afterwards.
pub(crate) unsafe fn vm_area_free(env: &mut VmaEnv, v: VmaPtr) {
    // SAFETY: the caller's promise covers the anon_vma if this was its last reference.
    unsafe { set_anon_vma(env, v, None) };
    if let Some(f) = v.file() {
        v.vm_file.set(None);
        // SAFETY: as for the anon_vma.
        unsafe { inode_put(env, f) };
    }
    // SAFETY: a VMA-cache object (vm_area_alloc's), unlinked, and the caller's promise
    // that no KPtr to it is used afterwards.
    unsafe { env.slab.free(env.phys, CACHE_VMA, v.addr()) };
}

/// A copy of `v` (not linked), holding its own references.
pub(crate) fn vm_area_dup(env: &mut VmaEnv, v: VmaPtr) -> Result<VmaPtr, Errno> {
    let n = vm_area_alloc(env)?;
    n.vm_start.set(v.start());
    n.vm_end.set(v.end());
    n.vm_flags.set(v.flags());
    n.vm_pgoff.set(v.pgoff());
    n.vm_special.set(v.vm_special.get());
    // SAFETY: `n` is new and has no anon_vma, so no reference is dropped.
    unsafe { set_anon_vma(env, n, v.anon()) };
    if let Some(f) = v.file() {
        f.refcount.set(f.refcount.get() + 1);
        n.vm_file.set(Some(f));
    }
    Ok(n)
}

/// Point `v` at `av`, moving the reference counts; an anon_vma that loses its last
/// reference is freed.
///
/// # Safety
/// If `v` had an anon_vma other than `av` and held its last reference, the free rule (see
/// `kptr`) for it: no `KPtr` to it is used afterwards.
pub(crate) unsafe fn set_anon_vma(env: &mut VmaEnv, v: VmaPtr, av: Option<AnonVmaPtr>) {
    if KPtr::ptr_eq(v.anon(), av) {
        return;
    }
    if let Some(a) = av {
        a.refcount.set(a.refcount.get() + 1);
    }
    if let Some(old) = v.anon() {
        let n = old.refcount.get() - 1;
        old.refcount.set(n);
        if n == 0 {
            // SAFETY: an anon_vma-cache object (anon_vma_alloc's) that no VMA points to any
            // more (the reference counts say), and the caller's promise for other KPtrs.
            unsafe { env.slab.free(env.phys, CACHE_ANON_VMA, old.addr()) };
        }
    }
    v.anon_vma.set(av);
}

pub(crate) fn anon_vma_alloc(mm: &mut Mm, env: &mut VmaEnv) -> Result<AnonVmaPtr, Errno> {
    let addr = env.slab.alloc(env.phys, CACHE_ANON_VMA)?;
    // SAFETY: a fresh zeroed object of the anon_vma cache.
    let av: AnonVmaPtr = unsafe { KPtr::from_addr(addr) };
    av.id.set(mm.next_anon_vma_id);
    mm.next_anon_vma_id += 1;
    Ok(av)
}

/// The anon_vma of a neighbour that `vma` could merge with but for its access rights
/// (`find_mergeable_anon_vma`): sharing it keeps a later mprotect able to merge them.
fn find_mergeable_anon_vma(vma: VmaPtr) -> Option<AnonVmaPtr> {
    let compatible = |a: VmaPtr, b: VmaPtr| {
        a.end() == b.start()
            && KPtr::ptr_eq(a.file(), b.file())
            && (a.flags() ^ b.flags()) & !(VM_ACCESS_FLAGS | VM_SOFTDIRTY) == 0
            && b.pgoff() == a.pgoff() + ((b.start() - a.start()) >> PAGE_SHIFT)
    };
    vma.next()
        .filter(|n| compatible(vma, *n))
        .and_then(|n| n.anon())
        .or_else(|| vma.prev().filter(|p| compatible(*p, vma)).and_then(|p| p.anon()))
}

/// Give `vma` an anon_vma before its first anonymous page: a compatible neighbour's if
/// there is one, else a new one.
pub(crate) fn anon_vma_prepare(mm: &mut Mm, env: &mut VmaEnv, vma: VmaPtr) -> Result<(), Errno> {
    if vma.anon().is_some() {
        return Ok(());
    }
    let av = match find_mergeable_anon_vma(vma) {
        Some(av) => av,
        None => anon_vma_alloc(mm, env)?,
    };
    // SAFETY: `vma` has no anon_vma (checked above), so no reference is dropped.
    unsafe { set_anon_vma(env, vma, Some(av)) };
    Ok(())
}

/// Drop a reference to an inode; the last one frees it and its page cache.
///
/// # Safety
/// If this is the last reference, the free rule (see `kptr`) for `f`: no `KPtr` to it is
/// used afterwards.
pub(crate) unsafe fn inode_put(env: &mut VmaEnv, f: InodePtr) {
    let n = f.refcount.get() - 1;
    f.refcount.set(n);
    if n == 0 {
        if f.is_host() {
            env.sb.remove(f);
        }
        // SAFETY: the last reference: no VMA maps the inode and no file holds it (the count
        // is of its VMAs and open files, plus new_inode's own while a mapping is made), and
        // the caller's promise for KPtrs.
        let charged = unsafe { crate::shmem::evict_inode(env.slab, env.phys, f) };
        env.sys.vm_unacct_memory(charged);
    }
}

fn is_mergeable_anon_vma(a: Option<AnonVmaPtr>, b: Option<AnonVmaPtr>) -> bool {
    a.is_none() || b.is_none() || a == b
}

fn is_mergeable_vma(v: VmaPtr, d: &VmaDesc) -> bool {
    (v.flags() ^ d.flags) & !VM_SOFTDIRTY == 0
        && KPtr::ptr_eq(v.file(), d.file)
        && (v.flags() | d.flags) & crate::mm::VM_SPECIAL == 0
        && v.vm_special.get() == 0
}

/// `d` may go just below `next` and merge into it.
fn can_vma_merge_before(d: &VmaDesc, next: VmaPtr) -> bool {
    is_mergeable_vma(next, d)
        && is_mergeable_anon_vma(d.anon, next.anon())
        && next.pgoff() == d.pgoff + d.pages()
}

/// `d` may go just above `prev` and merge into it.
fn can_vma_merge_after(d: &VmaDesc, prev: VmaPtr) -> bool {
    is_mergeable_vma(prev, d)
        && is_mergeable_anon_vma(d.anon, prev.anon())
        && prev.pgoff() + prev.pages() == d.pgoff
}

/// `dst` takes `src`'s anon_vma if it has none (`dup_anon_vma`): pages that move into
/// `dst` were faulted under it.
fn dup_anon_vma(env: &mut VmaEnv, dst: VmaPtr, src: Option<AnonVmaPtr>) {
    if dst.anon().is_none() && src.is_some() {
        // SAFETY: `dst` has no anon_vma, so no reference is dropped.
        unsafe { set_anon_vma(env, dst, src) };
    }
}

/// Remove `v` from the tree and free it.
///
/// # Safety
/// `v` is in `mm`'s tree, and the free rule (see `kptr`) for it.
unsafe fn remove_vma(mm: &mut Mm, env: &mut VmaEnv, v: VmaPtr) {
    mm.vmas.erase(v);
    // SAFETY: just taken out of the tree; the caller's promise for the rest.
    unsafe { vm_area_free(env, v) };
}

/// Try to make `[d.start, d.end)` part of `prev` and/or `next` instead of a VMA of its
/// own. `prev` and `next` are the VMAs around the (empty) range; with `just_expand` only
/// `prev` is considered (brk). Returns the VMA that now covers the range.
///
/// # Safety
/// The free rule (see `kptr`) for `next`, which `prev` absorbs when the range joins both
/// (never with `just_expand`).
pub(crate) unsafe fn vma_merge_new_range(
    mm: &mut Mm,
    env: &mut VmaEnv,
    prev: Option<VmaPtr>,
    next: Option<VmaPtr>,
    d: &VmaDesc,
    just_expand: bool,
) -> Option<VmaPtr> {
    let left = prev.filter(|p| p.end() == d.start && can_vma_merge_after(d, *p));
    let right = if just_expand {
        None
    } else {
        next.filter(|n| d.end == n.start() && can_vma_merge_before(d, *n))
            .filter(|n| left.is_none_or(|l| is_mergeable_anon_vma(l.anon(), n.anon())))
    };
    match (left, right) {
        (Some(l), Some(r)) => {
            let (end, r_anon) = (r.end(), r.anon());
            dup_anon_vma(env, l, r_anon.or(d.anon));
            // SAFETY: `r` is `next`, in the tree: the caller's promise.
            unsafe { remove_vma(mm, env, r) };
            l.vm_end.set(end);
            mm.vmas.adjusted(l);
            Some(l)
        }
        (Some(l), None) => {
            dup_anon_vma(env, l, d.anon);
            l.vm_end.set(d.end);
            mm.vmas.adjusted(l);
            Some(l)
        }
        (None, Some(r)) => {
            dup_anon_vma(env, r, d.anon);
            r.vm_start.set(d.start);
            r.vm_pgoff.set(d.pgoff);
            mm.vmas.adjusted(r);
            Some(r)
        }
        (None, None) => None,
    }
}

/// Merge `[start, end)` of `vma`, about to get `new_flags`, into a neighbour if one is
/// compatible (Linux's `vma_merge_existing_range`). `prev` is the VMA before `vma`, or
/// `vma` itself when `start` is inside it.
///
/// # Safety
/// The free rule (see `kptr`) for `vma` and the VMA after it, which a neighbour absorbs
/// when the range covers them whole.
unsafe fn vma_merge_existing_range(
    mm: &mut Mm,
    env: &mut VmaEnv,
    prev: Option<VmaPtr>,
    vma: VmaPtr,
    start: usize,
    end: usize,
    new_flags: VmFlags,
) -> Option<VmaPtr> {
    let left_side = start == vma.start();
    let right_side = end == vma.end();
    if !left_side && !right_side {
        return None;
    }
    let d = VmaDesc {
        start,
        end,
        flags: new_flags,
        pgoff: vma.pgoff_at(start),
        file: vma.file(),
        anon: vma.anon(),
    };
    let merge_left =
        left_side && prev.is_some_and(|p| p != vma && p.end() == start && can_vma_merge_after(&d, p));
    let next = if right_side { vma.next() } else { None };
    let merge_right = right_side
        && next.is_some_and(|n| n.start() == end && can_vma_merge_before(&d, n))
        && (!merge_left || is_mergeable_anon_vma(prev.and_then(|p| p.anon()), next.and_then(|n| n.anon())));
    match (merge_left.then_some(prev).flatten(), merge_right.then_some(next).flatten()) {
        (Some(p), Some(n)) => {
            // prev absorbs vma and next.
            let src = if n.anon().is_some() { n.anon() } else { vma.anon() };
            dup_anon_vma(env, p, src);
            let new_end = n.end();
            // SAFETY: `vma` and `n`, the VMA after it, both in the tree: the caller's promise.
            unsafe {
                remove_vma(mm, env, vma);
                remove_vma(mm, env, n);
            }
            p.vm_end.set(new_end);
            mm.vmas.adjusted(p);
            Some(p)
        }
        (Some(p), None) => {
            dup_anon_vma(env, p, vma.anon());
            if right_side {
                // SAFETY: `vma`, in the tree: the caller's promise.
                unsafe { remove_vma(mm, env, vma) };
            } else {
                vma.vm_pgoff.set(vma.pgoff_at(end));
                vma.vm_start.set(end);
                mm.vmas.adjusted(vma);
            }
            p.vm_end.set(end);
            mm.vmas.adjusted(p);
            Some(p)
        }
        (None, Some(n)) => {
            dup_anon_vma(env, n, vma.anon());
            let pglen = (end - start) >> PAGE_SHIFT;
            if left_side {
                // SAFETY: as above.
                unsafe { remove_vma(mm, env, vma) };
            } else {
                vma.vm_end.set(start);
                mm.vmas.adjusted(vma);
            }
            n.vm_start.set(start);
            n.vm_pgoff.set(n.pgoff() - pglen);
            mm.vmas.adjusted(n);
            Some(n)
        }
        (None, None) => None,
    }
}

/// Give `[start, end)` of `vma` the flags `new_flags`' VMA: merged into a neighbour, or
/// split off. Returns the VMA that covers exactly the range afterwards (its flags are the
/// caller's to set). `prev` is as for `vma_merge_existing_range`.
///
/// # Safety
/// The free rule (see `kptr`) for `vma` and the VMA after it, which a merge may remove
/// (the VMA returned covers the range).
pub(crate) unsafe fn vma_modify(
    mm: &mut Mm,
    env: &mut VmaEnv,
    prev: Option<VmaPtr>,
    vma: VmaPtr,
    start: usize,
    end: usize,
    new_flags: VmFlags,
) -> Result<VmaPtr, Errno> {
    // SAFETY: the caller's promise.
    if let Some(merged) = unsafe { vma_merge_existing_range(mm, env, prev, vma, start, end, new_flags) } {
        return Ok(merged);
    }
    if vma.start() < start {
        split_vma(mm, env, vma, start, true)?;
    }
    if vma.end() > end {
        split_vma(mm, env, vma, end, false)?;
    }
    Ok(vma)
}

/// Split `vma` at `addr`, refusing if the map count is at its limit. With `new_below` the
/// new VMA is the part below `addr` and `vma` keeps the upper part; otherwise the new one
/// is the upper part. Returns the new VMA.
pub(crate) fn split_vma(
    mm: &mut Mm,
    env: &mut VmaEnv,
    vma: VmaPtr,
    addr: usize,
    new_below: bool,
) -> Result<VmaPtr, Errno> {
    if mm.map_count() >= env.sys.max_map_count {
        return Err(Errno::ENOMEM);
    }
    __split_vma(mm, env, vma, addr, new_below)
}

/// `split_vma` without the map-count check.
pub(crate) fn __split_vma(
    mm: &mut Mm,
    env: &mut VmaEnv,
    vma: VmaPtr,
    addr: usize,
    new_below: bool,
) -> Result<VmaPtr, Errno> {
    if addr <= vma.start() || addr >= vma.end() {
        crate::util::bug("split_vma outside the VMA", addr, vma.start());
    }
    let new = vm_area_dup(env, vma)?;
    if new_below {
        new.vm_end.set(addr);
        vma.vm_pgoff.set(vma.pgoff_at(addr));
        vma.vm_start.set(addr);
    } else {
        new.vm_pgoff.set(vma.pgoff_at(addr));
        new.vm_start.set(addr);
        vma.vm_end.set(addr);
    }
    mm.vmas.adjusted(vma);
    mm.vmas.insert(new);
    Ok(new)
}

/// `munmap` of `[start, start + len)` (`do_vmi_munmap`).
///
/// # Safety
/// The range rule (see `Machine`) for the user memory of the range, and the free rule (see
/// `kptr`) for every VMA that overlaps it and for the page tables freed.
pub(crate) unsafe fn do_munmap(mm: &mut Mm, env: &mut VmaEnv, start: usize, len: usize) -> Result<(), Errno> {
    let task_size = mm.task_size;
    if offset_in_page(start) != 0 || start > task_size || len > task_size - start {
        return Err(Errno::EINVAL);
    }
    let end = start + page_align(len);
    if end == start {
        return Err(Errno::EINVAL);
    }
    match mm.find_vma(start) {
        // SAFETY: the caller's promise, for [start, end).
        Some(vma) if vma.start() < end => unsafe { do_align_munmap(mm, env, vma, start, end) },
        _ => Ok(()),
    }
}

/// Counts of what an unmap removes.
#[derive(Default)]
struct Removed {
    pages: usize,
    locked: usize,
    accounted: usize,
    exec: usize,
    stack: usize,
    data: usize,
}

/// Unmap `[start, end)` (page aligned), where `vma` is the first VMA that overlaps it.
///
/// # Safety
/// As for `do_munmap`.
pub(crate) unsafe fn do_align_munmap(
    mm: &mut Mm,
    env: &mut VmaEnv,
    vma: VmaPtr,
    start: usize,
    end: usize,
) -> Result<(), Errno> {
    let mut first = vma;
    if start > vma.start() {
        // Splitting one VMA into three must not push the count past its limit.
        if end < vma.end() && mm.map_count() >= env.sys.max_map_count {
            return Err(Errno::ENOMEM);
        }
        __split_vma(mm, env, vma, start, true)?;
        first = vma;
    }
    let prev = first.prev();
    let mut cur = Some(first);
    let mut last = first;
    while let Some(v) = cur.filter(|v| v.start() < end) {
        if v.end() > end {
            __split_vma(mm, env, v, end, false)?;
        }
        last = v;
        cur = v.next();
    }
    let next = last.next();
    let mut removed = Removed::default();
    let mut cur = Some(first);
    while let Some(v) = cur.filter(|v| v.start() < end) {
        let n = v.pages();
        let f = v.flags();
        removed.pages += n;
        if f & VM_LOCKED != 0 {
            removed.locked += n;
        }
        if f & VM_ACCOUNT != 0 {
            removed.accounted += n;
        }
        if is_exec_mapping(f) {
            removed.exec += n;
        } else if is_stack_mapping(f) {
            removed.stack += n;
        } else if is_data_mapping(f) {
            removed.data += n;
        }
        cur = v.next();
    }
    let floor = prev.map_or(0, |p| p.end());
    let ceiling = next.map_or(0, |n| n.start());
    // SAFETY: the caller's promise for [start, end); the tables freed map only
    // [floor, ceiling), which after the removal below holds no VMA.
    unsafe { crate::memory::unmap_region(mm, env.phys, env.host, start, end, floor, ceiling) };
    let mut cur = Some(first);
    while let Some(v) = cur.filter(|v| v.start() < end) {
        cur = v.next();
        // SAFETY: a VMA overlapping the range (split to lie inside it), in the tree: the
        // caller's promise; the walk goes on from `cur`, read before.
        unsafe { remove_vma(mm, env, v) };
    }
    mm.locked_vm -= removed.locked;
    mm.update_hiwater_vm();
    mm.total_vm -= removed.pages;
    mm.exec_vm -= removed.exec;
    mm.stack_vm -= removed.stack;
    mm.data_vm -= removed.data;
    env.sys.vm_unacct_memory(removed.accounted);
    Ok(())
}

/// Insert a new VMA and count it in `map_count` (the tree's length).
pub(crate) fn vma_link(mm: &mut Mm, v: VmaPtr) {
    mm.vmas.insert(v);
}

/// Whether a mapping with these flags is charged to the commit limit.
fn accountable_mapping(flags: VmFlags) -> bool {
    flags & (VM_NORESERVE | VM_SHARED | VM_WRITE) == VM_WRITE
}

/// Pages of `[start, end)` mapped by VMAs, and how many of those are charged.
fn count_vma_pages_range(mm: &Mm, start: usize, end: usize) -> (usize, usize) {
    let mut pages = 0;
    let mut accounted = 0;
    let mut cur = mm.find_vma(start);
    while let Some(v) = cur.filter(|v| v.start() < end) {
        let n = (v.end().min(end) - v.start().max(start)) >> PAGE_SHIFT;
        pages += n;
        if v.flags() & VM_ACCOUNT != 0 {
            accounted += n;
        }
        cur = v.next();
    }
    (pages, accounted)
}

/// Create the mapping `[addr, addr + len)` (`mmap_region`), replacing anything there:
/// of `file` from page `pgoff` if given, else anonymous (a fresh shmem inode if shared).
///
/// # Safety
/// The range rule (see `Machine`) for what `[addr, addr + len)` maps now, and the free rule
/// (see `kptr`) for the VMAs overlapping it (replaced), the VMA after it (which a merge
/// may remove) and the page tables freed.
pub(crate) unsafe fn mmap_region(
    mm: &mut Mm,
    env: &mut VmaEnv,
    addr: usize,
    len: usize,
    mut vm_flags: VmFlags,
    pgoff: usize,
    file: Option<InodePtr>,
) -> Result<usize, Errno> {
    let end = addr + len;
    let pglen = len >> PAGE_SHIFT;
    let (overlapped, overlapped_accounted) = count_vma_pages_range(mm, addr, end);
    if !mm.may_expand_vm(vm_flags, pglen) && !mm.may_expand_vm(vm_flags, pglen - overlapped) {
        return Err(Errno::ENOMEM);
    }
    // Charge before touching the old mappings, so that a refusal leaves them intact (Linux
    // detaches them first and puts them back on failure).
    let mut charged = 0;
    if accountable_mapping(vm_flags) {
        charged = pglen - overlapped_accounted;
        env.vm_enough_memory(mm, charged)?;
        vm_flags |= VM_ACCOUNT;
    }
    let shmem = if vm_flags & VM_SHARED != 0 && file.is_none() {
        let ino = env.get_next_ino();
        match crate::shmem::new_inode(env.slab, env.phys, crate::shmem::INODE_SHMEM, ino, pglen) {
            Ok(inode) => Some(inode),
            Err(e) => {
                env.sys.vm_unacct_memory(charged);
                return Err(e);
            }
        }
    } else {
        None
    };
    if let Some(inode) = shmem {
        // shmem_acct_size: the object is charged unless MAP_NORESERVE.
        if vm_flags & VM_NORESERVE == 0 {
            if let Err(e) = env.vm_enough_memory(mm, pglen) {
                // SAFETY: the inode's only reference (new_inode's), and `inode` is not used
                // again.
                unsafe { inode_put(env, inode) };
                return Err(e);
            }
            inode.charged.set(pglen);
        }
    }
    // The map count check above allowed one more VMA; make sure a replaced range can be
    // split. Linux gathers the old VMAs first and fails here with ENOMEM too.
    if overlapped > 0 {
        let transfer = if accountable_mapping(vm_flags & !VM_ACCOUNT) { overlapped_accounted } else { 0 };
        // SAFETY: the caller's promise, for [addr, end) and the VMAs overlapping it.
        if let Err(e) = unsafe { unmap_for_fixed(mm, env, addr, end, transfer) } {
            env.sys.vm_unacct_memory(charged);
            if let Some(inode) = shmem {
                // SAFETY: as above.
                unsafe { inode_put(env, inode) };
            }
            return Err(e);
        }
    }
    let (next, prev) = mm.find_vma_prev(addr);
    let object = shmem.or(file);
    let d = VmaDesc { start: addr, end, flags: vm_flags, pgoff, file: object, anon: None };
    let merged = if shmem.is_none() {
        // SAFETY: the caller's promise for `next`, the VMA after the range.
        unsafe { vma_merge_new_range(mm, env, prev, next, &d, false) }
    } else {
        None
    };
    let vma = match merged {
        Some(v) => v,
        None => {
            let v = match vm_area_alloc(env) {
                Ok(v) => v,
                Err(e) => {
                    env.sys.vm_unacct_memory(charged);
                    if let Some(inode) = shmem {
                        // SAFETY: as above.
                        unsafe { inode_put(env, inode) };
                    }
                    return Err(e);
                }
            };
            v.vm_start.set(addr);
            v.vm_end.set(end);
            v.vm_flags.set(vm_flags);
            v.vm_pgoff.set(pgoff);
            if let Some(f) = file {
                f.refcount.set(f.refcount.get() + 1);
            }
            v.vm_file.set(object);
            vma_link(mm, v);
            v
        }
    };
    mm.vm_stat_account(vm_flags, pglen as isize);
    if vm_flags & VM_LOCKED != 0 {
        mm.locked_vm += pglen;
    }
    vma.vm_flags.set(vma.flags() | VM_SOFTDIRTY);
    Ok(addr)
}

/// Remove the VMAs a `MAP_FIXED` mapping replaces, keeping their commit charge (it passes
/// to the new mapping, which was charged only for the difference).
///
/// # Safety
/// As for `do_munmap`, for `[start, end)`.
unsafe fn unmap_for_fixed(
    mm: &mut Mm,
    env: &mut VmaEnv,
    start: usize,
    end: usize,
    accounted: usize,
) -> Result<(), Errno> {
    let Some(vma) = mm.find_vma(start).filter(|v| v.start() < end) else {
        return Ok(());
    };
    // SAFETY: the caller's promise; `vma` is the first VMA overlapping the range.
    unsafe { do_align_munmap(mm, env, vma, start, end) }?;
    env.sys.committed_as += accounted as isize;
    Ok(())
}

/// Grow the heap by `[addr, addr + len)` (`do_brk_flags`), extending `brkvma` if it ends
/// at `addr`.
pub(crate) fn do_brk_flags(
    mm: &mut Mm,
    env: &mut VmaEnv,
    brkvma: Option<VmaPtr>,
    addr: usize,
    len: usize,
    extra: VmFlags,
) -> Result<(), Errno> {
    let flags = VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags | extra;
    let pages = len >> PAGE_SHIFT;
    if !mm.may_expand_vm(flags, pages) {
        return Err(Errno::ENOMEM);
    }
    if mm.map_count() > env.sys.max_map_count {
        return Err(Errno::ENOMEM);
    }
    env.vm_enough_memory(mm, pages)?;
    let d =
        VmaDesc { start: addr, end: addr + len, flags, pgoff: addr >> PAGE_SHIFT, file: None, anon: None };
    let expanded = match brkvma {
        // SAFETY: with `just_expand` and no `next` nothing is removed.
        Some(v) if v.end() == addr => unsafe { vma_merge_new_range(mm, env, Some(v), None, &d, true) },
        _ => None,
    };
    let vma = match expanded {
        Some(v) => v,
        None => {
            let v = match vm_area_alloc(env) {
                Ok(v) => v,
                Err(e) => {
                    env.sys.vm_unacct_memory(pages);
                    return Err(e);
                }
            };
            v.vm_start.set(addr);
            v.vm_end.set(addr + len);
            v.vm_flags.set(flags);
            v.vm_pgoff.set(addr >> PAGE_SHIFT);
            vma_link(mm, v);
            v
        }
    };
    mm.vm_stat_account(flags, pages as isize);
    if flags & VM_LOCKED != 0 {
        mm.locked_vm += pages;
    }
    vma.vm_flags.set(vma.flags() | VM_SOFTDIRTY);
    Ok(())
}

/// Grow a stack VMA down to `addr` (`expand_downwards` with `acct_stack_growth`).
pub(crate) fn expand_downwards(mm: &mut Mm, env: &mut VmaEnv, vma: VmaPtr, addr: usize) -> Result<(), ()> {
    let address = addr & PAGE_MASK;
    if address < mm.mmap_min_addr {
        return Err(());
    }
    if let Some(prev) = vma.prev() {
        if prev.flags() & VM_GROWSDOWN == 0 && prev.is_accessible() && address - prev.end() < STACK_GUARD_GAP
        {
            return Err(());
        }
    }
    anon_vma_prepare(mm, env, vma).map_err(|_| ())?;
    let grow = (vma.start() - address) >> PAGE_SHIFT;
    let size = vma.end() - address;
    let flags = vma.flags();
    if grow > vma.pgoff() {
        return Err(());
    }
    if !mm.may_expand_vm(flags, grow) || size as u64 > mm.rlimits.stack {
        return Err(());
    }
    if !mm.mlock_future_ok(flags, grow << PAGE_SHIFT, env.sys.cap_ipc_lock) {
        return Err(());
    }
    // Linux charges stack growth whether or not the VMA is VM_ACCOUNT; without it the
    // charge is never given back.
    env.vm_enough_memory(mm, grow).map_err(|_| ())?;
    if flags & VM_ACCOUNT == 0 {
        env.sys.committed_leaked += grow;
    }
    if flags & VM_LOCKED != 0 {
        mm.locked_vm += grow;
    }
    mm.vm_stat_account(flags, grow as isize);
    vma.vm_pgoff.set(vma.pgoff() - grow);
    vma.vm_start.set(address);
    mm.vmas.adjusted(vma);
    Ok(())
}

/// Make the VMA for the moved range at `addr` (`copy_vma`), merging where possible.
///
/// # Safety
/// The free rule (see `kptr`) for the VMA after `[addr, addr + len)`, which a merge may
/// remove; it may be `vma` itself (a VMA moved down next to itself), and then the VMA
/// returned is what covers it.
pub(crate) unsafe fn copy_vma(
    mm: &mut Mm,
    env: &mut VmaEnv,
    vma: VmaPtr,
    addr: usize,
    len: usize,
    pgoff: usize,
) -> Result<VmaPtr, Errno> {
    // A never-faulted anonymous VMA has no pages tied to its offset: give it the offset of
    // its new address so it can merge there.
    let pgoff = if vma.is_anonymous() && vma.anon().is_none() { addr >> PAGE_SHIFT } else { pgoff };
    let (next, prev) = mm.find_vma_prev(addr);
    if next.is_some_and(|n| n.start() < addr + len) {
        crate::util::bug("copy_vma: destination not empty", addr, len);
    }
    let d = VmaDesc {
        start: addr,
        end: addr + len,
        flags: vma.flags(),
        pgoff,
        file: vma.file(),
        anon: vma.anon(),
    };
    // SAFETY: the caller's promise for `next`; `vma` is not used after a merge.
    if let Some(v) = unsafe { vma_merge_new_range(mm, env, prev, next, &d, false) } {
        return Ok(v);
    }
    let new = vm_area_dup(env, vma)?;
    new.vm_start.set(addr);
    new.vm_end.set(addr + len);
    new.vm_pgoff.set(pgoff);
    vma_link(mm, new);
    Ok(new)
}

#[cfg(test)]
mod tests;
