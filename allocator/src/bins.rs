//! Bins: where free chunks wait, and the arithmetic that picks a bin for a size.
//!
//! An arena has 127 doubly linked bins: bin 1 is the unsorted bin (recently freed chunks
//! get one chance to be reused before they are sorted), bins 2–63 are smallbins holding one
//! size each (32, 48, ... 1008 bytes), bins 64–126 are largebins holding size ranges whose
//! width grows geometrically (64 B, 512 B, 4 KiB, 32 KiB, 256 KiB, then the rest); a
//! largebin is kept sorted by size, with a second `nextsize` list that skips over runs of
//! equal sizes. A bitmap (binmap) marks bins that may be non-empty so the search for the
//! next larger bin skips empty ones a word at a time.
//!
//! Fastbins are ten singly linked LIFO lists for small chunks (up to 128 bytes by default),
//! which are kept marked in-use so they do not coalesce until `malloc_consolidate`.

use crate::chunk::{Chunk, MALLOC_ALIGNMENT, MINSIZE, SIZE_SZ};
use crate::printerr::malloc_printerr;

pub(crate) const NBINS: usize = 128;
pub(crate) const NSMALLBINS: usize = 64;
pub(crate) const SMALLBIN_WIDTH: usize = MALLOC_ALIGNMENT;
/// Chunks of this size and above go to largebins.
pub(crate) const MIN_LARGE_SIZE: usize = NSMALLBINS * SMALLBIN_WIDTH;

pub(crate) const BINMAPSHIFT: usize = 5;
pub(crate) const BITSPERMAP: usize = 1 << BINMAPSHIFT;
pub(crate) const BINMAPSIZE: usize = NBINS / BITSPERMAP;

/// The largest request `M_MXFAST` accepts.
pub(crate) const MAX_FAST_SIZE: usize = 80 * SIZE_SZ / 4;
pub(crate) const NFASTBINS: usize = fastbin_index(crate::chunk::request2size(MAX_FAST_SIZE)) + 1;
/// Freeing a chunk this large (after coalescing) consolidates fastbins and considers trimming.
pub(crate) const FASTBIN_CONSOLIDATION_THRESHOLD: usize = 65536;

/// The unsorted bin's index.
pub(crate) const UNSORTED: usize = 1;

#[inline(always)]
pub(crate) const fn in_smallbin_range(size: usize) -> bool {
    size < MIN_LARGE_SIZE
}

#[inline(always)]
pub(crate) const fn smallbin_index(size: usize) -> usize {
    size >> 4
}

/// Largebin index for a 64-bit size: 32 bins 64 B apart, 16 bins 512 B apart, 8 bins 4 KiB
/// apart, 4 bins 32 KiB apart, 2 bins 256 KiB apart, and one for everything above.
#[inline(always)]
pub(crate) const fn largebin_index(size: usize) -> usize {
    if (size >> 6) <= 48 {
        48 + (size >> 6)
    } else {
        largebin_index_wide(size)
    }
}

/// The bins past the first group, out of line: inlined, the whole chain was computed
/// branch-free (a dozen conditional moves) ahead of the test for a small request, on every
/// call of `int_malloc`.
#[inline(never)]
const fn largebin_index_wide(size: usize) -> usize {
    if (size >> 9) <= 20 {
        91 + (size >> 9)
    } else if (size >> 12) <= 10 {
        110 + (size >> 12)
    } else if (size >> 15) <= 4 {
        119 + (size >> 15)
    } else if (size >> 18) <= 2 {
        124 + (size >> 18)
    } else {
        126
    }
}

#[inline]
pub(crate) const fn bin_index(size: usize) -> usize {
    if in_smallbin_range(size) {
        smallbin_index(size)
    } else {
        largebin_index(size)
    }
}

#[inline(always)]
pub(crate) const fn fastbin_index(size: usize) -> usize {
    (size >> 4) - 2
}

/// Thread-cache bin for a chunk size (valid for sizes of at least `MINSIZE`).
#[inline(always)]
pub(crate) const fn csize2tidx(size: usize) -> usize {
    (size - MINSIZE).div_ceil(MALLOC_ALIGNMENT)
}

#[inline(always)]
pub(crate) const fn idx2block(i: usize) -> usize {
    i >> BINMAPSHIFT
}

#[inline(always)]
pub(crate) const fn idx2bit(i: usize) -> u32 {
    1 << (i & (BITSPERMAP - 1))
}

/// Take a free chunk out of its doubly linked bin (and, in a largebin, out of the
/// nextsize skip list), after checking that its neighbours agree it is there.
///
/// # Safety
/// `p` is a free chunk linked into one of the bins of an arena the caller holds (the
/// checks abort on a list that says otherwise, as far as they can see).
pub(crate) unsafe fn unlink_chunk(p: Chunk) {
    // SAFETY: p and its list neighbours are chunks or bin headers of the held arena; the
    // nextsize words are touched only for large chunks, which have room for them.
    unsafe {
        if p.size() != p.next().prev_size() {
            malloc_printerr("corrupted size vs. prev_size");
        }
        let fd = p.fd();
        let bk = p.bk();
        if fd.bk() != p || bk.fd() != p {
            malloc_printerr("corrupted double-linked list");
        }
        fd.set_bk(bk);
        bk.set_fd(fd);
        if in_smallbin_range(p.size()) {
            return;
        }
        let Some(next_size) = p.fd_nextsize() else {
            // A follower of an equal-sized chunk: it is not on the skip list.
            return;
        };
        let prev_size = match p.bk_nextsize() {
            Some(c) if next_size.bk_nextsize() == Some(p) && c.fd_nextsize() == Some(p) => c,
            _ => malloc_printerr("corrupted double-linked list (not small)"),
        };
        if fd.fd_nextsize().is_none() {
            // `fd` was a follower of the same size: it becomes the size's representative.
            if next_size == p {
                fd.set_fd_nextsize(Some(fd));
                fd.set_bk_nextsize(Some(fd));
            } else {
                fd.set_fd_nextsize(Some(next_size));
                fd.set_bk_nextsize(Some(prev_size));
                next_size.set_bk_nextsize(Some(fd));
                prev_size.set_fd_nextsize(Some(fd));
            }
        } else {
            next_size.set_bk_nextsize(Some(prev_size));
            prev_size.set_fd_nextsize(Some(next_size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::request2size;

    #[test]
    fn constants_match_glibc() {
        assert_eq!(NFASTBINS, 10);
        assert_eq!(MIN_LARGE_SIZE, 1024);
        assert_eq!(BINMAPSIZE, 4);
        assert_eq!(MAX_FAST_SIZE, 160);
    }

    #[test]
    fn smallbins_hold_one_size_each() {
        assert_eq!(bin_index(32), 2);
        assert_eq!(bin_index(48), 3);
        assert_eq!(bin_index(1008), 63);
        assert_eq!(bin_index(1024), 64);
    }

    #[test]
    fn largebin_spacing() {
        // 64-byte spacing up to 3 KiB, then 512 B, 4 KiB, 32 KiB, 256 KiB, and the rest.
        assert_eq!(largebin_index(1024), 64);
        assert_eq!(largebin_index(1087), 64);
        assert_eq!(largebin_index(1088), 65);
        assert_eq!(largebin_index(3135), 96);
        assert_eq!(largebin_index(3136), 97);
        assert_eq!(largebin_index(10 * 1024), 111);
        assert_eq!(largebin_index(44 * 1024), 120);
        assert_eq!(largebin_index(160 * 1024 - 1), 123);
        assert_eq!(largebin_index(160 * 1024), 124);
        assert_eq!(largebin_index(768 * 1024 - 1), 126);
        assert_eq!(largebin_index(1 << 30), 126);
        // Monotone and never past the last bin.
        let mut last = 64;
        let mut size = 1024;
        while size < (64 << 20) {
            let i = largebin_index(size);
            assert!(i >= last && i < NBINS);
            last = i;
            size += 16;
        }
    }

    #[test]
    fn tcache_and_fastbin_indices() {
        assert_eq!(csize2tidx(32), 0);
        assert_eq!(csize2tidx(48), 1);
        assert_eq!(csize2tidx(request2size(1032)), 63);
        assert_eq!(fastbin_index(32), 0);
        assert_eq!(fastbin_index(128), 6);
        assert_eq!(fastbin_index(request2size(160)), 9);
    }

    #[test]
    fn binmap_bits() {
        assert_eq!(idx2block(31), 0);
        assert_eq!(idx2block(32), 1);
        assert_eq!(idx2bit(33), 2);
        assert_eq!(idx2bit(127), 1 << 31);
    }
}
