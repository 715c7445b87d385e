//! `msync` (Linux's `mm/msync.c`): write back what shared file mappings of a range dirtied.
//!
//! `MS_SYNC` writes back, for each shared file mapping in the range, the dirty pages of
//! the part of the file it maps; `MS_ASYNC` does nothing (dirty pages are tracked, and the
//! flusher writes them, as Linux has had it since 2.6.19); `MS_INVALIDATE` has nothing to
//! invalidate, but fails with `EBUSY` on a locked mapping. Holes in the range are `ENOMEM`,
//! reported after the mapped parts are done (at once for a plain `MS_ASYNC`).

use crate::machine::State;
use crate::mm::{VM_LOCKED, VM_SHARED};
use crate::page::{offset_in_page, page_align};
use crate::Errno;

pub(crate) fn sys_msync(st: &mut State, start: usize, len: usize, flags: i32) -> Result<(), Errno> {
    if flags & !(libc::MS_ASYNC | libc::MS_INVALIDATE | libc::MS_SYNC) != 0 {
        return Err(Errno::EINVAL);
    }
    if offset_in_page(start) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & libc::MS_ASYNC != 0 && flags & libc::MS_SYNC != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_align(len);
    let Some(end) = start.checked_add(len) else {
        return Err(Errno::ENOMEM);
    };
    if len == 0 {
        return Ok(());
    }
    let mut unmapped_error = Ok(());
    let mut start = start;
    let mut vma = st.mm.find_vma(start);
    loop {
        let Some(v) = vma else {
            return Err(Errno::ENOMEM);
        };
        if start < v.start() {
            if flags == libc::MS_ASYNC {
                return Err(Errno::ENOMEM);
            }
            start = v.start();
            if start >= end {
                return Err(Errno::ENOMEM);
            }
            unmapped_error = Err(Errno::ENOMEM);
        }
        if flags & libc::MS_INVALIDATE != 0 && v.flags() & VM_LOCKED != 0 {
            return Err(Errno(libc::EBUSY));
        }
        let first = v.pgoff_at(start);
        let last = v.pgoff_at(end.min(v.end()) - 1) + 1;
        start = v.end();
        if flags & libc::MS_SYNC != 0 && v.flags() & VM_SHARED != 0 {
            if let Some(inode) = v.file().filter(|i| i.is_reg()) {
                crate::page_writeback::writeback_range(st, inode, first, last)?;
            }
        }
        if start >= end {
            return unmapped_error;
        }
        vma = st.mm.find_vma(start);
    }
}
