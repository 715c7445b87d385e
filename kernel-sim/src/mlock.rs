//! `mlock`, `mlock2`, `munlock`, `mlockall`, `munlockall` (Linux's `mm/mlock.c`).
//!
//! Locking sets `VM_LOCKED` (and `VM_LOCKONFAULT` for `MLOCK_ONFAULT`/`MCL_ONFAULT`) on the
//! VMAs of the range, splitting and merging them as `vma_modify` decides, counts the pages
//! in `locked_vm` against `RLIMIT_MEMLOCK` (unless `CAP_IPC_LOCK`), takes the present pages
//! off the LRU lists (`PG_MLOCKED`: reclaim never sees them) and, unless on-fault, faults
//! the rest in (`__mm_populate`). Unlocking puts back on the lists the pages no other
//! locked VMA maps. `mlockall(MCL_FUTURE)` sets `mm->def_flags`, so later mappings and
//! `brk` growth are locked and populated (`sys_brk`'s populate branch).
//!
//! Like Linux, the walk stops at the first hole (`ENOMEM`, the VMAs before it changed), and
//! `VM_SPECIAL` mappings are left unlocked and uncounted.

use crate::machine::State;
use crate::mm::{VmFlags, VmaPtr, VM_LOCKED, VM_LOCKED_MASK, VM_LOCKONFAULT, VM_SPECIAL};
use crate::page::{offset_in_page, page_align, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PG_MLOCKED};
use crate::page_table::{pte_lookup, pte_pfn, pte_present, pte_special};
use crate::vma::vma_modify;
use crate::Errno;

pub const MLOCK_ONFAULT: u32 = 0x01;
pub const MCL_CURRENT: i32 = 1;
pub const MCL_FUTURE: i32 = 2;
pub const MCL_ONFAULT: i32 = 4;

/// `can_do_mlock`: a non-zero `RLIMIT_MEMLOCK`, or `CAP_IPC_LOCK`.
fn can_do_mlock(st: &State) -> bool {
    st.mm.rlimits.memlock != 0 || st.sys.cap_ipc_lock
}

fn lock_limit_pages(st: &State) -> usize {
    (st.mm.rlimits.memlock >> PAGE_SHIFT).min(usize::MAX as u64) as usize
}

/// Pages of `VM_LOCKED` VMAs within `[start, start + len)` (`count_mm_mlocked_page_nr`).
fn count_mm_mlocked_page_nr(st: &State, start: usize, len: usize) -> usize {
    let end = start.saturating_add(len);
    st.mm
        .iter()
        .filter(|v| v.flags() & VM_LOCKED != 0 && v.start() < end && v.end() > start)
        .map(|v| (v.end().min(end) - v.start().max(start)) >> PAGE_SHIFT)
        .sum()
}

/// Lock or unlock the present pages of `[start, end)`, whose VMA's flags are now `newflags`
/// (`mlock_vma_pages_range`).
fn mlock_vma_pages_range(st: &mut State, start: usize, end: usize, newflags: VmFlags) {
    let pgd = st.mm.pgd;
    let mut addr = start;
    while addr < end {
        let e = pte_lookup(&st.phys, pgd, addr).map_or(0, |s| s.get());
        addr += PAGE_SIZE;
        if !pte_present(e) || pte_special(e) {
            continue;
        }
        let pfn = pte_pfn(e);
        if !crate::swap::page_lru_kind(st.phys.page(pfn)) {
            continue;
        }
        if newflags & VM_LOCKED != 0 {
            st.phys.set_mlocked(pfn, true);
        } else if st.phys.page(pfn).has(PG_MLOCKED) && !crate::rmap::mapped_in_locked_vma(st, pfn) {
            st.phys.set_mlocked(pfn, false);
        }
    }
}

/// `mlock_fixup`: give `[start, end)` of `vma` the flags `newflags`.
///
/// # Safety
/// The free rule (see `kptr`) for `vma` and the VMA after it, which a merge may remove
/// (`*prev`, which it may grow, stays).
unsafe fn mlock_fixup(
    st: &mut State,
    prev: &mut Option<VmaPtr>,
    vma: VmaPtr,
    start: usize,
    end: usize,
    newflags: VmFlags,
) -> Result<VmaPtr, Errno> {
    let oldflags = vma.flags();
    if newflags == oldflags || oldflags & VM_SPECIAL != 0 || vma.vm_special.get() != 0 {
        *prev = Some(vma);
        return Ok(vma);
    }
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise; only flags change, so no memory is taken away.
    let vma = unsafe { vma_modify(mm, &mut env, *prev, vma, start, end, newflags) }?;
    *prev = Some(vma);
    let pages = (end - start) >> PAGE_SHIFT;
    if newflags & VM_LOCKED == 0 {
        st.mm.locked_vm = st.mm.locked_vm.saturating_sub(pages);
    } else if oldflags & VM_LOCKED == 0 {
        st.mm.locked_vm += pages;
    }
    vma.vm_flags.set(newflags);
    if newflags & VM_LOCKED == 0 || oldflags & VM_LOCKED == 0 {
        mlock_vma_pages_range(st, start, end, newflags);
    }
    Ok(vma)
}

/// `apply_vma_lock_flags`: `flags` (some of `VM_LOCKED_MASK`) on every VMA of the range.
///
/// # Safety
/// The free rule (see `kptr`) for the VMAs of the range and the one after it.
unsafe fn apply_vma_lock_flags(
    st: &mut State,
    start: usize,
    len: usize,
    flags: VmFlags,
) -> Result<(), Errno> {
    let end = start.wrapping_add(len);
    if end < start {
        return Err(Errno::EINVAL);
    }
    if end == start {
        return Ok(());
    }
    let Some(vma) = st.mm.vma_lookup(start) else {
        return Err(Errno::ENOMEM);
    };
    crate::mprotect::fixup_range(st, vma, start, end, |st, prev, vma, from, to| {
        let newflags = (vma.flags() & !VM_LOCKED_MASK) | flags;
        // SAFETY: the caller's promise; the walk goes on from what this returns.
        unsafe { mlock_fixup(st, prev, vma, from, to, newflags) }
    })
}

/// `mlock(2)` / `mlock2(2)` (`do_mlock`).
///
/// # Safety
/// The free rule (see `kptr`) for the VMAs of the range and the one after it.
pub(crate) unsafe fn sys_mlock(st: &mut State, start: usize, len: usize, flags: u32) -> Result<(), Errno> {
    if flags & !MLOCK_ONFAULT != 0 {
        return Err(Errno::EINVAL);
    }
    if !can_do_mlock(st) {
        return Err(Errno(libc::EPERM));
    }
    let vm_flags = VM_LOCKED | if flags & MLOCK_ONFAULT != 0 { VM_LOCKONFAULT } else { 0 };
    let len = page_align(len.wrapping_add(offset_in_page(start)));
    let start = start & PAGE_MASK;
    let limit = lock_limit_pages(st);
    let mut locked = (len >> PAGE_SHIFT) + st.mm.locked_vm;
    if locked > limit && !st.sys.cap_ipc_lock {
        locked -= count_mm_mlocked_page_nr(st, start, len);
    }
    if locked > limit && !st.sys.cap_ipc_lock {
        return Err(Errno::ENOMEM);
    }
    // SAFETY: the caller's promise.
    unsafe { apply_vma_lock_flags(st, start, len, vm_flags) }?;
    if vm_flags & VM_LOCKONFAULT == 0 {
        mm_populate(st, start, start.wrapping_add(len));
    }
    Ok(())
}

/// `munlock(2)`.
///
/// # Safety
/// As for `sys_mlock`.
pub(crate) unsafe fn sys_munlock(st: &mut State, start: usize, len: usize) -> Result<(), Errno> {
    let len = page_align(len.wrapping_add(offset_in_page(start)));
    let start = start & PAGE_MASK;
    // SAFETY: the caller's promise.
    unsafe { apply_vma_lock_flags(st, start, len, 0) }
}

/// `mlockall(2)` (`apply_mlockall_flags`); `flags == 0` is `munlockall`.
///
/// # Safety
/// The free rule (see `kptr`) for every VMA of the process.
pub(crate) unsafe fn sys_mlockall(st: &mut State, flags: i32, unlock_all: bool) -> Result<(), Errno> {
    if !unlock_all {
        if flags == 0 || flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 || flags == MCL_ONFAULT {
            return Err(Errno::EINVAL);
        }
        if !can_do_mlock(st) {
            return Err(Errno(libc::EPERM));
        }
        if flags & MCL_CURRENT != 0 && st.mm.total_vm > lock_limit_pages(st) && !st.sys.cap_ipc_lock {
            return Err(Errno::ENOMEM);
        }
    }
    st.mm.def_flags &= !VM_LOCKED_MASK;
    let onfault = if flags & MCL_ONFAULT != 0 { VM_LOCKONFAULT } else { 0 };
    if flags & MCL_FUTURE != 0 {
        st.mm.def_flags |= VM_LOCKED | onfault;
    }
    if flags & MCL_FUTURE != 0 && flags & MCL_CURRENT == 0 {
        return Ok(());
    }
    let to_add = if flags & MCL_CURRENT != 0 { VM_LOCKED | onfault } else { 0 };
    let mut prev = None;
    let mut cur = st.mm.vmas.first();
    while let Some(v) = cur {
        let newflags = (v.flags() & !VM_LOCKED_MASK) | to_add;
        let (s, e) = (v.start(), v.end());
        // SAFETY: the caller's promise; the walk goes on from the VMA that covers the range.
        // Errors are ignored, as Linux's apply_mlockall_flags does.
        let fixed = match unsafe { mlock_fixup(st, &mut prev, v, s, e, newflags) } {
            Ok(f) => f,
            Err(_) => {
                prev = Some(v);
                v
            }
        };
        cur = fixed.next();
    }
    if flags & MCL_CURRENT != 0 && onfault == 0 {
        mm_populate(st, 0, usize::MAX);
    }
    Ok(())
}

/// Fault in the locked VMAs of `[start, end)`, skipping holes, I/O mappings, inaccessible
/// and on-fault ones (`__mm_populate` with errors ignored).
pub(crate) fn mm_populate(st: &mut State, start: usize, end: usize) {
    let mut nstart = start;
    while nstart < end {
        let Some(v) = st.mm.find_vma(nstart).filter(|v| v.start() < end) else { return };
        let (s, e) = (nstart.max(v.start()), end.min(v.end()));
        let skip =
            v.flags() & (crate::mm::VM_IO | crate::mm::VM_PFNMAP | VM_LOCKONFAULT) != 0 || !v.is_accessible();
        if !skip {
            crate::fault::populate(st, s, e);
        }
        nstart = e;
    }
}
