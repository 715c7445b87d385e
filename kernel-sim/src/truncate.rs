//! Taking pages out of a file's page cache (Linux's `mm/truncate.c`): a new, smaller size
//! (`truncate_setsize`, which also unmaps the pages beyond it from every mapping, private
//! copies included, so the next touch there is `SIGBUS`), and dropping clean, unmapped
//! pages on request (`invalidate_mapping_pages`, for `POSIX_FADV_DONTNEED`).

use crate::machine::State;
use crate::page::{PAGE_SHIFT, PAGE_SIZE, PG_DIRTY};
use crate::physmem::PhysMem;
use crate::shmem::{Inode, InodePtr, MAX_INODE_PAGES};

/// Zap the PTEs of `mm` that map `inode` at indices `[from, to)`; whether any VMA of `mm`
/// maps part of that range.
fn zap_inode_range(
    mm: &mut crate::mm::Mm,
    phys: &mut PhysMem,
    host: crate::mmu::Host,
    inode: InodePtr,
    from: usize,
    to: usize,
) -> bool {
    let mut any = false;
    let mut cur = mm.vmas.first();
    while let Some(v) = cur {
        cur = v.next();
        if v.file() != Some(inode) {
            continue;
        }
        let Some((s, e)) = v.object_range(from, to) else { continue };
        any = true;
        // SAFETY: memory beyond the end of a file, or in a hole punched into it, is not
        // the program's to keep: a mapping's contents follow its object, as
        // `Machine::mmap`'s caller accepted.
        unsafe { crate::memory::zap_page_range(mm, phys, host, s, e) };
    }
    any
}

/// Zap every PTE of every process that maps `inode` at indices `[from, to)`
/// (`unmap_mapping_range` with `even_cows`: private copies go too). Another process's host
/// view cannot be changed from here: it is marked stale, rebuilt when that process next
/// takes the machine lock, and the frames freed meanwhile wait for it (as a TLB shootdown
/// would). The caller clears `defer_user_frees` once it has freed the pages it took.
pub(crate) fn unmap_mapping_range(st: &mut State, inode: InodePtr, from: usize, to: usize) {
    zap_inode_range(&mut st.mm, &mut st.phys, st.host, inode, from, to);
    let host = st.host.detached();
    for i in 0..crate::machine::MAX_TASKS {
        if i == st.current || st.tasks[i].pid == 0 {
            continue;
        }
        let maps = st.tasks[i].mm.vmas.first().is_some();
        if !maps {
            continue;
        }
        // Before anything is freed: the process may still reach what its PTEs mapped.
        st.phys.defer_user_frees = true;
        if zap_inode_range(&mut st.tasks[i].mm, &mut st.phys, host, inode, from, to) {
            st.tasks[i].stale = true;
        }
    }
    st.free_deferred_if_settled();
}

/// Give `inode` the size `size` in bytes, with its cache and mappings following.
pub(crate) fn truncate_setsize(st: &mut State, inode: InodePtr, size: u64) {
    let old = inode.size_bytes.get();
    inode.set_size_bytes(size);
    if size >= old {
        return;
    }
    let hole = size.div_ceil(PAGE_SIZE as u64).min(MAX_INODE_PAGES as u64) as usize;
    unmap_mapping_range(st, inode, hole, MAX_INODE_PAGES);
    // SAFETY: no PTE maps these pages any more (just zapped).
    unsafe { crate::shmem::truncate_range(&mut st.phys, &inode, hole, MAX_INODE_PAGES) };
    // What another process's stale view may reach has been held back; later frees need not.
    st.phys.defer_user_frees = false;
    let tail = (size as usize) & (PAGE_SIZE - 1);
    if tail != 0 {
        if let Some(pfn) = crate::shmem::find_page(&st.phys, &inode, (size >> PAGE_SHIFT) as usize) {
            // SAFETY: the part of a page-cache frame beyond the new end of the file, which
            // reads as zero from now on (the mapping's contents follow the file).
            unsafe { core::ptr::write_bytes(st.phys.frame(pfn).add(tail), 0, PAGE_SIZE - tail) };
        }
    }
}

/// Drop the clean pages of `inode` at indices `[start, end)` that nothing maps. Returns how
/// many went.
pub(crate) fn invalidate_mapping_pages(phys: &mut PhysMem, inode: &Inode, start: usize, end: usize) -> usize {
    let mut dropped = 0;
    let mut from = start;
    while let Some((index, pfn)) = crate::shmem::next_page(phys, inode, from, end) {
        from = index + 1;
        let page = phys.page(pfn);
        if page.has(PG_DIRTY) || page.mapcount.get() != 0 {
            continue;
        }
        // SAFETY: the page is mapped nowhere (checked) and clean, so its contents are the
        // file's and a later fault reads them again.
        unsafe { crate::shmem::truncate_range(phys, inode, index, index + 1) };
        dropped += 1;
    }
    dropped
}
