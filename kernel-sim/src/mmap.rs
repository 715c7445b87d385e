//! `mmap`, `munmap` and `brk` (Linux's `mm/mmap.c`).
//!
//! * `get_unmapped_area` places mappings top-down below `mmap_base` (the hint first, if it
//!   is free), falling back to a bottom-up search from `TASK_SIZE / 3`; a `MAP_FIXED`
//!   address is taken as given. Anonymous mappings whose length is a multiple of 2 MiB are
//!   aligned to 2 MiB when no hint is given, as kernels with THP do.
//! * `do_mmap` checks the arguments in Linux's order, computes the VMA flags and charges
//!   writable private mappings to the commit limit; `mmap_region` replaces whatever a
//!   `MAP_FIXED` mapping overlaps, merges with compatible neighbours or links a new VMA.
//! * `brk` moves the break as `SYSCALL_DEFINE1(brk)` does: page-aligned old and new break,
//!   shrinking always allowed and unmapping, growing only if `RLIMIT_DATA` allows and no
//!   VMA lies within a page of the new end; the old break is returned on failure.

use crate::machine::State;
use crate::mm::{
    calc_vm_prot_bits, VmFlags, VmaPtr, RLIM_INFINITY, VM_ACCOUNT, VM_DATA_DEFAULT_FLAGS, VM_GROWSDOWN,
    VM_LOCKED, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_NOHUGEPAGE, VM_NORESERVE, VM_SHARED,
    VM_SOFTDIRTY, VM_WRITE,
};
use crate::overcommit::OVERCOMMIT_NEVER;
use crate::page::{offset_in_page, page_align, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::vma::{vm_area_alloc, vma_link, vma_merge_new_range, VmaDesc};
use crate::Errno;

const PMD_SIZE: usize = 2 << 20;
/// `MAP_FIXED_NOREPLACE` (not in every libc crate version).
pub const MAP_FIXED_NOREPLACE: i32 = 0x100000;
pub const MAP_DROPPABLE: i32 = 0x08;
pub const MAP_SHARED_VALIDATE: i32 = 0x03;
pub const MAP_TYPE: i32 = 0x0f;

/// Where a mapping of `len` bytes goes (`__get_unmapped_area`).
pub(crate) fn get_unmapped_area(st: &State, addr: usize, len: usize, flags: i32) -> Result<usize, Errno> {
    let mm = &st.mm;
    let task_size = mm.task_size;
    if len > task_size {
        return Err(Errno::ENOMEM);
    }
    let addr = if flags & libc::MAP_FIXED != 0 {
        addr
    } else if st.thp_align
        && flags & libc::MAP_SHARED == 0
        && addr == 0
        && len.is_multiple_of(PMD_SIZE)
        && len.checked_add(PMD_SIZE).is_some()
    {
        // thp_get_unmapped_area: search for len + 2 MiB and align inside it.
        match arch_get_unmapped_area_topdown(st, 0, len + PMD_SIZE) {
            Some(ret) => {
                let off_sub = ret.wrapping_neg() & (PMD_SIZE - 1);
                if off_sub == 0 {
                    ret + PMD_SIZE
                } else {
                    ret + off_sub
                }
            }
            None => arch_get_unmapped_area_topdown(st, addr, len).ok_or(Errno::ENOMEM)?,
        }
    } else {
        arch_get_unmapped_area_topdown(st, addr, len).ok_or(Errno::ENOMEM)?
    };
    if addr > task_size - len {
        return Err(Errno::ENOMEM);
    }
    if offset_in_page(addr) != 0 {
        return Err(Errno::EINVAL);
    }
    if addr < mm.mmap_min_addr {
        // security_mmap_addr: below mmap_min_addr needs CAP_SYS_RAWIO.
        return Err(Errno::EPERM);
    }
    Ok(addr)
}

/// x86's `arch_get_unmapped_area_topdown` for a non-fixed request.
fn arch_get_unmapped_area_topdown(st: &State, hint: usize, len: usize) -> Option<usize> {
    let mm = &st.mm;
    if len > mm.task_size {
        return None;
    }
    if hint != 0 {
        let hint = hint & PAGE_MASK;
        if mm.task_size - len >= hint {
            let (next, prev) = mm.find_vma_prev(hint);
            let below_next = next.is_none_or(|v| hint + len <= v.start_gap());
            let above_prev = prev.is_none_or(|p| hint >= p.end_gap());
            if below_next && above_prev {
                return Some(hint);
            }
        }
    }
    let low = PAGE_SIZE.max(mm.mmap_min_addr);
    mm.vmas
        .unmapped_area_topdown(len, low, mm.mmap_base)
        .or_else(|| mm.vmas.unmapped_area(len, mm.mmap_legacy_base.max(low), mm.task_size))
}

/// `round_hint_to_min`.
fn round_hint_to_min(st: &State, hint: usize) -> usize {
    let hint = hint & PAGE_MASK;
    if hint != 0 && hint < st.mm.mmap_min_addr {
        return page_align(st.mm.mmap_min_addr);
    }
    hint
}

/// The `mmap` system call for anonymous memory (`ksys_mmap_pgoff` → `do_mmap`).
pub(crate) fn sys_mmap(
    st: &mut State,
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    _fd: i32,
    off: u64,
) -> Result<usize, Errno> {
    if off & (PAGE_SIZE as u64 - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & libc::MAP_ANONYMOUS == 0 {
        // There are no files to map: every descriptor is bad.
        return Err(Errno::EBADF);
    }
    if flags & libc::MAP_HUGETLB != 0 {
        // No huge pages are reserved (vm.nr_hugepages = 0).
        return Err(Errno::ENOMEM);
    }
    do_mmap(st, addr, len, prot, flags, (off >> PAGE_SHIFT) as usize)
}

/// `do_mmap` for an anonymous mapping.
pub(crate) fn do_mmap(
    st: &mut State,
    addr: usize,
    len: usize,
    prot: i32,
    mut flags: i32,
    pgoff_in: usize,
) -> Result<usize, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_FIXED_NOREPLACE != 0 {
        flags |= libc::MAP_FIXED;
    }
    let addr = if flags & libc::MAP_FIXED == 0 { round_hint_to_min(st, addr) } else { addr };
    let len = page_align(len);
    if len == 0 {
        return Err(Errno::ENOMEM);
    }
    if pgoff_in.checked_add(len >> PAGE_SHIFT).is_none() {
        return Err(Errno::EOVERFLOW);
    }
    if st.mm.map_count() > st.sys.max_map_count {
        return Err(Errno::ENOMEM);
    }
    if flags & libc::MAP_32BIT != 0 && flags & libc::MAP_FIXED == 0 {
        // The simulated user range has nothing below 2 GiB.
        return Err(Errno::ENOMEM);
    }
    let addr = get_unmapped_area(st, addr, len, flags)?;
    if flags & MAP_FIXED_NOREPLACE != 0 && st.mm.find_vma_intersection(addr, addr + len).is_some() {
        return Err(Errno::EEXIST);
    }
    let mut vm_flags = calc_vm_prot_bits(prot)
        | calc_vm_flag_bits(flags)
        | st.mm.def_flags
        | VM_MAYREAD
        | VM_MAYWRITE
        | VM_MAYEXEC;
    if !st.mm.mlock_future_ok(vm_flags, len, st.sys.cap_ipc_lock) {
        return Err(Errno::EAGAIN);
    }
    let pgoff = match flags & MAP_TYPE {
        t if t == libc::MAP_SHARED => {
            if vm_flags & VM_GROWSDOWN != 0 {
                return Err(Errno::EINVAL);
            }
            vm_flags |= VM_SHARED | VM_MAYSHARE;
            0
        }
        // Set pgoff according to addr for anon_vma.
        t if t == libc::MAP_PRIVATE => addr >> PAGE_SHIFT,
        // MAP_SHARED_VALIDATE has nothing to validate for anonymous memory and is refused as
        // Linux refuses it; MAP_DROPPABLE is not simulated.
        _ => return Err(Errno::EINVAL),
    };
    if flags & libc::MAP_NORESERVE != 0 && st.sys.overcommit_memory != OVERCOMMIT_NEVER {
        vm_flags |= VM_NORESERVE;
    }
    let addr = mmap_region(st, addr, len, vm_flags, pgoff)?;
    if vm_flags & VM_LOCKED != 0 || flags & libc::MAP_POPULATE != 0 && flags & libc::MAP_NONBLOCK == 0 {
        crate::fault::populate(st, addr, addr + len);
    }
    Ok(addr)
}

/// `calc_vm_flag_bits` for anonymous mappings.
fn calc_vm_flag_bits(flags: i32) -> VmFlags {
    let mut f = 0;
    if flags & libc::MAP_GROWSDOWN != 0 {
        f |= VM_GROWSDOWN;
    }
    if flags & libc::MAP_LOCKED != 0 {
        f |= VM_LOCKED;
    }
    if flags & libc::MAP_STACK != 0 {
        f |= VM_NOHUGEPAGE;
    }
    f
}

/// Whether a mapping with these flags is charged to the commit limit.
fn accountable_mapping(flags: VmFlags) -> bool {
    flags & (VM_NORESERVE | VM_SHARED | VM_WRITE) == VM_WRITE
}

/// Pages of `[start, end)` mapped by VMAs, and how many of those are charged.
fn count_vma_pages_range(st: &State, start: usize, end: usize) -> (usize, usize) {
    let mut pages = 0;
    let mut accounted = 0;
    let mut cur = st.mm.find_vma(start);
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

/// Create the mapping `[addr, addr + len)` (`mmap_region`), replacing anything there.
pub(crate) fn mmap_region(
    st: &mut State,
    addr: usize,
    len: usize,
    mut vm_flags: VmFlags,
    pgoff: usize,
) -> Result<usize, Errno> {
    let end = addr + len;
    let pglen = len >> PAGE_SHIFT;
    let (overlapped, overlapped_accounted) = count_vma_pages_range(st, addr, end);
    if !st.mm.may_expand_vm(vm_flags, pglen) && !st.mm.may_expand_vm(vm_flags, pglen - overlapped) {
        return Err(Errno::ENOMEM);
    }
    // Charge before touching the old mappings, so that a refusal leaves them intact (Linux
    // detaches them first and puts them back on failure).
    let mut charged = 0;
    if accountable_mapping(vm_flags) {
        charged = pglen - overlapped_accounted;
        let (ram, total) = (st.phys.totalram_pages(), st.mm.total_vm);
        st.sys.vm_enough_memory(charged, ram, total)?;
        vm_flags |= VM_ACCOUNT;
    }
    let shmem = if vm_flags & VM_SHARED != 0 {
        let ino = st.next_ino();
        match crate::shmem::new_inode(&mut st.slab, &mut st.phys, crate::shmem::INODE_SHMEM, ino, pglen) {
            Ok(inode) => Some(inode),
            Err(e) => {
                st.sys.vm_unacct_memory(charged);
                return Err(e);
            }
        }
    } else {
        None
    };
    if let Some(inode) = shmem {
        // shmem_acct_size: the object is charged unless MAP_NORESERVE.
        if vm_flags & VM_NORESERVE == 0 {
            let (ram, total) = (st.phys.totalram_pages(), st.mm.total_vm);
            if let Err(e) = st.sys.vm_enough_memory(pglen, ram, total) {
                crate::vma::inode_put(st, inode);
                return Err(e);
            }
            inode.charged.set(pglen);
        }
    }
    // The map count check above allowed one more VMA; make sure a replaced range can be
    // split. Linux gathers the old VMAs first and fails here with ENOMEM too.
    if overlapped > 0 {
        let transfer = if accountable_mapping(vm_flags & !VM_ACCOUNT) { overlapped_accounted } else { 0 };
        if let Err(e) = unmap_for_fixed(st, addr, end, transfer) {
            st.sys.vm_unacct_memory(charged);
            if let Some(inode) = shmem {
                crate::vma::inode_put(st, inode);
            }
            return Err(e);
        }
    }
    let (next, prev) = st.mm.find_vma_prev(addr);
    let d = VmaDesc { start: addr, end, flags: vm_flags, pgoff, file: shmem, anon: None };
    let vma = match if shmem.is_none() { vma_merge_new_range(st, prev, next, &d, false) } else { None } {
        Some(v) => v,
        None => {
            let v = match vm_area_alloc(st) {
                Ok(v) => v,
                Err(e) => {
                    st.sys.vm_unacct_memory(charged);
                    if let Some(inode) = shmem {
                        crate::vma::inode_put(st, inode);
                    }
                    return Err(e);
                }
            };
            v.vm_start.set(addr);
            v.vm_end.set(end);
            v.vm_flags.set(vm_flags);
            v.vm_pgoff.set(pgoff);
            v.vm_file.set(shmem);
            vma_link(st, v);
            v
        }
    };
    st.mm.vm_stat_account(vm_flags, pglen as isize);
    if vm_flags & VM_LOCKED != 0 {
        st.mm.locked_vm += pglen;
    }
    vma.vm_flags.set(vma.flags() | VM_SOFTDIRTY);
    Ok(addr)
}

/// Remove the VMAs a `MAP_FIXED` mapping replaces, keeping their commit charge (it passes
/// to the new mapping, which was charged only for the difference).
fn unmap_for_fixed(st: &mut State, start: usize, end: usize, accounted: usize) -> Result<(), Errno> {
    let Some(vma) = st.mm.find_vma(start).filter(|v| v.start() < end) else {
        return Ok(());
    };
    crate::vma::do_align_munmap(st, vma, start, end)?;
    st.sys.committed_as += accounted as isize;
    Ok(())
}

/// The `munmap` system call.
pub(crate) fn sys_munmap(st: &mut State, addr: usize, len: usize) -> Result<(), Errno> {
    crate::vma::do_munmap(st, addr, len)
}

/// Grow the heap by `[addr, addr + len)` (`do_brk_flags`), extending `brkvma` if it ends
/// at `addr`.
fn do_brk_flags(st: &mut State, brkvma: Option<VmaPtr>, addr: usize, len: usize) -> Result<(), Errno> {
    let flags = VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | st.mm.def_flags;
    let pages = len >> PAGE_SHIFT;
    if !st.mm.may_expand_vm(flags, pages) {
        return Err(Errno::ENOMEM);
    }
    if st.mm.map_count() > st.sys.max_map_count {
        return Err(Errno::ENOMEM);
    }
    let (ram, total) = (st.phys.totalram_pages(), st.mm.total_vm);
    st.sys.vm_enough_memory(pages, ram, total)?;
    let d =
        VmaDesc { start: addr, end: addr + len, flags, pgoff: addr >> PAGE_SHIFT, file: None, anon: None };
    let expanded = match brkvma {
        Some(v) if v.end() == addr => vma_merge_new_range(st, Some(v), None, &d, true),
        _ => None,
    };
    let vma = match expanded {
        Some(v) => v,
        None => {
            let v = match vm_area_alloc(st) {
                Ok(v) => v,
                Err(e) => {
                    st.sys.vm_unacct_memory(pages);
                    return Err(e);
                }
            };
            v.vm_start.set(addr);
            v.vm_end.set(addr + len);
            v.vm_flags.set(flags);
            v.vm_pgoff.set(addr >> PAGE_SHIFT);
            vma_link(st, v);
            v
        }
    };
    st.mm.total_vm += pages;
    st.mm.data_vm += pages;
    if flags & VM_LOCKED != 0 {
        st.mm.locked_vm += pages;
    }
    vma.vm_flags.set(vma.flags() | VM_SOFTDIRTY);
    Ok(())
}

/// The `brk` system call: the new break on success, the old one on failure.
pub(crate) fn sys_brk(st: &mut State, brk: usize) -> usize {
    let origbrk = st.mm.brk;
    let min_brk = st.mm.start_brk;
    if brk < min_brk {
        return origbrk;
    }
    // check_data_rlimit
    let rlim = st.mm.rlimits.data;
    if rlim != RLIM_INFINITY {
        let want = (brk - st.mm.start_brk) as u64 + (st.mm.end_data - st.mm.start_data) as u64;
        if want > rlim {
            return origbrk;
        }
    }
    let newbrk = page_align(brk);
    let oldbrk = page_align(st.mm.brk);
    if newbrk < brk || newbrk > st.mm.task_size {
        return origbrk;
    }
    if oldbrk == newbrk {
        st.mm.brk = brk;
        return brk;
    }
    if brk <= st.mm.brk {
        // Always allow shrinking, but only over what is actually mapped there.
        let Some(brkvma) = st.mm.find_vma(newbrk).filter(|v| v.start() < oldbrk) else {
            return origbrk;
        };
        st.mm.brk = brk;
        if crate::vma::do_align_munmap(st, brkvma, newbrk, oldbrk).is_err() {
            st.mm.brk = origbrk;
            return origbrk;
        }
        return brk;
    }
    // Only the next VMA within a page (or a stack's guard gap) of the new end blocks growth.
    if let Some(next) = st.mm.find_vma(oldbrk) {
        if newbrk + PAGE_SIZE > next.start_gap() {
            return origbrk;
        }
    }
    let start_brk = st.mm.start_brk;
    let brkvma = st.mm.find_vma_prev(oldbrk).1.filter(|v| v.end() > start_brk);
    if do_brk_flags(st, brkvma, oldbrk, newbrk - oldbrk).is_err() {
        return origbrk;
    }
    st.mm.brk = brk;
    if st.mm.def_flags & VM_LOCKED != 0 {
        crate::fault::populate(st, oldbrk, newbrk);
    }
    brk
}
