//! Aligned allocation inside an arena (glibc's `_int_memalign`): over-allocate by the
//! alignment, find the aligned spot inside, and give back the space before and after it.

use crate::arena::ArenaGuard;
use crate::check::CHUNK_CHECKS;
use crate::chunk::{checked_request2size, Chunk, IS_MMAPPED, MINSIZE, PREV_INUSE};
use crate::kernel::Kernel;
use crate::malloc::Malloc;

impl<K: Kernel> Malloc<K> {
    /// `bytes` bytes aligned to `alignment` (a power of two of at least `MINSIZE`) from the
    /// arena `av` holds. Null if the memory cannot be had.
    pub(crate) fn int_memalign(&'static self, av: &ArenaGuard, alignment: usize, bytes: usize) -> *mut u8 {
        let Some(nb) = checked_request2size(bytes) else {
            return core::ptr::null_mut();
        };
        let Some(request) = nb.checked_add(alignment).and_then(|r| r.checked_add(MINSIZE)) else {
            return core::ptr::null_mut();
        };
        let m = self.int_malloc(av, request);
        if m.is_null() {
            return m;
        }
        // SAFETY: the chunk just allocated from the held arena (or its own mapping), large
        // enough to hold an aligned chunk of `nb` bytes with a chunk's room before it; the
        // pieces cut off before and after go back to the arena.
        unsafe {
            let mut p = Chunk::from_mem(m);
            if !(m as usize).is_multiple_of(alignment) {
                // The aligned spot inside the chunk; if the space before it is too small to be
                // a chunk of its own, take the next aligned spot (we asked for enough room).
                let mut brk = ((m as usize + alignment - 1) & alignment.wrapping_neg())
                    - 2 * core::mem::size_of::<usize>();
                if brk - p.addr() < MINSIZE {
                    brk += alignment;
                }
                let newp = Chunk::at(brk);
                let leadsize = brk - p.addr();
                let newsize = p.size() - leadsize;
                if p.is_mmapped() {
                    // Keep the mapping's offset so free can find its start.
                    newp.set_prev_size(p.prev_size() + leadsize);
                    newp.set_head(newsize | IS_MMAPPED);
                    return newp.mem();
                }
                newp.set_head(newsize | PREV_INUSE | av.arena_bit());
                newp.set_inuse_bit_at_offset(newsize);
                p.set_head_size(leadsize | av.arena_bit());
                self.int_free_held(av, p);
                p = newp;
            }
            if !p.is_mmapped() {
                let size = p.size();
                if size > nb + MINSIZE {
                    let remainder = p.plus(nb);
                    remainder.set_head((size - nb) | PREV_INUSE | av.arena_bit());
                    p.set_head_size(nb | av.arena_bit());
                    self.int_free_held(av, remainder);
                }
                if CHUNK_CHECKS {
                    self.check_inuse_chunk(av, p);
                }
            }
            p.mem()
        }
    }
}
