//! The system calls `mmap`, `munmap` and `brk`, and where a mapping goes (Linux's
//! `mm/mmap.c`). What they do to the VMAs is `vma`'s work, as in Linux's `mm/vma.c`.
//!
//! * `get_unmapped_area` places mappings top-down below `mmap_base` (the hint first, if it
//!   is free), falling back to a bottom-up search from `TASK_SIZE / 3`; a `MAP_FIXED`
//!   address is taken as given. Anonymous mappings whose length is a multiple of 2 MiB are
//!   aligned to 2 MiB when no hint is given, as kernels with THP do.
//! * `do_mmap` checks the arguments in Linux's order and computes the VMA flags;
//!   `vma::mmap_region` charges and creates the mapping; then `MAP_POPULATE` and
//!   `MAP_LOCKED` fault it in.
//! * `sys_brk` moves the break as `SYSCALL_DEFINE1(brk)` does: page-aligned old and new
//!   break, shrinking always allowed and unmapping, growing (`vma::do_brk_flags`) only if
//!   `RLIMIT_DATA` allows and no VMA lies within a page of the new end; the old break is
//!   returned on failure.
//! * `sys_munmap` is `vma::do_munmap`.

use crate::file::{File, FMODE_READ, FMODE_WRITE};
use crate::machine::State;
use crate::mm::{
    calc_vm_prot_bits, VmFlags, RLIM_INFINITY, VM_GROWSDOWN, VM_LOCKED, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE,
    VM_MAYWRITE, VM_NOHUGEPAGE, VM_NORESERVE, VM_SHARED,
};
use crate::overcommit::OVERCOMMIT_NEVER;
use crate::page::{offset_in_page, page_align, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::vma::{do_brk_flags, mmap_region};
use crate::Errno;

const PMD_SIZE: usize = 2 << 20;
/// `MAP_FIXED_NOREPLACE` (not in every libc crate version).
pub const MAP_FIXED_NOREPLACE: i32 = 0x100000;
pub const MAP_TYPE: i32 = 0x0f;

/// Where a mapping of `len` bytes goes (`__get_unmapped_area`); `file` says whether it maps
/// a file (never THP-aligned here).
pub(crate) fn get_unmapped_area(
    st: &State,
    addr: usize,
    len: usize,
    flags: i32,
    file: bool,
) -> Result<usize, Errno> {
    let mm = &st.mm;
    let task_size = mm.task_size;
    if len > task_size {
        return Err(Errno::ENOMEM);
    }
    let addr = if flags & libc::MAP_FIXED != 0 {
        addr
    } else if st.thp_align
        && !file
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

/// The `mmap` system call (`ksys_mmap_pgoff` → `do_mmap`).
///
/// # Safety
/// As for `do_mmap`.
pub(crate) unsafe fn sys_mmap(
    st: &mut State,
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: u64,
) -> Result<usize, Errno> {
    if off & (PAGE_SIZE as u64 - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = if flags & libc::MAP_ANONYMOUS == 0 { Some(st.files.get(fd)?) } else { None };
    if flags & libc::MAP_HUGETLB != 0 && file.is_some() {
        // Only hugetlbfs files take huge pages.
        return Err(Errno::EINVAL);
    }
    if flags & libc::MAP_HUGETLB != 0 {
        // No huge pages are reserved (vm.nr_hugepages = 0).
        return Err(Errno::ENOMEM);
    }
    // SAFETY: the caller's promise.
    unsafe { do_mmap(st, file, addr, len, prot, flags, (off >> PAGE_SHIFT) as usize) }
}

/// `do_mmap`: the argument checks in Linux's order, the VMA flags, then `mmap_region`.
///
/// # Safety
/// `Machine::mmap`'s condition (the range rule, with `MAP_FIXED`, for the range replaced),
/// and the free rule (see `kptr`) for the VMAs a `MAP_FIXED` mapping replaces, the VMA
/// after the new mapping (which a merge may remove) and the page tables freed.
pub(crate) unsafe fn do_mmap(
    st: &mut State,
    file: Option<File>,
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
    let addr = get_unmapped_area(st, addr, len, flags, file.is_some())?;
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
    let pgoff = match file {
        Some(f) => {
            vm_flags = file_vm_flags(f, vm_flags, prot, flags)?;
            pgoff_in
        }
        None => match flags & MAP_TYPE {
            t if t == libc::MAP_SHARED => {
                if vm_flags & VM_GROWSDOWN != 0 {
                    return Err(Errno::EINVAL);
                }
                vm_flags |= VM_SHARED | VM_MAYSHARE;
                0
            }
            // Set pgoff according to addr for anon_vma.
            t if t == libc::MAP_PRIVATE => addr >> PAGE_SHIFT,
            // MAP_SHARED_VALIDATE has nothing to validate for anonymous memory and is refused
            // as Linux refuses it; MAP_DROPPABLE is not simulated.
            _ => return Err(Errno::EINVAL),
        },
    };
    if flags & libc::MAP_NORESERVE != 0 && st.sys.overcommit_memory != OVERCOMMIT_NEVER {
        vm_flags |= VM_NORESERVE;
    }
    let inode = file.map(|f| f.inode);
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise; without MAP_FIXED (or with MAP_FIXED_NOREPLACE) the range
    // is free, so nothing is replaced. The inode outlives the call: the descriptor holds it.
    let addr = unsafe { mmap_region(mm, &mut env, addr, len, vm_flags, pgoff, inode) }?;
    if vm_flags & VM_LOCKED != 0 || flags & libc::MAP_POPULATE != 0 && flags & libc::MAP_NONBLOCK == 0 {
        crate::fault::populate(st, addr, addr + len);
    }
    Ok(addr)
}

/// The checks and flags of a file mapping (the file branch of `do_mmap`).
fn file_vm_flags(f: File, mut vm_flags: VmFlags, prot: i32, flags: i32) -> Result<VmFlags, Errno> {
    let t = flags & MAP_TYPE;
    if t == libc::MAP_SHARED_VALIDATE && flags & !LEGACY_MAP_MASK != 0 {
        return Err(Errno(libc::EOPNOTSUPP));
    }
    if t == libc::MAP_SHARED || t == libc::MAP_SHARED_VALIDATE {
        if prot & libc::PROT_WRITE != 0 && f.f_mode & FMODE_WRITE == 0 {
            return Err(Errno::EACCES);
        }
        vm_flags |= VM_SHARED | VM_MAYSHARE;
        if f.f_mode & FMODE_WRITE == 0 {
            vm_flags &= !(VM_MAYWRITE | VM_SHARED);
        }
    } else if t != libc::MAP_PRIVATE {
        return Err(Errno::EINVAL);
    }
    if f.f_mode & FMODE_READ == 0 {
        return Err(Errno::EACCES);
    }
    if !f.inode.is_reg() {
        // Directories and special files have no mmap operation here.
        return Err(Errno::ENODEV);
    }
    if vm_flags & VM_GROWSDOWN != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(vm_flags)
}

/// Linux's value (the libc crate lacks it).
const MAP_UNINITIALIZED: i32 = 0x400_0000;

/// The flags `MAP_SHARED` ignores and `MAP_SHARED_VALIDATE` accepts (`LEGACY_MAP_MASK`).
const LEGACY_MAP_MASK: i32 = libc::MAP_SHARED
    | libc::MAP_PRIVATE
    | libc::MAP_FIXED
    | libc::MAP_ANONYMOUS
    | libc::MAP_DENYWRITE
    | libc::MAP_EXECUTABLE
    | MAP_UNINITIALIZED
    | libc::MAP_GROWSDOWN
    | libc::MAP_LOCKED
    | libc::MAP_NORESERVE
    | libc::MAP_POPULATE
    | libc::MAP_NONBLOCK
    | libc::MAP_STACK
    | libc::MAP_HUGETLB;

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

/// The `munmap` system call.
///
/// # Safety
/// As for `vma::do_munmap`.
pub(crate) unsafe fn sys_munmap(st: &mut State, addr: usize, len: usize) -> Result<(), Errno> {
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promise.
    unsafe { crate::vma::do_munmap(mm, &mut env, addr, len) }
}

/// The `brk` system call: the new break on success, the old one on failure.
///
/// # Safety
/// When `brk` is below the break, the range rule (see `Machine`) for the heap between them,
/// and the free rule (see `kptr`) for the heap's VMA and the page tables freed.
pub(crate) unsafe fn sys_brk(st: &mut State, brk: usize) -> usize {
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
        let (mm, mut env) = st.vma_env();
        // SAFETY: the caller's promise for the heap above the new break; `brkvma` is the
        // first VMA there and not used again.
        if unsafe { crate::vma::do_align_munmap(mm, &mut env, brkvma, newbrk, oldbrk) }.is_err() {
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
    let (mm, mut env) = st.vma_env();
    if do_brk_flags(mm, &mut env, brkvma, oldbrk, newbrk - oldbrk, 0).is_err() {
        return origbrk;
    }
    st.mm.brk = brk;
    if st.mm.def_flags & VM_LOCKED != 0 {
        crate::fault::populate(st, oldbrk, newbrk);
    }
    brk
}
