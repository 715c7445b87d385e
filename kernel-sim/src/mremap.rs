//! `mremap` (Linux's `mm/mremap.c`): shrink a mapping, grow it in place, or move it —
//! moving the page-table entries, so the same frames appear at the new address and
//! nothing is copied.
//!
//! Growing in place extends the VMA (and may merge it with the next one) when the space
//! after it is free. Otherwise, with `MREMAP_MAYMOVE`, `copy_vma` makes the VMA at the new
//! place (merging it with neighbours where the rules allow; a never-faulted anonymous VMA
//! takes a page offset matching its new address so it can), the entries move, and the old
//! range is unmapped without giving back its commit charge, which the new VMA inherits.
//! `MREMAP_FIXED` names the destination and unmaps whatever is there first;
//! `MREMAP_DONTUNMAP` leaves the old VMA in place, empty.

use crate::machine::State;
use crate::mm::{VmaPtr, VM_ACCOUNT, VM_DONTEXPAND, VM_LOCKED, VM_LOCKED_MASK, VM_MAYSHARE, VM_SHARED};
use crate::page::{offset_in_page, page_align, PAGE_SHIFT};
use crate::vma::{do_munmap, vm_area_dup, vma_link, vma_merge_new_range, VmaDesc};
use crate::Errno;

pub const MREMAP_MAYMOVE: i32 = 1;
pub const MREMAP_FIXED: i32 = 2;
pub const MREMAP_DONTUNMAP: i32 = 4;

pub(crate) fn sys_mremap(
    st: &mut State,
    addr: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: usize,
) -> Result<usize, Errno> {
    if flags & !(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MREMAP_DONTUNMAP != 0 && (flags & MREMAP_MAYMOVE == 0 || old_len != new_len) {
        return Err(Errno::EINVAL);
    }
    if offset_in_page(addr) != 0 {
        return Err(Errno::EINVAL);
    }
    let old_len = page_align(old_len);
    let new_len = page_align(new_len);
    if new_len == 0 {
        return Err(Errno::EINVAL);
    }
    if new_len > st.mm.task_size {
        return Err(Errno::EINVAL);
    }
    if st.mm.vma_lookup(addr).is_none() {
        return Err(Errno::EFAULT);
    }
    if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
        return mremap_to(st, addr, old_len, new_addr, new_len, flags);
    }
    // Always allow a shrinking remap: it just unmaps the tail.
    if old_len >= new_len {
        if old_len != new_len {
            do_munmap(st, addr + new_len, old_len - new_len)?;
        }
        return Ok(addr);
    }
    let vma = vma_to_resize(st, addr, old_len, new_len, flags)?;
    if old_len == vma.end() - addr {
        let delta = new_len - old_len;
        if vma_expandable(st, vma, delta) {
            let pages = delta >> PAGE_SHIFT;
            let mut charged = 0;
            if vma.flags() & VM_ACCOUNT != 0 {
                let (ram, total) = (st.phys.totalram_pages(), st.mm.total_vm);
                st.sys.vm_enough_memory(pages, ram, total)?;
                charged = pages;
            }
            let d = VmaDesc {
                start: vma.end(),
                end: vma.end() + delta,
                flags: vma.flags(),
                pgoff: vma.pgoff_at(vma.end()),
                file: vma.file(),
                anon: vma.anon(),
            };
            let next = vma.next();
            let Some(vma) = vma_merge_new_range(st, Some(vma), next, &d, false) else {
                st.sys.vm_unacct_memory(charged);
                return Err(Errno::ENOMEM);
            };
            st.mm.vm_stat_account(vma.flags(), pages as isize);
            if vma.flags() & VM_LOCKED != 0 {
                st.mm.locked_vm += pages;
                crate::fault::populate(st, addr + old_len, addr + new_len);
            }
            return Ok(addr);
        }
    }
    if flags & MREMAP_MAYMOVE == 0 {
        return Err(Errno::ENOMEM);
    }
    let map_flags = if vma.flags() & VM_MAYSHARE != 0 { libc::MAP_SHARED } else { 0 };
    let new_addr = crate::mmap::get_unmapped_area(st, 0, new_len, map_flags)?;
    move_vma(st, vma, addr, old_len, new_len, new_addr, flags)
}

/// The VMA at `addr` if `[addr, addr + old_len)` may become `new_len` long.
fn vma_to_resize(
    st: &State,
    addr: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
) -> Result<VmaPtr, Errno> {
    let vma = st.mm.vma_lookup(addr).ok_or(Errno::EFAULT)?;
    // A zero old_len duplicates a shared mapping; for a private one it would make an
    // unrelated new mapping, so Linux refuses it.
    if old_len == 0 && vma.flags() & (VM_SHARED | VM_MAYSHARE) == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MREMAP_DONTUNMAP != 0 && vma.flags() & VM_DONTEXPAND != 0 {
        return Err(Errno::EINVAL);
    }
    if old_len > vma.end() - addr {
        return Err(Errno::EFAULT);
    }
    if new_len == old_len {
        return Ok(vma);
    }
    let pgoff = vma.pgoff_at(addr);
    if pgoff.checked_add(new_len >> PAGE_SHIFT).is_none() {
        return Err(Errno::EINVAL);
    }
    if vma.flags() & VM_DONTEXPAND != 0 {
        return Err(Errno::EFAULT);
    }
    let more = new_len.saturating_sub(old_len);
    if !st.mm.mlock_future_ok(vma.flags(), more, st.sys.cap_ipc_lock) {
        return Err(Errno::EAGAIN);
    }
    if !st.mm.may_expand_vm(vma.flags(), more >> PAGE_SHIFT) {
        return Err(Errno::ENOMEM);
    }
    Ok(vma)
}

/// Whether `vma` can grow by `delta` bytes where it is.
fn vma_expandable(st: &State, vma: VmaPtr, delta: usize) -> bool {
    let Some(end) = vma.end().checked_add(delta) else {
        return false;
    };
    if st.mm.find_vma_intersection(vma.end(), end).is_some() {
        return false;
    }
    crate::mmap::get_unmapped_area(st, vma.start(), end - vma.start(), libc::MAP_FIXED).is_ok()
}

fn mremap_to(
    st: &mut State,
    addr: usize,
    old_len: usize,
    new_addr: usize,
    new_len: usize,
    flags: i32,
) -> Result<usize, Errno> {
    let task_size = st.mm.task_size;
    if offset_in_page(new_addr) != 0 {
        return Err(Errno::EINVAL);
    }
    if new_len > task_size || new_addr > task_size - new_len {
        return Err(Errno::EINVAL);
    }
    // The old and new ranges may not overlap.
    if addr + old_len > new_addr && new_addr + new_len > addr {
        return Err(Errno::EINVAL);
    }
    // move_vma needs to stay a few maps below the limit; fail before unmapping anything.
    if st.mm.map_count() + 2 >= st.sys.max_map_count.saturating_sub(3) {
        return Err(Errno::ENOMEM);
    }
    if flags & MREMAP_FIXED != 0 {
        do_munmap(st, new_addr, new_len)?;
    }
    let mut old_len = old_len;
    if old_len > new_len {
        do_munmap(st, addr + new_len, old_len - new_len)?;
        old_len = new_len;
    }
    let vma = vma_to_resize(st, addr, old_len, new_len, flags)?;
    if flags & MREMAP_DONTUNMAP != 0 && !st.mm.may_expand_vm(vma.flags(), old_len >> PAGE_SHIFT) {
        return Err(Errno::ENOMEM);
    }
    let mut map_flags = 0;
    if flags & MREMAP_FIXED != 0 {
        map_flags |= libc::MAP_FIXED;
    }
    if vma.flags() & VM_MAYSHARE != 0 {
        map_flags |= libc::MAP_SHARED;
    }
    let ret = crate::mmap::get_unmapped_area(st, new_addr, new_len, map_flags)?;
    let new_addr = if flags & MREMAP_FIXED != 0 { new_addr } else { ret };
    move_vma(st, vma, addr, old_len, new_len, new_addr, flags)
}

/// Make the VMA for the moved range at `addr` (`copy_vma`), merging where possible.
fn copy_vma(st: &mut State, vma: VmaPtr, addr: usize, len: usize, pgoff: usize) -> Result<VmaPtr, Errno> {
    // A never-faulted anonymous VMA has no pages tied to its offset: give it the offset of
    // its new address so it can merge there.
    let pgoff = if vma.is_anonymous() && vma.anon().is_none() { addr >> PAGE_SHIFT } else { pgoff };
    let (next, prev) = st.mm.find_vma_prev(addr);
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
    if let Some(v) = vma_merge_new_range(st, prev, next, &d, false) {
        return Ok(v);
    }
    let new = vm_area_dup(st, vma)?;
    new.vm_start.set(addr);
    new.vm_end.set(addr + len);
    new.vm_pgoff.set(pgoff);
    vma_link(st, new);
    Ok(new)
}

fn move_vma(
    st: &mut State,
    vma: VmaPtr,
    old_addr: usize,
    old_len: usize,
    new_len: usize,
    new_addr: usize,
    flags: i32,
) -> Result<usize, Errno> {
    if st.mm.map_count() >= st.sys.max_map_count.saturating_sub(3) {
        return Err(Errno::ENOMEM);
    }
    let vm_flags = vma.flags();
    let dontunmap = flags & MREMAP_DONTUNMAP != 0;
    let to_account = if dontunmap { new_len } else { new_len.saturating_sub(old_len) };
    let mut charged = 0;
    if vm_flags & VM_ACCOUNT != 0 && to_account > 0 {
        let (ram, total) = (st.phys.totalram_pages(), st.mm.total_vm);
        st.sys.vm_enough_memory(to_account >> PAGE_SHIFT, ram, total)?;
        charged = to_account >> PAGE_SHIFT;
    }
    // Page tables for the destination first: after this nothing can fail.
    if let Err(e) = crate::memory::prealloc_page_tables(st, new_addr, new_addr + old_len) {
        st.sys.vm_unacct_memory(charged);
        return Err(e);
    }
    let old_start = vma.start();
    let new_pgoff = vma.pgoff_at(old_addr);
    let new_vma = match copy_vma(st, vma, new_addr, new_len, new_pgoff) {
        Ok(v) => v,
        Err(e) => {
            st.sys.vm_unacct_memory(charged);
            return Err(e);
        }
    };
    // The source may have merged into the new VMA (a never-faulted VMA moved next to itself).
    let vma = if old_start >= new_vma.start() && old_start < new_vma.end() { new_vma } else { vma };
    crate::memory::move_page_tables(st, old_addr, new_addr, old_len);

    // Hide VM_ACCOUNT so the unmap below does not give back the charge the new VMA took over.
    let mut account_start = false;
    let mut account_end = false;
    if vm_flags & VM_ACCOUNT != 0 && !dontunmap {
        vma.vm_flags.set(vma.flags() & !VM_ACCOUNT);
        account_start = vma.start() < old_addr;
        account_end = vma.end() > old_addr + old_len;
    }
    let hiwater_vm = st.mm.hiwater_vm;
    st.mm.vm_stat_account(vma.flags(), (new_len >> PAGE_SHIFT) as isize);
    if dontunmap {
        vma.vm_flags.set(vma.flags() & !VM_LOCKED_MASK);
        // The old VMA no longer holds any of the moved pages.
        if new_vma != vma && vma.start() == old_addr && vma.end() == old_addr + old_len {
            crate::vma::set_anon_vma(st, vma, None);
        }
        if vm_flags & VM_LOCKED != 0 {
            st.mm.locked_vm += new_len >> PAGE_SHIFT;
        }
        st.mm.hiwater_vm = hiwater_vm;
        return Ok(new_addr);
    }
    if do_munmap(st, old_addr, old_len).is_err() && vm_flags & VM_ACCOUNT != 0 {
        st.sys.committed_as += (old_len >> PAGE_SHIFT) as isize;
    }
    if vm_flags & VM_LOCKED != 0 {
        st.mm.locked_vm += new_len >> PAGE_SHIFT;
        if new_len > old_len {
            crate::fault::populate(st, new_addr + old_len, new_addr + new_len);
        }
    }
    st.mm.hiwater_vm = hiwater_vm;
    if account_start {
        if let Some(p) = st.mm.find_vma(old_addr.saturating_sub(1)).filter(|p| p.end() <= old_addr) {
            p.vm_flags.set(p.flags() | VM_ACCOUNT);
        }
    }
    if account_end {
        if let Some(n) = st.mm.find_vma(old_addr + old_len).filter(|n| n.start() == old_addr + old_len) {
            n.vm_flags.set(n.flags() | VM_ACCOUNT);
        }
    }
    Ok(new_addr)
}
