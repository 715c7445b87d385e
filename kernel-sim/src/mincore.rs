//! `mincore` (Linux's `mm/mincore.c`): which pages of a range are resident.
//!
//! A page is resident when its PTE is present — including the shared zero page mapped by a
//! read — or, for a shared or file mapping, when its page is in the inode's page cache even
//! if unmapped (so shmem pages dropped with `MADV_DONTNEED` still count). The range must be
//! mapped throughout (`ENOMEM` at the first hole). The vector is a slice here: one too short
//! is `EFAULT`, as an unwritable buffer is for the system call.

use crate::machine::State;
use crate::page::{offset_in_page, PAGE_SHIFT, PAGE_SIZE};
use crate::page_table::{pte_lookup, pte_present};
use crate::Errno;

pub(crate) fn sys_mincore(st: &mut State, start: usize, len: usize, vec: &mut [u8]) -> Result<(), Errno> {
    if offset_in_page(start) != 0 {
        return Err(Errno::EINVAL);
    }
    let Some(end) = start.checked_add(len).filter(|&e| e <= st.mm.task_size) else {
        return Err(Errno::ENOMEM);
    };
    let pages = (len >> PAGE_SHIFT) + usize::from(offset_in_page(len) != 0);
    if vec.len() < pages {
        return Err(Errno::EFAULT);
    }
    let mut addr = start;
    let mut i = 0;
    while i < pages {
        let Some(vma) = st.mm.vma_lookup(addr) else {
            return Err(Errno::ENOMEM);
        };
        let stop = vma.end().min(end.next_multiple_of(PAGE_SIZE));
        while addr < stop {
            let e = pte_lookup(&st.phys, st.mm.pgd, addr).map_or(0, |s| s.get());
            let resident = if pte_present(e) {
                true
            } else if crate::page_table::is_swap_pte(e) {
                // A swapped-out page counts if it is still in the swap cache (`mincore_swap`).
                st.phys.swap.cached_page(crate::page_table::pte_to_swp_offset(e)).is_some()
            } else if let Some(inode) = vma.file() {
                crate::shmem::find_page(&st.phys, &inode, vma.pgoff_at(addr)).is_some()
            } else {
                false
            };
            vec[i] = u8::from(resident);
            i += 1;
            addr += PAGE_SIZE;
        }
    }
    Ok(())
}
