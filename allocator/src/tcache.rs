//! The thread cache (tcache): per-thread LIFO lists of recently freed small chunks, one list
//! per size class, used before any lock is taken.
//!
//! glibc's 64 bins cover chunk sizes 32 to 1040 bytes (requests up to 1032 bytes) in 16-byte
//! steps, 7 entries each by default. An entry lives in the freed chunk's user area: a
//! safe-linked `next` pointer and a `key` equal to the process-wide tcache key while the chunk
//! sits in a cache, which lets `free` notice the same chunk being freed twice.
//!
//! ptalloc indexes the bins by *slot* `size >> 4` (2 to 65) instead of glibc's `tidx`
//! (`slot - 2`), and keeps for each bin the *room* left rather than a count. Both choices are
//! for the fast paths: the slot falls straight out of the chunk header, and one test of the
//! room (0 for slots that are disabled, out of range, or full) replaces three. Slots 0 and 1
//! (sizes 0 and 16, never valid) always have no room.

use core::cell::Cell;

use crate::chunk::{aligned_ok, protect_ptr, request2size, reveal_ptr, Chunk, MALLOC_ALIGNMENT, MINSIZE};
use crate::printerr::malloc_printerr;

pub(crate) const TCACHE_MAX_BINS: usize = 64;
pub(crate) const TCACHE_FILL_COUNT: usize = 7;
/// Unless the program sets `tcache_count`, a bin of small chunks holds as many as fit in
/// this many bytes (at least `TCACHE_FILL_COUNT`): 128 chunks of 32 bytes, 32 of 128, 7 from
/// 592 bytes up. Small blocks come and go in runs longer than glibc's 7, and a cache that
/// holds a run turns each of its frees and mallocs into a fast-path hit; what the cache may
/// hold beyond glibc's 7 a bin stays under 72 KiB a thread (all its small bins full) until
/// bins grow (`TCACHE_GROW_BYTES`).
pub(crate) const TCACHE_BIN_BYTES: usize = 4096;
/// `TCACHE_BIN_BYTES / chunk size` by slot, worked out once (a division a bin costs dozens of
/// cycles, and each new thread's cache needs all of them).
const BIN_BYTES_COUNT: [u16; TCACHE_SLOTS] = {
    let mut t = [0u16; TCACHE_SLOTS];
    let mut slot = 2;
    while slot < TCACHE_SLOTS {
        t[slot] = (TCACHE_BIN_BYTES / (slot << 4)) as u16;
        slot += 1;
    }
    t
};
pub(crate) const MAX_TCACHE_COUNT: usize = u16::MAX as usize;
/// What a thread's bins of small chunks may hold beyond their base room, by growing (see
/// [`Tcache::try_grow`]): the default cache only, and given back when its heap grows.
pub(crate) const TCACHE_GROW_BYTES: usize = 1024 * 1024;
/// The most heap growths a thread's whole-cache give-backs are skipped for (see
/// [`Tcache::full_give_back_due`]).
const GIVE_BACK_MAX_SKIP: u16 = 64;
/// The most entries a grown bin holds.
const GROW_MAX_COUNT: usize = 16 * 1024;
/// Bins that grow: chunks of up to 128 bytes, those glibc keeps in fastbins (uncoalesced
/// there too). Growing every bin raised larson's peak RSS by 16%, these alone by 2%.
const GROW_MAX_SLOT: usize = 128 >> 4;
const _: () = assert!(GROW_MAX_SLOT < u32::BITS as usize);
/// The largest request a tcache serves (glibc's bin 63).
pub(crate) const MAX_TCACHE_SIZE: usize = tidx2usize(TCACHE_MAX_BINS - 1);
/// The largest request the ring of larger chunks serves (see `Tcache::mid`).
pub(crate) const MID_MAX_REQUEST: usize = 64 * 1024;
/// Chunk sizes the ring holds: above the bins' largest, up to `MID_MAX_REQUEST`'s chunk.
pub(crate) const MID_MIN_CHUNK: usize = TCACHE_SLOTS << 4;
pub(crate) const MID_MAX_CHUNK: usize = request2size(MID_MAX_REQUEST);
const MID_ENTRIES: usize = 8;
/// The most bytes of chunks the ring holds: what a thread keeps from its arena beyond glibc.
pub(crate) const MID_CACHE_BYTES: usize = 256 * 1024;
/// Slots: chunk size >> 4, for chunk sizes up to 1040.
pub(crate) const TCACHE_SLOTS: usize = TCACHE_MAX_BINS + 2;

/// Requests up to this size have a slot the fast path can compute without a range check
/// beyond this one: every request the bins serve (glibc's 1,032 bytes, slot 65).
pub(crate) const FAST_MAX_REQUEST: usize = MAX_TCACHE_SIZE;
/// On free, a chunk header `h` takes the fast path only if `h & FAST_FREE_MASK == 0`: size
/// below 2048, a multiple of 16, not mmapped (bits 1 and 3 clear; bits 0 and 2 may be set).
/// Its slot is then below `ROOM_SLOTS`, whose room beyond the bins' last is always 0.
pub(crate) const FAST_FREE_MASK: usize = !0x7f5;
/// The room array reaches every slot a header passing `FAST_FREE_MASK` has, so that the
/// fast free path tests the room without a range check: 1,024- and 1,040-byte chunks
/// (slots 64 and 65, requests of 1,001 to 1,032 bytes) take the fast paths as glibc's bins
/// 62 and 63 do, and larger ones find no room there.
const ROOM_SLOTS: usize = 128;

/// The largest request that maps to glibc's thread-cache bin `idx`.
pub(crate) const fn tidx2usize(idx: usize) -> usize {
    idx * MALLOC_ALIGNMENT + MINSIZE - core::mem::size_of::<usize>()
}

/// The slot of a chunk size.
#[inline(always)]
pub(crate) const fn slot_of(chunk_size: usize) -> usize {
    chunk_size >> 4
}

/// The slot for a request of `bytes` (`bytes <= MAX_TCACHE_SIZE`): the chunk size >> 4.
#[inline(always)]
pub(crate) const fn request_slot(bytes: usize) -> usize {
    let s = (bytes + 23) >> 4;
    if s < 2 {
        2
    } else {
        s
    }
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
    /// Entries each bin may still take; 0 for disabled and invalid slots, and for every
    /// slot from `TCACHE_SLOTS` on.
    room: [Cell<u16>; ROOM_SLOTS],
    /// Entries per bin (`tcache_count`), or its floor when bins are sized by bytes.
    max_count: Cell<u16>,
    /// Bins hold `TCACHE_BIN_BYTES` of small chunks (the program did not set a count).
    by_bytes: Cell<bool>,
    entries: [Cell<*mut TcacheEntry>; TCACHE_SLOTS],
    /// Entries each bin holds when full: its base room, or more once grown.
    cap: [Cell<u16>; TCACHE_SLOTS],
    /// Bins that were empty at a malloc since they last overflowed, one bit a slot.
    missed: Cell<u32>,
    /// Bytes of room the bins have grown by, at most `TCACHE_GROW_BYTES`.
    grown_bytes: Cell<usize>,
    /// The thread's arena grew its heap while the bins had grown: give the extra back.
    shrink_due: Cell<bool>,
    /// A whole-cache give-back happened and no growth since (see `full_give_back_due`).
    give_back_pending: Cell<bool>,
    /// Heap growths for which whole give-backs are skipped, and how many the last skip was.
    give_back_skip: Cell<u16>,
    give_back_backoff: Cell<u16>,
    /// The ring of larger chunks (1,056 bytes to 64 KiB, which glibc's bins do not take):
    /// the last few freed, so that a block freed and asked for again — a buffer, a page of
    /// a table — skips the arena, its lock and its coalescing both ways. A request takes a
    /// chunk of its size or at most an eighth larger; a free takes the oldest entry's
    /// place (that chunk goes to its arena). `mid_size` is 0 for an empty entry.
    mid: [Cell<*mut u8>; MID_ENTRIES],
    mid_size: [Cell<usize>; MID_ENTRIES],
    /// The entry the next free goes into: the oldest.
    mid_next: Cell<usize>,
    /// Bytes of chunks in the ring, and the most it may hold (0: no ring, as in the
    /// disabled cache, or when the program chose its own cache counts).
    mid_bytes: Cell<usize>,
    mid_cap: Cell<usize>,
}

/// The cache every thread starts with and returns to at exit: empty and with no room, so
/// the fast paths miss without a separate "has a cache" test.
pub(crate) struct DisabledTcache(pub(crate) Tcache);

// SAFETY: the disabled cache is never written: no room anywhere rejects every `put`, and
// `get` is reached only through a non-null entry, of which it has none.
unsafe impl Sync for DisabledTcache {}

pub(crate) static DISABLED_TCACHE: DisabledTcache = DisabledTcache(Tcache::empty());

impl Tcache {
    pub(crate) const fn empty() -> Tcache {
        Tcache {
            room: [const { Cell::new(0) }; ROOM_SLOTS],
            max_count: Cell::new(0),
            by_bytes: Cell::new(false),
            entries: [const { Cell::new(core::ptr::null_mut()) }; TCACHE_SLOTS],
            cap: [const { Cell::new(0) }; TCACHE_SLOTS],
            missed: Cell::new(0),
            grown_bytes: Cell::new(0),
            shrink_due: Cell::new(false),
            give_back_pending: Cell::new(false),
            give_back_skip: Cell::new(0),
            give_back_backoff: Cell::new(0),
            mid: [const { Cell::new(core::ptr::null_mut()) }; MID_ENTRIES],
            mid_size: [const { Cell::new(0) }; MID_ENTRIES],
            mid_next: Cell::new(0),
            mid_bytes: Cell::new(0),
            mid_cap: Cell::new(0),
        }
    }

    /// The ring's byte limit for these settings: on with the default bins (sized by bytes,
    /// all 64 of them), off when the program set its own counts or bins, as glibc's cache
    /// has no such ring.
    fn mid_cap_for(bins: usize, by_bytes: bool) -> usize {
        if by_bytes && bins >= TCACHE_MAX_BINS {
            MID_CACHE_BYTES
        } else {
            0
        }
    }

    fn is_disabled(&self) -> bool {
        core::ptr::eq(self, Tcache::disabled())
    }

    pub(crate) fn disabled() -> &'static Tcache {
        &DISABLED_TCACHE.0
    }

    /// An empty cache with the limits of [`Tcache::set_limits`], made without walking bins
    /// (a new thread's cache: this runs once per thread).
    pub(crate) fn with_limits(bins: usize, count: usize, by_bytes: bool) -> Tcache {
        let count = count.min(MAX_TCACHE_COUNT) as u16;
        let by_bytes = by_bytes && count > 0;
        let last_slot = 2 + bins.min(TCACHE_MAX_BINS);
        // A plain array and a loop of fixed length: a few vector instructions.
        let most = if by_bytes { u16::MAX } else { count };
        let mut room = BIN_BYTES_COUNT.map(|fit| count.max(fit).min(most));
        room[..2].fill(0);
        room[last_slot..].fill(0);
        let mut all_room = [0u16; ROOM_SLOTS];
        all_room[..TCACHE_SLOTS].copy_from_slice(&room);
        let t = Tcache {
            room: all_room.map(Cell::new),
            cap: room.map(Cell::new),
            max_count: Cell::new(count),
            by_bytes: Cell::new(by_bytes),
            ..Tcache::empty()
        };
        t.mid_cap.set(Tcache::mid_cap_for(bins, by_bytes));
        t
    }

    /// Set the limits from the parameters: glibc's first `bins` bins, `count` entries each —
    /// or, with `by_bytes`, at least `count` and as many as fit in `TCACHE_BIN_BYTES`.
    /// Entries already cached stay; a bin over its new limit takes nothing until it drains.
    pub(crate) fn set_limits(&self, bins: usize, count: usize, by_bytes: bool) {
        if self.is_disabled() {
            // Shared by every thread and never written: it keeps no room anywhere.
            return;
        }
        let count = count.min(MAX_TCACHE_COUNT);
        self.max_count.set(count as u16);
        self.by_bytes.set(by_bytes && count > 0);
        self.mid_cap.set(Tcache::mid_cap_for(bins, self.by_bytes.get()));
        self.grown_bytes.set(0);
        self.missed.set(0);
        self.shrink_due.set(false);
        let last_slot = 2 + bins.min(TCACHE_MAX_BINS);
        for slot in 0..TCACHE_SLOTS {
            let (cap, room) = if (2..last_slot).contains(&slot) {
                let cap = self.base_capacity(slot);
                (cap, cap.saturating_sub(self.len(slot)))
            } else {
                (0, 0)
            };
            self.cap[slot].set(cap as u16);
            self.room[slot].set(room as u16);
        }
    }

    /// The most entries bin `slot` holds (never less than its limit before it grew, which
    /// entries cached under an older, larger limit may still fill).
    pub(crate) fn capacity(&self, slot: usize) -> usize {
        self.base_capacity(slot).max(self.cap[slot].get() as usize)
    }

    /// The entries bin `slot` holds by the limits alone, before any growth.
    fn base_capacity(&self, slot: usize) -> usize {
        let count = self.max_count();
        if self.by_bytes.get() && slot >= 2 {
            count.max(BIN_BYTES_COUNT[slot] as usize)
        } else {
            count
        }
    }

    /// Entries in a bin, by walking it.
    fn len(&self, slot: usize) -> usize {
        let mut n = 0;
        let mut e = self.entries[slot].get();
        while !e.is_null() && aligned_ok(e as usize) && n <= MAX_TCACHE_COUNT {
            n += 1;
            // SAFETY: an aligned entry of our own list.
            let entry = unsafe { &*e };
            e = reveal_ptr(entry.next.as_ptr() as usize, entry.next.get()) as *mut TcacheEntry;
        }
        n
    }

    #[inline(always)]
    pub(crate) fn max_count(&self) -> usize {
        self.max_count.get() as usize
    }

    /// Whether chunks of this slot may be cached here now.
    #[inline(always)]
    pub(crate) fn has_room(&self, slot: usize) -> bool {
        slot < TCACHE_SLOTS && self.room[slot].get() != 0
    }

    /// A malloc found bin `slot` empty (and went to its arena).
    #[inline(always)]
    pub(crate) fn note_miss(&self, slot: usize) {
        // Only bins sized by bytes grow, up to GROW_MAX_SLOT; the disabled cache, shared, is
        // never written.
        if slot <= GROW_MAX_SLOT && self.by_bytes.get() {
            self.missed.set(self.missed.get() | 1 << slot);
        }
    }

    /// Bin `slot` is full at a free: if a malloc found it empty since it last overflowed,
    /// the bin is too small for the runs of frees and mallocs the program makes, and it
    /// doubles (within `GROW_MAX_COUNT` and the thread's `TCACHE_GROW_BYTES`) instead of
    /// handing part of itself back to the arena for the next run of mallocs to take again.
    /// True if it grew.
    pub(crate) fn try_grow(&self, slot: usize) -> bool {
        if slot > GROW_MAX_SLOT || self.missed.get() & (1 << slot) == 0 {
            return false;
        }
        let bit = 1 << slot;
        self.missed.set(self.missed.get() & !bit);
        let size = slot << 4;
        let cap = self.cap[slot].get() as usize;
        let budget = (TCACHE_GROW_BYTES - self.grown_bytes.get()) / size;
        let add = cap.min(GROW_MAX_COUNT.saturating_sub(cap)).min(budget);
        if add == 0 {
            return false;
        }
        self.cap[slot].set((cap + add) as u16);
        self.room[slot].set(self.room[slot].get() + add as u16);
        self.grown_bytes.set(self.grown_bytes.get() + add * size);
        true
    }

    /// The thread's arena grew its heap: if the bins have grown, have their extra entries
    /// given back at the next chance (see [`Tcache::excess`]). A whole-cache give-back just
    /// before (see [`Tcache::full_give_back_due`]) did not spare the growth: the next ones
    /// are skipped, for twice as many growths each time (at most `GIVE_BACK_MAX_SKIP`).
    #[inline]
    pub(crate) fn note_heap_growth(&self) {
        if self.grown_bytes.get() != 0 {
            self.shrink_due.set(true);
        }
        if self.give_back_pending.get() {
            self.give_back_pending.set(false);
            let backoff = (self.give_back_backoff.get() * 2).clamp(1, GIVE_BACK_MAX_SKIP);
            self.give_back_backoff.set(backoff);
            self.give_back_skip.set(backoff);
        }
    }

    /// Top cannot serve a request and the heap would grow: whether to give the arena every
    /// chunk the default cache holds of it, or only what grown bins hold beyond their base
    /// room. Whole give-backs are the rule: they keep a heap whose blocks come and go from
    /// growing. A program that grows its heap steadily gets nothing from them but the cost
    /// of refilling its cache, so after one that did not spare a growth the next are
    /// skipped a while; a whole give-back followed by no growth (the previous one, when
    /// another is due) starts the rule again.
    pub(crate) fn full_give_back_due(&self) -> bool {
        // The disabled cache, shared, is never written; a cache with the program's own
        // counts keeps what it holds.
        if !self.by_bytes.get() {
            return false;
        }
        if self.give_back_pending.get() {
            self.give_back_backoff.set(0);
        }
        let skip = self.give_back_skip.get();
        if skip > 0 {
            self.give_back_skip.set(skip - 1);
            self.give_back_pending.set(false);
            return false;
        }
        self.give_back_pending.set(true);
        true
    }

    #[inline(always)]
    pub(crate) fn shrink_due(&self) -> bool {
        self.shrink_due.get()
    }

    pub(crate) fn has_grown(&self) -> bool {
        self.grown_bytes.get() != 0
    }

    /// Entries bin `slot` holds beyond its base room.
    pub(crate) fn excess(&self, slot: usize) -> usize {
        self.count(slot).saturating_sub(self.base_capacity(slot))
    }

    /// Entries in bin `slot`, from its room (no walk).
    pub(crate) fn count(&self, slot: usize) -> usize {
        (self.cap[slot].get() as usize).saturating_sub(self.room[slot].get() as usize)
    }

    /// Every bin back to its base room, once the caller has taken the excess out.
    pub(crate) fn reset_growth(&self) {
        for slot in 2..TCACHE_SLOTS {
            let base = self.base_capacity(slot);
            let cap = self.cap[slot].get() as usize;
            if cap > base {
                let len = cap.saturating_sub(self.room[slot].get() as usize);
                self.cap[slot].set(base as u16);
                self.room[slot].set(base.saturating_sub(len) as u16);
            }
        }
        self.grown_bytes.set(0);
        self.missed.set(0);
        self.shrink_due.set(false);
    }

    /// Whether the slot is one this cache uses at all (glibc's `tc_idx < tcache_bins`).
    #[inline(always)]
    pub(crate) fn serves(&self, slot: usize) -> bool {
        slot < TCACHE_SLOTS && (self.room[slot].get() != 0 || !self.entries[slot].get().is_null())
    }

    #[inline(always)]
    pub(crate) fn first(&self, slot: usize) -> *mut TcacheEntry {
        self.entries[slot].get()
    }

    /// The fast path's view of a slot known to be below [`TCACHE_SLOTS`].
    ///
    /// # Safety
    /// `slot < TCACHE_SLOTS`.
    #[inline(always)]
    pub(crate) unsafe fn first_unchecked(&self, slot: usize) -> *mut TcacheEntry {
        // SAFETY: in range by the caller's promise.
        unsafe { self.entries.get_unchecked(slot).get() }
    }

    /// False for every slot from `TCACHE_SLOTS` on.
    ///
    /// # Safety
    /// `slot < ROOM_SLOTS` (as for any header that passes `FAST_FREE_MASK`).
    #[inline(always)]
    pub(crate) unsafe fn has_room_unchecked(&self, slot: usize) -> bool {
        // SAFETY: in range by the caller's promise.
        unsafe { self.room.get_unchecked(slot).get() != 0 }
    }

    /// Push a chunk.
    ///
    /// # Safety
    /// `chunk` is an in-use chunk of `slot`'s size that the calling thread owns and is
    /// freeing (so nothing else touches it), not in any cache; `has_room(slot)` holds.
    #[inline(always)]
    pub(crate) unsafe fn put(&self, chunk: Chunk, slot: usize, key: usize) {
        let e = chunk.mem() as *mut TcacheEntry;
        // SAFETY: the chunk is the caller's and at least MINSIZE, so its user area holds
        // both words.
        let entry = unsafe { &*e };
        entry.key.set(key);
        // SAFETY: a slot with room is below TCACHE_SLOTS (the caller's promise): no range
        // check on the fast free path, whose mask leaves slots up to ROOM_SLOTS.
        let (head, room) = unsafe { (self.entries.get_unchecked(slot), self.room.get_unchecked(slot)) };
        entry.next.set(protect_ptr(entry.next.as_ptr() as usize, head.get() as usize));
        head.set(e);
        room.set(room.get() - 1);
    }

    /// Pop the first entry of a bin.
    ///
    /// # Safety
    /// The bin is not empty (`first(slot)` is not null).
    #[inline(always)]
    pub(crate) unsafe fn get(&self, slot: usize) -> *mut u8 {
        let head = &self.entries[slot];
        let e = head.get();
        if !aligned_ok(e as usize) {
            malloc_printerr("malloc(): unaligned tcache chunk detected");
        }
        // SAFETY: the caller promises a non-empty bin: a non-null entry, aligned (checked
        // above), the user area of a chunk this cache holds.
        let entry = unsafe { &*e };
        head.set(reveal_ptr(entry.next.as_ptr() as usize, entry.next.get()) as *mut TcacheEntry);
        let room = &self.room[slot];
        room.set(room.get().wrapping_add(1));
        entry.key.set(0);
        e as *mut u8
    }

    /// The key word of the chunk at `mem` (equal to the tcache key while it is cached).
    ///
    /// # Safety
    /// `mem` is the user pointer of a chunk of at least `MINSIZE` bytes of this allocator.
    #[inline(always)]
    pub(crate) unsafe fn entry_key(mem: *mut u8) -> usize {
        // SAFETY: the user area of such a chunk holds the entry's two words.
        unsafe { (*(mem as *const TcacheEntry)).key.get() }
    }

    /// The key matched: walk the bin to tell a real double free from a coincidence.
    #[cold]
    #[inline(never)]
    pub(crate) fn verify_not_cached(&self, mem: *mut u8, slot: usize) {
        let mut e = self.entries[slot].get();
        let mut n = 0;
        let capacity = self.capacity(slot);
        while !e.is_null() {
            if n >= capacity {
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

    /// Put chunk `c` of `size` bytes (`MID_MIN_CHUNK..=MID_MAX_CHUNK`) in the ring, in the
    /// oldest entry's place. Returns the chunk the caller frees into its arena instead:
    /// none, the oldest entry's, or `c` itself when the ring's byte limit leaves no room
    /// for it (always so in the disabled cache, whose limit is 0).
    ///
    /// # Safety
    /// As for [`Tcache::put`]: `c` is an in-use chunk of `size` bytes the calling thread
    /// owns and is freeing, in no cache; the cache is the calling thread's own (or the
    /// disabled one).
    pub(crate) unsafe fn put_mid(&self, c: Chunk, size: usize, key: usize) -> Option<Chunk> {
        if !self.mid_has_room(size) {
            return Some(c);
        }
        let i = self.mid_next.get() % MID_ENTRIES;
        let old = self.mid_size[i].get();
        let bytes = self.mid_bytes.get() - old;
        let evicted = if old == 0 {
            None
        } else {
            // SAFETY: the entry holds a chunk put here, still ours to release.
            Some(unsafe { self.mid_take_entry(i) })
        };
        // SAFETY: the caller's chunk: at least MINSIZE bytes, its user area its own.
        unsafe { (*(c.mem() as *const TcacheEntry)).key.set(key) };
        self.mid[i].set(c.mem());
        self.mid_size[i].set(size);
        self.mid_bytes.set(bytes + size);
        self.mid_next.set((i + 1) % MID_ENTRIES);
        evicted
    }

    /// Whether [`Tcache::put_mid`] would keep a chunk of `size` bytes: the ring's byte limit
    /// leaves room for it once the oldest entry is out. Inline, so that a run of frees of
    /// chunks the ring cannot take (a long run of 64 KiB blocks) costs a test, not a call.
    #[inline(always)]
    pub(crate) fn mid_has_room(&self, size: usize) -> bool {
        let oldest = self.mid_size[self.mid_next.get() % MID_ENTRIES].get();
        self.mid_bytes.get() - oldest + size <= self.mid_cap.get()
    }

    /// A chunk for a request of chunk size `nb` (`MID_MIN_CHUNK..=MID_MAX_CHUNK`) from the
    /// ring — of that size or at most an eighth larger, the most recently freed first — or
    /// null.
    #[inline]
    pub(crate) fn take_mid(&self, nb: usize) -> *mut u8 {
        // A run of mallocs longer than the ring finds it empty: one test, not eight.
        if self.mid_bytes.get() == 0 {
            return core::ptr::null_mut();
        }
        let next = self.mid_next.get();
        for k in 1..=MID_ENTRIES {
            let i = (next + MID_ENTRIES - k) % MID_ENTRIES;
            let size = self.mid_size[i].get();
            if size >= nb && size - nb <= nb >> 3 {
                // SAFETY: a non-empty entry (its size is at least nb > 0).
                return unsafe { self.mid_take_entry(i) }.mem();
            }
        }
        core::ptr::null_mut()
    }

    /// Take the chunk at `mem` out of the ring if it is there (a free that finds the
    /// cache's key in a larger chunk: most likely a double free).
    pub(crate) fn take_mid_if_cached(&self, mem: *mut u8) -> Option<Chunk> {
        let i = (0..MID_ENTRIES).find(|&i| self.mid_size[i].get() != 0 && self.mid[i].get() == mem)?;
        // SAFETY: a non-empty entry.
        Some(unsafe { self.mid_take_entry(i) })
    }

    /// Empty entry `i`, returning its chunk with the key cleared.
    ///
    /// # Safety
    /// Entry `i` is not empty.
    unsafe fn mid_take_entry(&self, i: usize) -> Chunk {
        let mem = self.mid[i].get();
        self.mid_bytes.set(self.mid_bytes.get() - self.mid_size[i].get());
        self.mid_size[i].set(0);
        // SAFETY: a chunk put in the ring: the user area of a chunk of ours, which the
        // cache still owns.
        unsafe {
            (*(mem as *const TcacheEntry)).key.set(0);
            Chunk::from_mem(mem)
        }
    }

    /// Take every chunk out of the ring, handing each to `release`.
    pub(crate) fn drain_mid(&self, mut release: impl FnMut(*mut u8)) {
        for i in 0..MID_ENTRIES {
            if self.mid_size[i].get() != 0 {
                // SAFETY: a non-empty entry.
                release(unsafe { self.mid_take_entry(i) }.mem());
            }
        }
    }

    /// Take the ring's chunks for which `take` is true out, handing each to `release`.
    pub(crate) fn drain_mid_if(&self, take: impl Fn(*mut u8) -> bool, mut release: impl FnMut(*mut u8)) {
        if self.mid_bytes.get() == 0 {
            return;
        }
        for i in 0..MID_ENTRIES {
            if self.mid_size[i].get() != 0 && take(self.mid[i].get()) {
                // SAFETY: a non-empty entry.
                release(unsafe { self.mid_take_entry(i) }.mem());
            }
        }
    }

    /// Take every cached chunk out, handing each to `release` (used at thread exit).
    pub(crate) fn drain(&self, mut release: impl FnMut(*mut u8)) {
        for slot in self.occupied_slots() {
            self.drain_bin(slot, &mut release);
        }
        self.drain_mid(release);
    }

    /// The slots whose bins hold chunks, in order. Most bins are empty when the whole cache
    /// is walked (at thread exit, before the heap grows): eight are looked at in one OR of
    /// their heads. Taking a slot's chunks while iterating is fine: each slot is looked at
    /// just before it is yielded.
    pub(crate) fn occupied_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .chunks(8)
            .enumerate()
            .filter(|(_, bins)| bins.iter().fold(0, |any, e| any | e.get() as usize) != 0)
            .flat_map(|(group, bins)| group * 8..group * 8 + bins.len())
            .filter(|&slot| !self.entries[slot].get().is_null())
    }

    fn drain_bin(&self, slot: usize, release: &mut impl FnMut(*mut u8)) {
        while !self.entries[slot].get().is_null() {
            let e = self.entries[slot].get();
            if !aligned_ok(e as usize) {
                malloc_printerr("tcache_thread_shutdown(): unaligned tcache chunk detected");
            }
            // SAFETY: the bin is not empty (the loop's condition).
            release(unsafe { self.get(slot) });
        }
    }

    /// Visit every cached chunk's user pointer without removing it (heap checker); the
    /// ring's chunks first, with the slot of their size.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(usize, *mut u8)) {
        for i in 0..MID_ENTRIES {
            if self.mid_size[i].get() != 0 {
                visit(slot_of(self.mid_size[i].get()), self.mid[i].get());
            }
        }
        for slot in 0..TCACHE_SLOTS {
            let mut e = self.entries[slot].get();
            while !e.is_null() && aligned_ok(e as usize) {
                visit(slot, e as *mut u8);
                // SAFETY: an aligned entry of our own list.
                let entry = unsafe { &*e };
                e = reveal_ptr(entry.next.as_ptr() as usize, entry.next.get()) as *mut TcacheEntry;
            }
        }
    }
}

/// The slot a request would use, if the cache covers requests of that size at all.
#[inline(always)]
pub(crate) fn slot_for_request(bytes: usize) -> Option<usize> {
    (bytes <= MAX_TCACHE_SIZE).then(|| request_slot(bytes))
}

const _: () = assert!(request_slot(0) == slot_of(request2size(0)));
const _: () = assert!(request_slot(MAX_TCACHE_SIZE) == TCACHE_SLOTS - 1);
const _: () = assert!(request_slot(FAST_MAX_REQUEST) < TCACHE_SLOTS);
const _: () = assert!(slot_of(!FAST_FREE_MASK) < ROOM_SLOTS);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{IS_MMAPPED, NON_MAIN_ARENA, PREV_INUSE};

    #[test]
    fn slots_follow_chunk_sizes() {
        assert_eq!(MAX_TCACHE_SIZE, 1032);
        for bytes in 0..=MAX_TCACHE_SIZE {
            assert_eq!(request_slot(bytes), slot_of(request2size(bytes)), "request {bytes}");
        }
        assert_eq!(request_slot(24), 2);
        assert_eq!(request_slot(25), 3);
        assert_eq!(request_slot(1032), 65);
    }

    #[test]
    fn fast_free_mask() {
        for size in (32..2048).step_by(16) {
            for flags in [0, PREV_INUSE, NON_MAIN_ARENA, PREV_INUSE | NON_MAIN_ARENA] {
                assert_eq!((size | flags) & FAST_FREE_MASK, 0, "size {size} flags {flags}");
                // The flag bits are below the size: the slot is the same with any of them.
                assert_eq!(slot_of(size | flags), slot_of(size));
            }
            assert_ne!((size | IS_MMAPPED) & FAST_FREE_MASK, 0);
            assert_ne!((size + 8) & FAST_FREE_MASK, 0);
        }
        assert_ne!(2048 & FAST_FREE_MASK, 0);
        assert_ne!((1 << 20) & FAST_FREE_MASK, 0);
        // Past the bins' last slot a header passes the mask but finds no room, whatever
        // the limits.
        let no_room_past_the_bins = |t: &Tcache| {
            (TCACHE_SLOTS..=slot_of(!FAST_FREE_MASK)).all(|slot| {
                // SAFETY: every slot of a header that passes the mask is below ROOM_SLOTS.
                !unsafe { t.has_room_unchecked(slot) }
            })
        };
        for t in [Tcache::with_limits(64, 7, true), Tcache::with_limits(64, 65535, false)] {
            assert!(t.has_room(65) && no_room_past_the_bins(&t));
            t.set_limits(64, 100, true);
            assert!(no_room_past_the_bins(&t));
        }
    }

    #[test]
    fn limits() {
        let t = Tcache::empty();
        t.set_limits(64, 7, false);
        assert!(!t.has_room(0) && !t.has_room(1));
        assert!(t.has_room(2) && t.has_room(65));
        assert!(!t.has_room(66));
        assert_eq!(t.max_count(), 7);
        t.set_limits(1, 7, false);
        assert!(t.has_room(2) && !t.has_room(3));
        t.set_limits(64, 0, false);
        assert!(!t.has_room(2));
    }

    #[test]
    fn bins_sized_by_bytes() {
        let t = Tcache::empty();
        t.set_limits(64, 7, true);
        assert_eq!(t.capacity(2), TCACHE_BIN_BYTES / 32);
        assert_eq!(t.capacity(8), TCACHE_BIN_BYTES / 128);
        assert_eq!(t.capacity(65), 7, "large chunks keep glibc's count");
        assert_eq!(t.room[2].get() as usize, TCACHE_BIN_BYTES / 32);
        // What the bins may hold beyond 7 each, all bins full.
        let extra: usize = (2..TCACHE_SLOTS).map(|s| (t.capacity(s) - 7) * (s << 4)).sum();
        assert!(extra < 72 << 10, "{extra}");
        // A count the program chose is every bin's count, as in glibc.
        t.set_limits(64, 3, false);
        assert_eq!(t.capacity(2), 3);
        // No cache at all stays none.
        t.set_limits(64, 0, true);
        assert_eq!(t.capacity(2), 0);
    }

    #[test]
    fn a_new_cache_has_the_limits_set_limits_gives() {
        for (bins, count, by_bytes) in [
            (64, 7, true),
            (64, 7, false),
            (1, 7, true),
            (10, 3, true),
            (64, 0, true),
            (64, 200, true),
            (0, 7, true),
        ] {
            let fresh = Tcache::with_limits(bins, count, by_bytes);
            let walked = Tcache::empty();
            walked.set_limits(bins, count, by_bytes);
            for slot in 0..TCACHE_SLOTS {
                assert_eq!(
                    fresh.room[slot].get(),
                    walked.room[slot].get(),
                    "{bins} {count} {by_bytes} slot {slot}"
                );
                assert_eq!(fresh.capacity(slot), walked.capacity(slot));
            }
        }
    }

    #[test]
    fn drain_takes_every_entry_of_every_bin() {
        let t = Tcache::empty();
        t.set_limits(64, 7, false);
        #[repr(C, align(16))]
        struct Buf([usize; 6]);
        let mut mem: Vec<Buf> = (0..8).map(|_| Buf([0; 6])).collect();
        // Bins at both ends, on both sides of a group of eight, two in one bin.
        let slots = [2, 7, 8, 8, 15, 16, 64, 65];
        let mut put = Vec::new();
        for (m, &slot) in mem.iter_mut().zip(&slots) {
            // SAFETY: 48 bytes of our own memory, 16-byte aligned, each put once.
            let c = unsafe { Chunk::at(m.0.as_mut_ptr() as usize) };
            // SAFETY: as above.
            unsafe { t.put(c, slot, 0xfeed) };
            put.push(c.mem() as usize);
        }
        let mut released = Vec::new();
        t.drain(|mem| released.push(mem as usize));
        released.sort();
        put.sort();
        assert_eq!(released, put);
        assert!((0..TCACHE_SLOTS).all(|s| t.first(s).is_null()));
    }

    #[test]
    fn a_bin_missed_then_overflowed_doubles_within_its_limits() {
        #[repr(C, align(16))]
        struct Buf([usize; 6]);
        let mut mem: Vec<Buf> = (0..1024).map(|_| Buf([0; 6])).collect();
        // SAFETY: 48 bytes of our own memory each, 16-byte aligned.
        let chunks: Vec<Chunk> =
            mem.iter_mut().map(|m| unsafe { Chunk::at(m.0.as_mut_ptr() as usize) }).collect();
        let t = Tcache::with_limits(64, 7, true);
        let base = t.capacity(3);
        assert_eq!(base, TCACHE_BIN_BYTES / 48);
        // Full without a miss since: no growth (the caller gives part of it back instead).
        for &c in &chunks[..base] {
            // SAFETY: each buffer put once while out of the cache.
            unsafe { t.put(c, 3, 0xfeed) };
        }
        assert!(!t.has_room(3) && !t.try_grow(3));
        // A malloc found it empty: the next overflow doubles it, once.
        t.note_miss(3);
        assert!(t.try_grow(3));
        assert_eq!((t.capacity(3), t.room[3].get() as usize), (2 * base, base));
        assert!(!t.try_grow(3), "grew twice for one miss");
        for &c in &chunks[base..2 * base] {
            // SAFETY: as above.
            unsafe { t.put(c, 3, 0xfeed) };
        }
        assert_eq!(t.excess(3), base);
        assert!(t.has_grown() && !t.shrink_due());
        t.note_heap_growth();
        assert!(t.shrink_due());
        // The caller takes the excess out, then the bin is back to its base room, full.
        for _ in 0..t.excess(3) {
            // SAFETY: the bin holds more than `base` entries.
            unsafe { t.get(3) };
        }
        t.reset_growth();
        assert_eq!((t.capacity(3), t.room[3].get()), (base, 0));
        assert!(!t.has_grown() && !t.shrink_due());
        // Only bins of glibc's fastbin sizes grow, and only with bins sized by bytes.
        t.note_miss(GROW_MAX_SLOT + 1);
        assert!(!t.try_grow(GROW_MAX_SLOT + 1));
        let counted = Tcache::with_limits(64, 7, false);
        counted.note_miss(3);
        assert!(!counted.try_grow(3));
        Tcache::disabled().note_miss(3);
        assert!(!Tcache::disabled().try_grow(3));
        // Growth stops at the thread's byte limit.
        let t = Tcache::with_limits(64, 7, true);
        let mut grown = 0;
        for slot in (2..=GROW_MAX_SLOT).cycle().take(200) {
            t.note_miss(slot);
            if t.try_grow(slot) {
                grown += 1;
            }
        }
        assert!(grown > 0 && t.grown_bytes.get() <= TCACHE_GROW_BYTES, "{}", t.grown_bytes.get());
        assert!((2..TCACHE_SLOTS).all(|s| t.capacity(s) <= GROW_MAX_COUNT));
        // New limits from the program start over from the base.
        t.set_limits(64, 7, true);
        assert!(!t.has_grown() && t.capacity(2) == TCACHE_BIN_BYTES / 32);
    }

    /// `n` 16-byte-aligned buffers standing in for larger chunks (only their first words
    /// are touched).
    fn mid_chunks(mem: &mut [[usize; 4]]) -> Vec<Chunk> {
        // SAFETY: our own buffers, 16-byte aligned by the caller's choice of type below.
        mem.iter_mut().map(|m| unsafe { Chunk::at(m.as_mut_ptr() as usize) }).collect()
    }

    #[test]
    fn the_ring_takes_larger_chunks_and_gives_back_a_close_fit() {
        #[repr(C, align(16))]
        struct Bufs([[usize; 4]; 12]);
        let mut bufs = Bufs([[0; 4]; 12]);
        let c = mid_chunks(&mut bufs.0);
        let t = Tcache::with_limits(64, 7, true);
        // SAFETY: each buffer stands in for a chunk of the size given,
        // put at most once while out of the ring; keys are read from our own buffers.
        let put = |c: Chunk, size: usize| unsafe { t.put_mid(c, size, 0xfeed) }.map(|e| e.addr());
        // SAFETY: as above.
        let key = |c: Chunk| unsafe { Tcache::entry_key(c.mem()) };
        assert_eq!(put(c[0], 4112), None);
        assert_eq!(key(c[0]), 0xfeed);
        // Too small a chunk for the request, or more than an eighth too big: not taken.
        assert!(t.take_mid(4128).is_null());
        assert!(t.take_mid(3600).is_null());
        // Of the request's size, or a little larger: taken, key cleared, ring empty.
        assert_eq!(t.take_mid(3664), c[0].mem());
        assert_eq!(key(c[0]), 0);
        assert!(t.take_mid(3664).is_null());
        // The most recently freed of two that fit comes first.
        assert_eq!(put(c[1], 8192), None);
        assert_eq!(put(c[2], 8192), None);
        assert_eq!(t.take_mid(8192), c[2].mem());
        assert_eq!(t.take_mid(8192), c[1].mem());
        // Past eight entries, each free pushes the oldest out, to be freed by the caller.
        for (i, &chunk) in c.iter().enumerate().take(8) {
            assert_eq!(put(chunk, 2048 + 16 * i), None);
        }
        assert_eq!(put(c[8], 2048), Some(c[0].addr()));
        assert_eq!(put(c[9], 2048), Some(c[1].addr()));
        // A chunk freed twice is found by its address.
        assert_eq!(t.take_mid_if_cached(c[9].mem()).map(|e| e.addr()), Some(c[9].addr()));
        assert!(t.take_mid_if_cached(c[9].mem()).is_none());
        let mut left = Vec::new();
        t.drain_mid(|mem| left.push(mem as usize));
        assert_eq!(left.len(), 7);
        assert!((0..MID_ENTRIES).all(|i| t.mid_size[i].get() == 0) && t.mid_bytes.get() == 0);
    }

    #[test]
    fn the_ring_keeps_to_its_byte_limit_and_is_off_where_glibc_has_none() {
        #[repr(C, align(16))]
        struct Bufs([[usize; 4]; 8]);
        let mut bufs = Bufs([[0; 4]; 8]);
        let c = mid_chunks(&mut bufs.0);
        let t = Tcache::with_limits(64, 7, true);
        let big = MID_MAX_CHUNK;
        let fit = MID_CACHE_BYTES / big;
        for &chunk in c.iter().take(fit) {
            // SAFETY: a buffer standing in for a chunk, put once.
            assert!(unsafe { t.put_mid(chunk, big, 1) }.is_none());
        }
        // One more would pass the limit (the entry it would replace is empty): refused.
        // SAFETY: as above.
        assert_eq!(unsafe { t.put_mid(c[fit], big, 1) }.map(|e| e.addr()), Some(c[fit].addr()));
        assert!(t.mid_bytes.get() <= MID_CACHE_BYTES);
        // Counts the program chose, fewer bins, and the disabled cache: no ring.
        for off in [Tcache::with_limits(64, 7, false), Tcache::with_limits(32, 7, true), Tcache::empty()] {
            // SAFETY: as above; refused, so nothing is written.
            assert_eq!(unsafe { off.put_mid(c[7], 2048, 1) }.map(|e| e.addr()), Some(c[7].addr()));
        }
        // SAFETY: as above.
        assert!(unsafe { Tcache::disabled().put_mid(c[7], 2048, 1) }.is_some());
        // Limits set later switch it off too; what it holds stays until taken.
        t.set_limits(64, 7, false);
        assert!(t.mid_cap.get() == 0 && t.mid_bytes.get() > 0);
        assert!(!t.take_mid(big).is_null());
    }

    #[test]
    fn put_and_get_are_lifo_and_safe_linked() {
        let t = Tcache::empty();
        t.set_limits(64, 7, false);
        #[repr(C, align(16))]
        struct Buf([usize; 6]);
        let mut mem = [Buf([0; 6]), Buf([0; 6]), Buf([0; 6])];
        let chunks: Vec<Chunk> = mem
            .iter_mut()
            // SAFETY: each buffer is 48 bytes of our own memory, 16-byte aligned, not at 0.
            .map(|m| unsafe { Chunk::at(m.0.as_mut_ptr() as usize) })
            .collect();
        for c in &chunks {
            // SAFETY: our own 48-byte buffers, each put once.
            unsafe {
                t.put(*c, 3, 0xfeed);
                assert_eq!(Tcache::entry_key(c.mem()), 0xfeed);
            }
        }
        assert_eq!(t.len(3), 3);
        // The stored link is mangled: it is not the plain address of the older entry.
        // SAFETY: reading the first word of our own buffer's user area.
        let stored = unsafe { *(chunks[2].mem() as *const usize) };
        assert_ne!(stored, chunks[1].mem() as usize);
        for c in chunks.iter().rev() {
            // SAFETY: the bin holds the chunks put above.
            assert_eq!(unsafe { t.get(3) }, c.mem());
            // SAFETY: as above.
            assert_eq!(unsafe { Tcache::entry_key(c.mem()) }, 0);
        }
        assert!(t.first(3).is_null());
        assert_eq!(t.len(3), 0);
        // Room is back to the limit.
        t.set_limits(64, 7, false);
        assert!(t.has_room(3));
    }

    #[test]
    fn whole_give_backs_back_off_while_they_spare_no_growth() {
        let t = Tcache::with_limits(64, 7, true);
        // Each whole give-back followed by a growth skips the next 1, 2, 4, ... up to 64.
        let mut gaps = Vec::new();
        let mut since = 0;
        for _ in 0..400 {
            if t.full_give_back_due() {
                gaps.push(since);
                since = 0;
            } else {
                since += 1;
            }
            t.note_heap_growth();
        }
        assert_eq!(gaps[..10], [0, 1, 2, 4, 8, 16, 32, 64, 64, 64]);
        // One that spared a growth (another give-back due before any growth): the rule again.
        let t = Tcache::with_limits(64, 7, true);
        assert!(t.full_give_back_due());
        t.note_heap_growth();
        assert!(!t.full_give_back_due());
        t.note_heap_growth();
        assert!(t.full_give_back_due());
        assert!(t.full_give_back_due(), "no growth in between: it helped");
        t.note_heap_growth();
        assert!(!t.full_give_back_due(), "skips one again, not two");
        t.note_heap_growth();
        assert!(t.full_give_back_due());
        // A cache with the program's own counts, and the disabled one, never give all back.
        assert!(!Tcache::with_limits(64, 7, false).full_give_back_due());
        assert!(!Tcache::disabled().full_give_back_due());
    }
}
