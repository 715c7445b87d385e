//! The page cache of host files (Linux's `mm/filemap.c` and `mm/readahead.c`): finding a
//! file's page, and reading the missing ones from the host file — which stands for the
//! disk — in runs, with the read-around a page fault starts.
//!
//! A miss reads the pages of a window at once (`preadv` into the new frames, the part
//! beyond the end of the file left zero) and counts them in `pgpgin`; the fault that caused
//! it is a major fault. The window of a fault is Linux's mmap read-around: `ra_pages` (32
//! pages, `read_ahead_kb` = 128) centred on the page, or starting at it for
//! `MADV_SEQUENTIAL`, or the page alone for `MADV_RANDOM`. Read-ahead state kept across
//! reads (the async window, `mmap_miss`) is not modelled.

use crate::machine::State;
use crate::mm::{VmaPtr, VM_RAND_READ, VM_SEQ_READ};
use crate::page::{PAGE_SHIFT, PAGE_SIZE};
use crate::shmem::InodePtr;
use crate::Errno;

/// `ra_pages` of the backing device: `read_ahead_kb` = 128.
pub const RA_PAGES: usize = 32;

/// The longest run read with one `preadv`.
const MAX_RUN: usize = 32;

/// The window of pages a fault at `index` of `vma` reads (`do_sync_mmap_readahead`).
pub(crate) fn fault_window(vma: VmaPtr, index: usize) -> (usize, usize) {
    let f = vma.flags();
    if f & VM_RAND_READ != 0 {
        (index, 1)
    } else if f & VM_SEQ_READ != 0 {
        (index, RA_PAGES)
    } else {
        (index.saturating_sub(RA_PAGES / 2), RA_PAGES)
    }
}

/// Page `index` of `inode`, read from the host with the pages of `[index, index + count)`
/// that are missing if it is not cached. Returns the frame, and whether the host file was
/// read for it (the mark of a major fault). `EIO` if the host could not read it.
pub(crate) fn filemap_get_page(
    st: &mut State,
    inode: InodePtr,
    index: usize,
    count: usize,
) -> Result<(usize, bool), Errno> {
    filemap_get_page_around(st, inode, index, index, count)
}

/// As `filemap_get_page`, reading the window `[start, start + count)` (which must contain
/// `index`) on a miss.
pub(crate) fn filemap_get_page_around(
    st: &mut State,
    inode: InodePtr,
    index: usize,
    start: usize,
    count: usize,
) -> Result<(usize, bool), Errno> {
    if let Some(pfn) = crate::shmem::find_page(&st.phys, &inode, index) {
        return Ok((pfn, false));
    }
    if !inode.is_reg() || index >= inode.size_pages.get() {
        // Beyond the end of a file there is nothing to read: a zeroed page (a write there
        // is growing the file).
        return crate::shmem::get_page(&mut st.phys, &inode, index).map(|p| (p, false));
    }
    let end = start.saturating_add(count).min(inode.size_pages.get()).max(index + 1);
    let start = start.min(index);
    let mut i = start;
    while i < end {
        if crate::shmem::find_page(&st.phys, &inode, i).is_some() {
            i += 1;
            continue;
        }
        let mut n = 1;
        while n < MAX_RUN && i + n < end && crate::shmem::find_page(&st.phys, &inode, i + n).is_none() {
            n += 1;
        }
        let r = read_run(st, inode, i, n);
        if (i..i + n).contains(&index) {
            r?;
        }
        i += n;
    }
    crate::shmem::find_page(&st.phys, &inode, index).map(|p| (p, true)).ok_or(Errno(libc::EIO))
}

/// Read pages `[first, first + n)`, none cached, from the host into new cache pages.
fn read_run(st: &mut State, inode: InodePtr, first: usize, n: usize) -> Result<(), Errno> {
    let mut iov = [libc::iovec { iov_base: core::ptr::null_mut(), iov_len: 0 }; MAX_RUN];
    let mut got = 0;
    let mut err = None;
    for (k, v) in iov.iter_mut().enumerate().take(n) {
        match crate::shmem::add_to_page_cache(&mut st.phys, &inode, first + k) {
            Ok(pfn) => {
                *v = libc::iovec { iov_base: st.phys.frame(pfn).cast(), iov_len: PAGE_SIZE };
                got += 1;
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let fd = crate::file::host_read_fd(&inode);
    let off = (first as i64) << PAGE_SHIFT;
    let mut read_ok = got > 0;
    if got > 0 {
        // SAFETY: each iovec is a whole frame just added to the cache, zeroed and mapped
        // nowhere yet, so the host may write into it; `fd` is the inode's own descriptor.
        let r = unsafe { libc::preadv(fd, iov.as_ptr(), got as i32, off) };
        if r < 0 {
            read_ok = false;
        } else {
            st.phys.vmstat.pgpgin += (got * (PAGE_SIZE >> 10)) as u64;
        }
    }
    if !read_ok && got > 0 {
        // SAFETY: the pages just added, which nothing maps or has seen.
        unsafe { crate::shmem::truncate_range(&mut st.phys, &inode, first, first + got) };
        return Err(Errno(libc::EIO));
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
