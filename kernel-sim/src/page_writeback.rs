//! Dirty page-cache pages and writing them back to their host file (Linux's
//! `mm/page-writeback.c`, with `page_mkclean` from `mm/rmap.c`).
//!
//! A page of a regular file becomes dirty when `pwrite` copies into it or when a shared
//! mapping first writes it: shared file mappings map their pages read-only until then
//! (`vma_wants_writenotify`), so that first write faults and `do_wp_page` marks the page
//! dirty before making the PTE writable. Writing a page back (`msync(MS_SYNC)`, `fsync`,
//! `posix_fadvise(DONTNEED)`, the flusher's pass `Machine::sync`, and the last reference to
//! the inode going) first write-protects and cleans every PTE mapping it, so the next write
//! faults and dirties it again, then `pwrite`s its bytes up to the end of the file to the
//! host. Writes are synchronous: `Writeback` is always 0. A page the host refuses stays
//! dirty and the call reports `EIO`, so nothing written is lost.

use crate::machine::State;
use crate::mm::VM_SHARED;
use crate::mmu::Batch;
use crate::page::{PAGE_SHIFT, PAGE_SIZE, PG_DIRTY, PG_FILE};
use crate::page_table::{for_each_pte, pte_host_prot, pte_pfn, pte_present, pte_special, PTE_DIRTY, PTE_RW};
use crate::physmem::PhysMem;
use crate::shmem::{Inode, InodePtr};
use crate::Errno;

/// Mark page-cache page `pfn` of `inode` dirty (`folio_mark_dirty`), counting it once.
pub(crate) fn set_page_dirty(phys: &mut PhysMem, inode: &Inode, pfn: usize) {
    let page = phys.page(pfn);
    if page.has(PG_DIRTY) || !page.has(PG_FILE) {
        return;
    }
    page.set(PG_DIRTY);
    inode.nr_dirty.set(inode.nr_dirty.get() + 1);
    phys.vmstat.nr_dirty += 1;
    phys.vmstat.nr_dirtied += 1;
}

/// Write-protect and clean every PTE of the process that maps a dirty page of `inode` at
/// an index in `[start, end)` (`page_mkclean` over the file's shared mappings; private
/// ones map cache pages read-only anyway).
pub(crate) fn page_mkclean(st: &mut State, inode: InodePtr, start: usize, end: usize) {
    let (dm, pgd, host) = (st.phys.direct_map(), st.mm.pgd, st.host);
    let phys = &mut st.phys;
    let mut ctx = st.mm.context;
    let mut batch = Batch::protecting(host);
    for v in st.mm.iter() {
        if v.file() != Some(inode) || v.flags() & VM_SHARED == 0 {
            continue;
        }
        let Some((a, b)) = v.object_range(start, end) else { continue };
        for_each_pte(dm, pgd, a, b, &mut |addr, slot| {
            let e = slot.get();
            if !pte_present(e) || pte_special(e) || e & (PTE_RW | PTE_DIRTY) == 0 {
                return;
            }
            if !phys.page(pte_pfn(e)).has(PG_FILE) {
                return;
            }
            let n = e & !(PTE_RW | PTE_DIRTY);
            slot.set(n);
            // page_mkclean_one clears each entry with ptep_clear_flush: one flush a page.
            crate::tlb::flush_tlb_mm_range(phys, &mut ctx, addr, addr + crate::page::PAGE_SIZE);
            // SAFETY: `n` was just written to the PTE of `addr` (the walk's slot for it),
            // and nothing else changes that entry before the batch is flushed.
            unsafe { batch.push(addr, 0, pte_host_prot(n)) };
        });
    }
    drop(batch);
    st.mm.context = ctx;
}

/// Write the dirty pages of `inode` at indices `[start, end)` to the host file, without
/// looking at mappings (the caller cleaned them, or there are none).
pub(crate) fn write_dirty_pages(
    phys: &mut PhysMem,
    inode: &Inode,
    start: usize,
    end: usize,
) -> Result<(), Errno> {
    if inode.nr_dirty.get() == 0 {
        return Ok(());
    }
    let mut result = Ok(());
    let mut from = start;
    while let Some((index, pfn)) = crate::shmem::next_page(phys, inode, from, end) {
        from = index + 1;
        if !phys.page(pfn).has(PG_DIRTY) {
            continue;
        }
        let pos = (index as u64) << PAGE_SHIFT;
        let size = inode.size_bytes.get();
        let len = if pos >= size { 0 } else { (size - pos).min(PAGE_SIZE as u64) as usize };
        if write_page(crate::file::host_write_fd(inode), phys.frame(pfn), len, pos).is_err() {
            result = Err(Errno(libc::EIO));
            continue;
        }
        phys.page(pfn).clear(PG_DIRTY);
        inode.nr_dirty.set(inode.nr_dirty.get() - 1);
        phys.vmstat.nr_dirty -= 1;
        phys.vmstat.nr_written += 1;
        phys.vmstat.pgpgout += (PAGE_SIZE >> 10) as u64;
    }
    result
}

/// `pwrite` all of `len` bytes at `frame` to `fd` at `pos`.
fn write_page(fd: i32, frame: *mut u8, len: usize, pos: u64) -> Result<(), ()> {
    let mut done = 0;
    while done < len {
        // SAFETY: `frame` is a page-cache frame of PAGE_SIZE bytes and `len <= PAGE_SIZE`;
        // the host only reads it.
        let n = unsafe { libc::pwrite(fd, frame.add(done).cast(), len - done, (pos + done as u64) as i64) };
        if n <= 0 {
            return Err(());
        }
        done += n as usize;
    }
    Ok(())
}

/// Write back `inode`'s dirty pages at indices `[start, end)`: clean their mappings, then
/// write them (`filemap_write_and_wait_range`).
pub(crate) fn writeback_range(
    st: &mut State,
    inode: InodePtr,
    start: usize,
    end: usize,
) -> Result<(), Errno> {
    if inode.nr_dirty.get() == 0 {
        return Ok(());
    }
    page_mkclean(st, inode, start, end);
    let r = write_dirty_pages(&mut st.phys, &inode, start, end);
    redirty_remote_writable(st, inode, start, end);
    r
}

/// Pages another process maps writable stay dirty after a write-back: its host view lets
/// it write them without a fault, which this process cannot take away (its PTEs are left
/// as they are), so a later write-back must write them again.
fn redirty_remote_writable(st: &mut State, inode: InodePtr, start: usize, end: usize) {
    let dm = st.phys.direct_map();
    for i in 0..crate::machine::MAX_TASKS {
        if i == st.current || st.tasks[i].pid == 0 {
            continue;
        }
        let mm = &st.tasks[i].mm;
        let mut writable = [0u32; 64];
        for v in mm.iter() {
            if v.file() != Some(inode) || v.flags() & VM_SHARED == 0 {
                continue;
            }
            let Some((a, b)) = v.object_range(start, end) else { continue };
            let mut addr = a;
            while addr < b {
                // In batches, so the walk holds no borrow while pages are dirtied.
                let mut n = 0;
                let chunk_end = b.min(addr + (writable.len() << PAGE_SHIFT));
                for_each_pte(dm, mm.pgd, addr, chunk_end, &mut |_, slot| {
                    let e = slot.get();
                    if pte_present(e) && e & PTE_RW != 0 && !pte_special(e) {
                        writable[n] = pte_pfn(e) as u32;
                        n += 1;
                    }
                });
                for &pfn in &writable[..n] {
                    set_page_dirty(&mut st.phys, &inode, pfn as usize);
                }
                addr = chunk_end;
            }
        }
    }
}

/// The flusher's pass (`sync(2)`): write back every dirty page of every file.
pub(crate) fn sync_all(st: &mut State) -> Result<(), Errno> {
    let mut result = Ok(());
    let mut cur = st.sb.inodes;
    while let Some(inode) = cur {
        cur = inode.next.get();
        if writeback_range(st, inode, 0, crate::shmem::MAX_INODE_PAGES).is_err() {
            result = Err(Errno(libc::EIO));
        }
    }
    result
}
