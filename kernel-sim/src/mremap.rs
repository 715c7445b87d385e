//! `mremap` (Linux's `mm/mremap.c`, as restructured in 6.17): shrink a mapping, grow it
//! in place, or move it — moving the page-table entries, so the same frames appear at the
//! new address and nothing is copied.
//!
//! The parameters are checked first (flags, alignment, lengths, and that an explicit
//! destination does not overlap the source). Then:
//! - a fixed move that keeps the size (`MREMAP_FIXED`, `old_len == new_len`) may span
//!   several VMAs: each is moved to the same offset from the destination, gaps kept;
//! - otherwise the range must lie in one VMA. A shrink unmaps the tail. Growing extends
//!   the VMA in place (merging with the next one where the rules allow) when the space
//!   after it is free, else, with `MREMAP_MAYMOVE`, moves it.
//!
//! A move makes the VMA at the destination with `vma::copy_vma` (merging with neighbours; a
//! never-faulted anonymous VMA takes the page offset of its new address so it can), moves
//! the entries, then unmaps the source without giving back its commit charge, which the new
//! VMA inherits. `MREMAP_FIXED` unmaps whatever is at the destination first;
//! `MREMAP_DONTUNMAP` leaves the source VMA in place, empty.

use crate::machine::State;
use crate::mm::{VmaPtr, VM_ACCOUNT, VM_DONTEXPAND, VM_LOCKED, VM_LOCKED_MASK, VM_MAYSHARE, VM_SHARED};
use crate::page::{offset_in_page, page_align, PAGE_SHIFT};
use crate::vma::{copy_vma, do_munmap, vma_merge_new_range, VmaDesc};
use crate::Errno;

pub const MREMAP_MAYMOVE: i32 = 1;
pub const MREMAP_FIXED: i32 = 2;
pub const MREMAP_DONTUNMAP: i32 = 4;

/// One remap in progress (Linux's `vma_remap_struct`).
struct Remap {
    addr: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: usize,
    /// |old_len - new_len|, fixed when the VMA is first examined.
    delta: usize,
    vma: Option<VmaPtr>,
    charged: usize,
    populate_expand: bool,
}

impl Remap {
    fn implies_new_addr(&self) -> bool {
        self.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
    }
    fn shrink(&self) -> bool {
        self.old_len > self.new_len
    }
    fn expand(&self) -> bool {
        self.new_len > self.old_len
    }
}

/// The `mremap` system call.
///
/// # Safety
/// `Machine::mremap`'s condition (the range rule, see `Machine`, for the old mapping and,
/// with `MREMAP_FIXED`, for the range at `new_addr`), and the free rule (see `kptr`) for
/// the VMAs of both ranges, the VMAs after them (which merges may remove) and the page
/// tables freed.
pub(crate) unsafe fn sys_mremap(
    st: &mut State,
    addr: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: usize,
) -> Result<usize, Errno> {
    let mut r = Remap {
        addr,
        old_len: page_align(old_len),
        new_len: page_align(new_len),
        flags,
        new_addr,
        delta: 0,
        vma: None,
        charged: 0,
        populate_expand: false,
    };
    check_mremap_params(st, &r)?;
    // Room for the splits of the unmaps before the move and of the move itself.
    if st.mm.map_count() + 4 > st.sys.max_map_count {
        return Err(Errno::ENOMEM);
    }
    let res = if r.flags & MREMAP_FIXED != 0 && r.old_len == r.new_len {
        // SAFETY: the caller's promises, for `r`, which describes this call.
        unsafe { remap_move(st, &mut r) }
    } else {
        r.vma = st.mm.vma_lookup(r.addr);
        check_prep_vma(st, &mut r)?;
        if r.implies_new_addr() {
            // SAFETY: as above.
            unsafe { mremap_to(st, &mut r) }
        } else {
            // SAFETY: as above.
            unsafe { mremap_at(st, &mut r) }
        }
    }?;
    if r.populate_expand {
        crate::fault::populate(st, r.new_addr + r.old_len, r.new_addr + r.new_len);
    }
    Ok(res)
}

fn check_mremap_params(st: &State, r: &Remap) -> Result<(), Errno> {
    let task_size = st.mm.task_size;
    if r.flags & !(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP) != 0 {
        return Err(Errno::EINVAL);
    }
    if offset_in_page(r.addr) != 0 {
        return Err(Errno::EINVAL);
    }
    // A zero old_len duplicates a shared mapping; a zero new_len makes no sense.
    if r.new_len == 0 || r.new_len > task_size {
        return Err(Errno::EINVAL);
    }
    if !r.implies_new_addr() {
        return Ok(());
    }
    if r.new_addr > task_size - r.new_len || offset_in_page(r.new_addr) != 0 {
        return Err(Errno::EINVAL);
    }
    if r.flags & MREMAP_MAYMOVE == 0 {
        return Err(Errno::EINVAL);
    }
    if r.flags & MREMAP_DONTUNMAP != 0 && r.old_len != r.new_len {
        return Err(Errno::EINVAL);
    }
    let (old_end, new_end) = (r.addr.wrapping_add(r.old_len), r.new_addr + r.new_len);
    if old_end > r.new_addr && new_end > r.addr {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Checks that need the VMA (`check_prep_vma`).
fn check_prep_vma(st: &State, r: &mut Remap) -> Result<(), Errno> {
    let vma = r.vma.ok_or(Errno::EFAULT)?;
    r.delta = r.old_len.abs_diff(r.new_len);
    if !r.implies_new_addr() {
        r.new_addr = r.addr;
    }
    // Shrinking or keeping the size in place maps nothing new: no more to check.
    if !r.expand() && !r.implies_new_addr() {
        return Ok(());
    }
    let flags = vma.flags();
    // A zero old_len duplicates a shared mapping; for a private one it would make an
    // unrelated new mapping, so Linux refuses it.
    if r.old_len == 0 && flags & (VM_SHARED | VM_MAYSHARE) == 0 {
        return Err(Errno::EINVAL);
    }
    if r.flags & MREMAP_DONTUNMAP != 0 && flags & VM_DONTEXPAND != 0 {
        return Err(Errno::EINVAL);
    }
    // The part that moves must lie in this one VMA (a shrink may unmap past its end).
    let old_len = if r.shrink() { r.new_len } else { r.old_len };
    if old_len > vma.end() - r.addr {
        return Err(Errno::EFAULT);
    }
    if r.new_len == old_len {
        return Ok(());
    }
    if flags & VM_LOCKED != 0 {
        r.populate_expand = true;
    }
    if vma.pgoff_at(r.addr).checked_add(r.new_len >> PAGE_SHIFT).is_none() {
        return Err(Errno::EINVAL);
    }
    if flags & VM_DONTEXPAND != 0 {
        return Err(Errno::EFAULT);
    }
    if !st.mm.mlock_future_ok(flags, r.delta, st.sys.cap_ipc_lock) {
        return Err(Errno::EAGAIN);
    }
    if !st.mm.may_expand_vm(flags, r.delta >> PAGE_SHIFT) {
        return Err(Errno::ENOMEM);
    }
    Ok(())
}

/// A resize without a destination: shrink, grow in place, or grow by moving.
///
/// # Safety
/// As for `sys_mremap`, for the remap `r` describes.
unsafe fn mremap_at(st: &mut State, r: &mut Remap) -> Result<usize, Errno> {
    if r.delta == 0 {
        return Ok(r.addr);
    }
    if r.shrink() {
        let (mm, mut env) = st.vma_env();
        // SAFETY: the caller's promise for the old mapping's tail; `r.vma` is not used again.
        unsafe { do_munmap(mm, &mut env, r.addr + r.new_len, r.delta) }?;
        return Ok(r.addr);
    }
    let vma = r.vma.ok_or(Errno::EFAULT)?;
    if vma.end() - r.addr == r.old_len && vma_expandable(st, vma, r.delta) {
        // SAFETY: the caller's promise for the VMA after `vma`.
        unsafe { expand_vma_in_place(st, r, vma) }?;
        return Ok(r.addr);
    }
    if r.flags & MREMAP_MAYMOVE == 0 {
        return Err(Errno::ENOMEM);
    }
    set_new_addr(st, r)?;
    // SAFETY: the caller's promises.
    unsafe { move_vma(st, r) }
}

/// Whether `vma` can grow by `delta` bytes where it is.
fn vma_expandable(st: &State, vma: VmaPtr, delta: usize) -> bool {
    let Some(end) = vma.end().checked_add(delta) else { return false };
    if st.mm.find_vma_intersection(vma.end(), end).is_some() {
        return false;
    }
    crate::mmap::get_unmapped_area(st, vma.start(), end - vma.start(), libc::MAP_FIXED, false).is_ok()
}

/// Grow `vma` where it is, by `r.delta`.
///
/// # Safety
/// The free rule (see `kptr`) for the VMA after `vma`, which the growth may absorb.
unsafe fn expand_vma_in_place(st: &mut State, r: &mut Remap, vma: VmaPtr) -> Result<(), Errno> {
    calc_charge(st, r, vma)?;
    let d = VmaDesc {
        start: vma.end(),
        end: vma.end() + r.delta,
        flags: vma.flags(),
        pgoff: vma.pgoff_at(vma.end()),
        file: vma.file(),
        anon: vma.anon(),
    };
    let next = vma.next();
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise for `next`, which is not used again.
    let Some(vma) = (unsafe { vma_merge_new_range(mm, &mut env, Some(vma), next, &d, false) }) else {
        st.sys.vm_unacct_memory(r.charged);
        return Err(Errno::ENOMEM);
    };
    r.vma = Some(vma);
    stat_account(st, vma, r.delta);
    Ok(())
}

/// Charge what the remap adds, if the VMA is charged at all.
fn calc_charge(st: &mut State, r: &mut Remap, vma: VmaPtr) -> Result<(), Errno> {
    if vma.flags() & VM_ACCOUNT == 0 {
        return Ok(());
    }
    let pages = if r.flags & MREMAP_DONTUNMAP != 0 {
        r.new_len >> PAGE_SHIFT
    } else {
        r.new_len.saturating_sub(r.old_len) >> PAGE_SHIFT
    };
    let (ram, total) = (st.phys.totalram_pages(), st.mm.total_vm);
    st.sys.vm_enough_memory(pages, ram, total)?;
    r.charged = pages;
    Ok(())
}

fn stat_account(st: &mut State, vma: VmaPtr, bytes: usize) {
    let pages = bytes >> PAGE_SHIFT;
    st.mm.vm_stat_account(vma.flags(), pages as isize);
    if vma.flags() & VM_LOCKED != 0 {
        st.mm.locked_vm += pages;
    }
}

/// Pick the destination: `MREMAP_FIXED`'s address, a `MREMAP_DONTUNMAP` hint, or anywhere.
fn set_new_addr(st: &State, r: &mut Remap) -> Result<(), Errno> {
    let vma = r.vma.ok_or(Errno::EFAULT)?;
    let mut map_flags = 0;
    if r.flags & MREMAP_FIXED != 0 {
        map_flags |= libc::MAP_FIXED;
    }
    if vma.flags() & VM_MAYSHARE != 0 {
        map_flags |= libc::MAP_SHARED;
    }
    let hint = if r.implies_new_addr() { r.new_addr } else { 0 };
    let file = vma.file().is_some_and(|f| f.is_host());
    r.new_addr = crate::mmap::get_unmapped_area(st, hint, r.new_len, map_flags, file)?;
    Ok(())
}

/// A remap to a chosen destination.
///
/// # Safety
/// As for `sys_mremap`, for the remap `r` describes.
unsafe fn mremap_to(st: &mut State, r: &mut Remap) -> Result<usize, Errno> {
    if r.flags & MREMAP_FIXED != 0 {
        let (mm, mut env) = st.vma_env();
        // SAFETY: the caller's promise for the range at `new_addr`; the unmap may split the
        // source's VMA, so `r.vma` is looked up again.
        unsafe { do_munmap(mm, &mut env, r.new_addr, r.new_len) }?;
        r.vma = Some(st.mm.vma_lookup(r.addr).ok_or(Errno::EFAULT)?);
    }
    if r.shrink() {
        let (mm, mut env) = st.vma_env();
        // SAFETY: the caller's promise for the old mapping's tail; `r.vma` is looked up again.
        unsafe { do_munmap(mm, &mut env, r.addr + r.new_len, r.delta) }?;
        r.vma = Some(st.mm.vma_lookup(r.addr).ok_or(Errno::EFAULT)?);
        r.old_len = r.new_len;
    }
    if r.flags & MREMAP_DONTUNMAP != 0 {
        let vma = r.vma.ok_or(Errno::EFAULT)?;
        if !st.mm.may_expand_vm(vma.flags(), r.old_len >> PAGE_SHIFT) {
            return Err(Errno::ENOMEM);
        }
    }
    set_new_addr(st, r)?;
    // SAFETY: the caller's promises.
    unsafe { move_vma(st, r) }
}

/// A fixed move of unchanged size, which may span several VMAs (`remap_move`): each is
/// moved to the same distance from the last one's destination, so gaps are kept.
///
/// # Safety
/// As for `sys_mremap`, for the remap `r` describes.
unsafe fn remap_move(st: &mut State, r: &mut Remap) -> Result<usize, Errno> {
    let start = r.addr;
    // A range wrapping past the top holds no VMA: EFAULT below.
    let end = r.addr.wrapping_add(r.old_len);
    let mut target = r.new_addr;
    let mut result = Err(Errno::EFAULT);
    let mut last_end = 0;
    let mut seen = false;
    let mut cursor = start;
    while let Some(vma) = st.mm.find_vma(cursor).filter(|v| v.start() < end) {
        if !seen && start < vma.start() {
            return Err(Errno::EFAULT);
        }
        let addr = vma.start().max(start);
        let len = end.min(vma.end()) - addr;
        let offset = if seen { vma.start() - last_end } else { 0 };
        last_end = vma.end();
        let next_cursor = vma.end().min(end);
        let mut piece = Remap {
            addr,
            old_len: len,
            new_len: len,
            flags: r.flags,
            new_addr: target + offset,
            delta: 0,
            vma: Some(vma),
            charged: 0,
            populate_expand: false,
        };
        check_prep_vma(st, &mut piece)?;
        // SAFETY: the caller's promises, for a piece of the range; `vma` is not used again,
        // and the next piece is looked up afresh.
        let moved = unsafe { mremap_to(st, &mut piece) }?;
        if !seen {
            result = Ok(moved);
        }
        seen = true;
        target = moved + len;
        cursor = next_cursor;
        if cursor >= end {
            break;
        }
    }
    result
}

/// Move `r.vma`'s part `[r.addr, r.addr + r.old_len)` to `r.new_addr`, growing it to
/// `r.new_len`.
///
/// # Safety
/// As for `sys_mremap`, for the remap `r` describes.
unsafe fn move_vma(st: &mut State, r: &mut Remap) -> Result<usize, Errno> {
    if st.mm.map_count() + 2 > st.sys.max_map_count {
        return Err(Errno::ENOMEM);
    }
    let vma = r.vma.ok_or(Errno::EFAULT)?;
    calc_charge(st, r, vma)?;
    let (old_addr, old_len, new_addr, new_len) = (r.addr, r.old_len, r.new_addr, r.new_len);
    // Page tables for the destination first: after this nothing can fail.
    if let Err(e) = crate::memory::prealloc_page_tables(st, new_addr, new_addr + old_len) {
        st.sys.vm_unacct_memory(r.charged);
        return Err(e);
    }
    let old_start = vma.start();
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise for the VMA after the destination; if that was the
    // source, `vma` is replaced by the merged VMA just below before any use.
    let new_vma = match unsafe { copy_vma(mm, &mut env, vma, new_addr, new_len, vma.pgoff_at(old_addr)) } {
        Ok(v) => v,
        Err(e) => {
            st.sys.vm_unacct_memory(r.charged);
            return Err(e);
        }
    };
    // The source may have merged into the new VMA (a never-faulted VMA moved next to itself).
    let vma = if old_start >= new_vma.start() && old_start < new_vma.end() { new_vma } else { vma };
    // SAFETY: the caller's promise for the old range, whose contents move.
    unsafe { crate::memory::move_page_tables(st, old_addr, new_addr, old_len) };
    let hiwater_vm = st.mm.hiwater_vm;
    stat_account(st, vma, new_len);
    if r.flags & MREMAP_DONTUNMAP != 0 {
        // The old VMA stays, empty; it can no longer be locked, and if all of it moved it no
        // longer holds any anonymous page. locked_vm is left as it is.
        vma.vm_flags.set(vma.flags() & !VM_LOCKED_MASK);
        if new_vma != vma && vma.start() == old_addr && vma.end() == old_addr + old_len {
            // SAFETY: if this drops the anon_vma's last reference, no VMA points at it any
            // more, and nothing here holds a KPtr to it.
            unsafe { crate::vma::set_anon_vma(&mut st.vma_env().1, vma, None) };
        }
    } else {
        // SAFETY: the caller's promises for the old range, now empty; `vma` and `r.vma` are
        // not used again.
        unsafe { unmap_source_vma(st, vma, old_addr, old_len) };
    }
    st.mm.hiwater_vm = hiwater_vm;
    Ok(new_addr)
}

/// Unmap the source of a move without giving back its commit charge: the new VMA took it
/// over. VM_ACCOUNT is hidden during the unmap and put back on what remains of the VMA.
///
/// # Safety
/// As for `vma::do_munmap`, for `[addr, addr + len)`: `vma` is the VMA that holds it.
unsafe fn unmap_source_vma(st: &mut State, vma: VmaPtr, addr: usize, len: usize) {
    let accountable = vma.flags() & VM_ACCOUNT != 0;
    let (vm_start, vm_end) = (vma.start(), vma.end());
    if accountable {
        vma.vm_flags.set(vma.flags() & !VM_ACCOUNT);
    }
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise; `vma` is not used after the unmap.
    if unsafe { do_munmap(mm, &mut env, addr, len) }.is_err() {
        if accountable {
            st.sys.committed_as += (len >> PAGE_SHIFT) as isize;
        }
        return;
    }
    if accountable {
        if vm_start < addr {
            if let Some(p) = st.mm.find_vma_prev(addr).1 {
                p.vm_flags.set(p.flags() | VM_ACCOUNT);
            }
        }
        if vm_end > addr + len {
            if let Some(n) = st.mm.find_vma(addr) {
                n.vm_flags.set(n.flags() | VM_ACCOUNT);
            }
        }
    }
}
