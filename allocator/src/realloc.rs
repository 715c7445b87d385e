//! Resizing a chunk inside its arena (glibc's `_int_realloc`).
//!
//! Shrinking splits the tail off and frees it. Growing first tries to take the space after
//! the chunk — the top chunk or a free neighbour — so the data does not move; only then does
//! it allocate elsewhere, copy and free.

use crate::arena::ArenaGuard;
use crate::bins::unlink_chunk;
use crate::check::CHUNK_CHECKS;
use crate::chunk::{Chunk, CHUNK_HDR_SZ, MALLOC_ALIGN_MASK, MINSIZE, PREV_INUSE};
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::printerr::malloc_printerr;

impl<K: Kernel> Malloc<K> {
    /// Resize the in-use chunk `oldp` (of `oldsize`) of the arena `av` holds to chunk size
    /// `nb`. Returns the user pointer, or null with the old chunk untouched.
    ///
    /// # Safety
    /// `oldp` is an in-use, non-mmapped chunk of `oldsize` bytes of `av`'s arena, the
    /// caller's.
    pub(crate) unsafe fn int_realloc(
        &'static self,
        av: &ArenaGuard,
        oldp: Chunk,
        oldsize: usize,
        nb: usize,
    ) -> *mut u8 {
        let system_mem = av.system_mem.get();
        // SAFETY: the caller's chunk and, through its size (checked first), its neighbour in
        // the held arena.
        unsafe {
            if oldp.head() <= CHUNK_HDR_SZ || oldsize >= system_mem {
                malloc_printerr("realloc(): invalid old size");
            }
            let next = oldp.plus(oldsize);
            let nextsize = next.size();
            if next.head() <= CHUNK_HDR_SZ || nextsize >= system_mem {
                malloc_printerr("realloc(): invalid next size");
            }

            let (newp, newsize);
            if oldsize >= nb {
                newp = oldp;
                newsize = oldsize;
            } else if next == av.top() && oldsize + nextsize >= nb + MINSIZE {
                // Grow into top.
                oldp.set_head_size(nb | av.arena_bit());
                let top = oldp.plus(nb);
                av.set_top(top);
                top.set_head((oldsize + nextsize - nb) | PREV_INUSE);
                self.taken(av, nb - oldsize);
                return oldp.mem();
            } else if next != av.top() && !next.inuse() && oldsize + nextsize >= nb {
                // Grow into the free chunk after us.
                newp = oldp;
                newsize = oldsize + nextsize;
                unlink_chunk(next);
                self.taken(av, nextsize);
            } else {
                let newmem = self.int_malloc(av, nb - MALLOC_ALIGN_MASK);
                if newmem.is_null() {
                    return newmem;
                }
                let got = Chunk::from_mem(newmem);
                if got == next {
                    // The allocation was the chunk right after us: extend in place instead.
                    newp = oldp;
                    newsize = oldsize + got.size();
                } else {
                    // Distinct blocks; the old one holds `usable()` bytes.
                    core::ptr::copy_nonoverlapping(oldp.mem(), newmem, oldp.usable());
                    self.int_free_held(av, oldp);
                    return newmem;
                }
            }

            debug_assert!(newsize >= nb);
            let remainder_size = newsize - nb;
            if remainder_size < MINSIZE {
                newp.set_head_size(newsize | av.arena_bit());
                newp.set_inuse_bit_at_offset(newsize);
            } else {
                let remainder = newp.plus(nb);
                newp.set_head_size(nb | av.arena_bit());
                remainder.set_head(remainder_size | PREV_INUSE | av.arena_bit());
                // Mark the remainder in use so that freeing it goes the normal way.
                remainder.set_inuse_bit_at_offset(remainder_size);
                self.int_free_held(av, remainder);
            }
            if CHUNK_CHECKS {
                self.check_inuse_chunk(av, newp);
            }
            newp.mem()
        }
    }
}
