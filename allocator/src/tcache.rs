//! The thread cache (tcache): per-thread LIFO lists of recently freed small chunks, one list
//! per size class, used before any lock is taken.
//!
//! 64 bins cover chunk sizes 32 to 1040 bytes (requests up to 1032 bytes) in 16-byte steps,
//! 7 entries each by default. An entry lives in the freed chunk's user area: a safe-linked
//! `next` pointer and a `key` equal to the process-wide [`Malloc::tcache_key`] while the chunk
//! sits in a tcache, which lets `free` notice the same chunk being freed twice.
//!
//! [`Malloc::tcache_key`]: crate::Malloc

use core::cell::Cell;

use crate::bins::csize2tidx;
use crate::chunk::{aligned_ok, protect_ptr, request2size, reveal_ptr, Chunk, MALLOC_ALIGNMENT, MINSIZE};
use crate::printerr::malloc_printerr;

pub(crate) const TCACHE_MAX_BINS: usize = 64;
pub(crate) const TCACHE_FILL_COUNT: usize = 7;
pub(crate) const MAX_TCACHE_COUNT: usize = u16::MAX as usize;
/// The largest request a tcache serves (bin 63).
pub(crate) const MAX_TCACHE_SIZE: usize = tidx2usize(TCACHE_MAX_BINS - 1);

/// The largest request that maps to thread-cache bin `idx`.
pub(crate) const fn tidx2usize(idx: usize) -> usize {
    idx * MALLOC_ALIGNMENT + MINSIZE - core::mem::size_of::<usize>()
}

/// Thread-cache bin for a request of `bytes` (callers ensure `bytes <= MAX_TCACHE_SIZE`).
#[inline(always)]
pub(crate) const fn request2tidx(bytes: usize) -> usize {
    csize2tidx(request2size(bytes))
}

/// The links a cached chunk keeps in its user area.
#[repr(C)]
pub(crate) struct TcacheEntry {
    next: Cell<usize>,
    key: Cell<usize>,
}

/// One thread's cache. It is itself allocated as a chunk of the thread's arena.
#[repr(C)]
pub struct Tcache {
    /// Bins in use (`tcache_bins`); 0 turns the cache off.
    nbins: Cell<usize>,
    /// Entries per bin (`tcache_count`), copied when the cache is made.
    max_count: Cell<u16>,
    counts: [Cell<u16>; TCACHE_MAX_BINS],
    entries: [Cell<*mut TcacheEntry>; TCACHE_MAX_BINS],
}

/// The cache every thread starts with and returns to at exit: empty and accepting nothing,
/// so the fast paths miss without a separate "has a cache" test.
pub(crate) struct DisabledTcache(pub(crate) Tcache);

// SAFETY: the disabled cache is never written: its `nbins` of 0 rejects every `put`, and
// `get` is reached only through a non-null entry, of which it has none.
unsafe impl Sync for DisabledTcache {}

pub(crate) static DISABLED_TCACHE: DisabledTcache = DisabledTcache(Tcache::empty());

impl Tcache {
    pub(crate) const fn empty() -> Tcache {
        Tcache {
            nbins: Cell::new(0),
            max_count: Cell::new(0),
            counts: [const { Cell::new(0) }; TCACHE_MAX_BINS],
            entries: [const { Cell::new(core::ptr::null_mut()) }; TCACHE_MAX_BINS],
        }
    }

    pub(crate) fn disabled() -> &'static Tcache {
        &DISABLED_TCACHE.0
    }

    /// Set the limits from the parameters: `bins` bins, `count` entries each.
    pub(crate) fn set_limits(&self, bins: usize, count: usize) {
        let bins = if count == 0 { 0 } else { bins.min(TCACHE_MAX_BINS) };
        self.nbins.set(bins);
        self.max_count.set(count.min(MAX_TCACHE_COUNT) as u16);
    }

    #[inline(always)]
    pub(crate) fn nbins(&self) -> usize {
        self.nbins.get()
    }

    #[inline(always)]
    pub(crate) fn max_count(&self) -> usize {
        self.max_count.get() as usize
    }

    #[cfg(test)]
    pub(crate) fn count(&self, idx: usize) -> usize {
        self.counts[idx].get() as usize
    }

    #[inline(always)]
    pub(crate) fn has_room(&self, idx: usize) -> bool {
        self.counts[idx].get() < self.max_count.get()
    }

    #[inline(always)]
    pub(crate) fn first(&self, idx: usize) -> *mut TcacheEntry {
        self.entries[idx].get()
    }

    /// Push a chunk (caller checked `idx` is in range and `has_room`).
    #[inline(always)]
    pub(crate) fn put(&self, chunk: Chunk, idx: usize, key: usize) {
        let e = chunk.mem() as *mut TcacheEntry;
        // SAFETY: the chunk is ours and at least MINSIZE, so its user area holds both words.
        let entry = unsafe { &*e };
        entry.key.set(key);
        entry.next.set(protect_ptr(entry.next.as_ptr() as usize, self.entries[idx].get() as usize));
        self.entries[idx].set(e);
        self.counts[idx].set(self.counts[idx].get() + 1);
    }

    /// Pop the first entry of a non-empty bin.
    #[inline(always)]
    pub(crate) fn get(&self, idx: usize) -> *mut u8 {
        let e = self.entries[idx].get();
        if !aligned_ok(e as usize) {
            malloc_printerr("malloc(): unaligned tcache chunk detected");
        }
        // SAFETY: a non-null, aligned entry of our list: the user area of a cached chunk.
        let entry = unsafe { &*e };
        self.entries[idx].set(reveal_ptr(entry.next.as_ptr() as usize, entry.next.get()) as *mut TcacheEntry);
        self.counts[idx].set(self.counts[idx].get() - 1);
        entry.key.set(0);
        e as *mut u8
    }

    /// Whether the chunk at `mem` carries the in-cache key.
    #[inline(always)]
    pub(crate) fn entry_key(mem: *mut u8) -> usize {
        // SAFETY: `mem` is the user area of a chunk of at least MINSIZE being freed.
        unsafe { (*(mem as *const TcacheEntry)).key.get() }
    }

    /// The key matched: walk the bin to tell a real double free from a coincidence.
    #[cold]
    #[inline(never)]
    pub(crate) fn verify_not_cached(&self, mem: *mut u8, idx: usize, tcache_count: usize) {
        let mut e = self.entries[idx].get();
        let mut n = 0;
        while !e.is_null() {
            if n >= tcache_count.max(self.max_count()) {
                malloc_printerr("free(): too many chunks detected in tcache");
            }
            if !aligned_ok(e as usize) {
                malloc_printerr("free(): unaligned chunk detected in tcache 2");
            }
            if e as *mut u8 == mem {
                malloc_printerr("free(): double free detected in tcache 2");
            }
            // SAFETY: an aligned entry of our own list.
            let entry = unsafe { &*e };
            e = reveal_ptr(entry.next.as_ptr() as usize, entry.next.get()) as *mut TcacheEntry;
            n += 1;
        }
    }

    /// Take every cached chunk out, handing each to `release` (used at thread exit).
    pub(crate) fn drain(&self, mut release: impl FnMut(*mut u8)) {
        for idx in 0..TCACHE_MAX_BINS {
            while !self.entries[idx].get().is_null() {
                let e = self.entries[idx].get();
                if !aligned_ok(e as usize) {
                    malloc_printerr("tcache_thread_shutdown(): unaligned tcache chunk detected");
                }
                let mem = self.get(idx);
                release(mem);
            }
        }
    }

    /// Visit every cached chunk's user pointer without removing it (heap checker).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(usize, *mut u8)) {
        for idx in 0..TCACHE_MAX_BINS {
            let mut e = self.entries[idx].get();
            while !e.is_null() && aligned_ok(e as usize) {
                visit(idx, e as *mut u8);
                // SAFETY: an aligned entry of our own list.
                let entry = unsafe { &*e };
                e = reveal_ptr(entry.next.as_ptr() as usize, entry.next.get()) as *mut TcacheEntry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(MAX_TCACHE_SIZE, 1032);
        assert_eq!(request2tidx(0), 0);
        assert_eq!(request2tidx(24), 0);
        assert_eq!(request2tidx(25), 1);
        assert_eq!(request2tidx(1032), 63);
        let t = Tcache::empty();
        t.set_limits(64, 7);
        assert_eq!(t.nbins(), 64);
        assert_eq!(t.max_count(), 7);
        t.set_limits(1, 7);
        assert_eq!(t.nbins(), 1);
        t.set_limits(64, 0);
        assert_eq!(t.nbins(), 0);
    }

    #[test]
    fn put_and_get_are_lifo_and_safe_linked() {
        let t = Tcache::empty();
        t.set_limits(64, 7);
        #[repr(C, align(16))]
        struct Buf([usize; 6]);
        let mut mem = [Buf([0; 6]), Buf([0; 6]), Buf([0; 6])];
        let chunks: Vec<Chunk> = mem
            .iter_mut()
            // SAFETY: each buffer is 48 bytes of our own memory, 16-byte aligned.
            .map(|m| unsafe { Chunk::at(m.0.as_mut_ptr() as usize) })
            .collect();
        for c in &chunks {
            t.put(*c, 1, 0xfeed);
            assert_eq!(Tcache::entry_key(c.mem()), 0xfeed);
        }
        assert_eq!(t.count(1), 3);
        // The stored link is mangled: it is not the plain address of the older entry.
        // SAFETY: reading the first word of our own buffer's user area.
        let stored = unsafe { *(chunks[2].mem() as *const usize) };
        assert_ne!(stored, chunks[1].mem() as usize);
        for c in chunks.iter().rev() {
            assert_eq!(t.get(1), c.mem());
            assert_eq!(Tcache::entry_key(c.mem()), 0);
        }
        assert!(t.first(1).is_null());
        assert_eq!(t.count(1), 0);
    }
}
