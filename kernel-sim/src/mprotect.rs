//! `mprotect` (Linux's `mm/mprotect.c`): change the protection of whole VMAs or parts of
//! them, splitting and merging as `vma_modify` decides, and change the page-table entries
//! (and the host pages) already present.
//!
//! Like Linux it works VMA by VMA from the start of the range and stops at the first hole,
//! so a range with a hole in the middle is changed up to the hole and reported `ENOMEM`.
//! Making a private mapping writable charges it to the commit limit (`VM_ACCOUNT`); making
//! a never-faulted one read-only again gives the charge back.

use crate::machine::State;
use crate::mm::{
    calc_vm_prot_bits, VmFlags, VmaPtr, VM_ACCESS_FLAGS, VM_ACCOUNT, VM_GROWSDOWN, VM_LOCKED, VM_NORESERVE,
    VM_SHARED, VM_WRITE,
};
use crate::page::{offset_in_page, page_align, PAGE_SHIFT};
use crate::vma::vma_modify;
use crate::Errno;

const PROT_GROWSDOWN: i32 = 0x0100_0000;
const PROT_GROWSUP: i32 = 0x0200_0000;
const PROT_SEM: i32 = 0x8;

/// The `mprotect` system call.
///
/// # Safety
/// `Machine::mprotect`'s condition (the range rule unless the protection only grows), and
/// the free rule (see `kptr`) for the VMAs of the range and the one after it, which merges
/// may remove.
pub(crate) unsafe fn sys_mprotect(st: &mut State, start: usize, len: usize, prot: i32) -> Result<(), Errno> {
    let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
    let prot = prot & !(PROT_GROWSDOWN | PROT_GROWSUP);
    if grows == PROT_GROWSDOWN | PROT_GROWSUP {
        return Err(Errno::EINVAL);
    }
    if offset_in_page(start) != 0 {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(());
    }
    let len = page_align(len);
    let end = start.wrapping_add(len);
    if end <= start {
        return Err(Errno::ENOMEM);
    }
    if prot & !(libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC | PROT_SEM) != 0 {
        return Err(Errno::EINVAL);
    }
    let Some(vma) = st.mm.find_vma(start).filter(|v| v.start() < end) else {
        return Err(Errno::ENOMEM);
    };
    let mut start = start;
    if grows & PROT_GROWSDOWN != 0 {
        start = vma.start();
        if vma.flags() & VM_GROWSDOWN == 0 {
            return Err(Errno::EINVAL);
        }
    } else {
        if vma.start() > start {
            return Err(Errno::ENOMEM);
        }
        if grows & PROT_GROWSUP != 0 {
            // No VMA grows up on x86-64.
            return Err(Errno::EINVAL);
        }
    }
    let new_prot = calc_vm_prot_bits(prot);
    fixup_range(st, vma, start, end, |st, prev, vma, from, to| {
        let newflags = new_prot | (vma.flags() & !VM_ACCESS_FLAGS);
        // VM_MAY* say what may ever be allowed (always everything for anonymous memory).
        if newflags & !(newflags >> 4) & VM_ACCESS_FLAGS != 0 {
            return Err(Errno::EACCES);
        }
        // SAFETY: the caller's promises, for part of the range; `vma` and its old
        // neighbour are not used again (the walk goes on from what this returns).
        unsafe { mprotect_fixup(st, prev, vma, from, to, newflags) }
    })
}

/// The walk `mprotect` and `mlock` share (Linux writes it in each of `do_mprotect_pkey` and
/// `apply_vma_lock_flags`): from `vma`, the first VMA of `[start, end)`, `fixup` changes
/// each VMA's part of the range — `(state, prev, vma, from, to)`, returning the VMA that
/// covers it afterwards, from which the walk goes on (it never touches `vma` or `prev`'s
/// old neighbour again). Stops at the first hole with `ENOMEM`, the parts before it
/// changed.
pub(crate) fn fixup_range(
    st: &mut State,
    mut vma: VmaPtr,
    start: usize,
    end: usize,
    mut fixup: impl FnMut(&mut State, &mut Option<VmaPtr>, VmaPtr, usize, usize) -> Result<VmaPtr, Errno>,
) -> Result<(), Errno> {
    let mut prev = if start > vma.start() { Some(vma) } else { vma.prev() };
    let (mut nstart, mut tmp) = (start, vma.start());
    loop {
        if vma.start() != tmp {
            return Err(Errno::ENOMEM);
        }
        tmp = vma.end().min(end);
        let fixed = fixup(st, &mut prev, vma, nstart, tmp)?;
        tmp = fixed.end();
        nstart = tmp;
        if nstart >= end {
            return Ok(());
        }
        match fixed.next() {
            Some(n) if n.start() < end => vma = n,
            _ => return Err(Errno::ENOMEM),
        }
    }
}

/// Apply `newflags` to `[start, end)` of `vma` (`mprotect_fixup`). Returns the VMA that now
/// covers the range.
///
/// # Safety
/// The range rule (see `Machine`) for `[start, end)` unless `newflags` only grows its
/// protection, and the free rule (see `kptr`) for `vma` and the VMA after it, which a merge
/// may remove (`*pprev`, which it may grow, stays).
pub(crate) unsafe fn mprotect_fixup(
    st: &mut State,
    pprev: &mut Option<VmaPtr>,
    vma: VmaPtr,
    start: usize,
    end: usize,
    mut newflags: VmFlags,
) -> Result<VmaPtr, Errno> {
    let oldflags = vma.flags();
    if newflags == oldflags {
        *pprev = Some(vma);
        return Ok(vma);
    }
    let nrpages = (end - start) >> PAGE_SHIFT;
    let mut charged = 0;
    if newflags & VM_WRITE != 0 {
        if !st.mm.may_expand_vm(newflags, nrpages) && st.mm.may_expand_vm(oldflags, nrpages) {
            return Err(Errno::ENOMEM);
        }
        if oldflags & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE) == 0 {
            charged = nrpages;
            let (ram, total) = (st.phys.totalram_pages(), st.mm.total_vm);
            st.sys.vm_enough_memory(charged, ram, total)?;
            newflags |= VM_ACCOUNT;
        }
    } else if oldflags & VM_ACCOUNT != 0 && vma.is_anonymous() && vma.anon().is_none() {
        newflags &= !VM_ACCOUNT;
    }
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise for `vma` and the VMA after it.
    let vma = match unsafe { vma_modify(mm, &mut env, *pprev, vma, start, end, newflags) } {
        Ok(v) => v,
        Err(e) => {
            st.sys.vm_unacct_memory(charged);
            return Err(e);
        }
    };
    *pprev = Some(vma);
    vma.vm_flags.set(newflags);
    // SAFETY: the caller's promise for [start, end).
    unsafe { crate::memory::change_protection(st, start, end, newflags) };
    if oldflags & VM_ACCOUNT != 0 && newflags & VM_ACCOUNT == 0 {
        st.sys.vm_unacct_memory(nrpages);
    }
    // A locked private mapping made writable is faulted in for writing straight away.
    if oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED) == VM_LOCKED && newflags & VM_WRITE != 0 {
        crate::fault::populate(st, start, end);
    }
    st.mm.vm_stat_account(oldflags, -(nrpages as isize));
    st.mm.vm_stat_account(newflags, nrpages as isize);
    Ok(vma)
}
