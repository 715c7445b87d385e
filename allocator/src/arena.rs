//! Arenas (glibc's `malloc_state`): a lock, the bins, the top chunk, and which threads use it.
//!
//! The main arena lives inside the [`Malloc`] instance and grows the program break; every
//! other arena sits at the start of its first mmapped heap (see `heap.rs`), so the arena of
//! a chunk flagged `NON_MAIN_ARENA` is found by masking the chunk's address down to its heap.
//! Threads are spread over arenas: a thread keeps the arena it first got, new arenas are
//! made until there are 8 per core (or `M_ARENA_MAX`), after that threads share, picking an
//! arena nobody holds if there is one.

use core::cell::Cell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::bins::{idx2bit, idx2block, BINMAPSIZE, NBINS, NFASTBINS, UNSORTED};
use crate::chunk::{protect_ptr, Chunk, CHUNK_HDR_SZ, NON_MAIN_ARENA};
use crate::heap::heap_for_ptr;
use crate::kernel::Kernel;
use crate::lock::Lock;
use crate::malloc::Malloc;
use crate::params::ARENAS_PER_CORE;
use crate::prim::{online_cpus, single_threaded};
use crate::thread::ThreadSlot;

const NONCONTIGUOUS: u32 = 0x2;

/// At most this many non-contiguous regions of the main arena are remembered for the heap
/// checker's walk (regions after an `mmap` fallback or a foreign `sbrk`).
pub(crate) const MAX_SEGMENTS: usize = 16;

const DEFER_COUNT_SHIFT: u32 = 48;
const DEFER_ADDR_MASK: usize = (1 << DEFER_COUNT_SHIFT) - 1;
const DEFER_COUNT_MAX: usize = usize::MAX >> DEFER_COUNT_SHIFT;
/// Chunks at or above this address cannot be deferred (their address would not fit beside
/// the count); x86-64 and AArch64 user space lies below it unless asked for otherwise.
pub(crate) const DEFER_ADDR_LIMIT: usize = DEFER_ADDR_MASK;

#[repr(C)]
pub(crate) struct Arena {
    pub(crate) mutex: Lock,
    /// Chunks other threads freed without taking the lock: a lock-free stack (safe-linked
    /// through `fd`), emptied by the next holder of the lock (see `drain_deferred`). The
    /// top 16 bits count the chunks waiting; the low 48 are the newest chunk's address.
    deferred: AtomicUsize,
    /// Keeps the lock and the deferred stack off the cache lines of the fields they guard:
    /// other threads hammer these two words, which would take the holder's lines from it.
    _lock_line: [u8; 52],
    flags: Cell<u32>,
    /// Whether any fastbin may be non-empty.
    pub(crate) have_fastchunks: Cell<bool>,
    /// `NON_MAIN_ARENA` for heap arenas, 0 for the main arena: or-ed into chunk headers.
    arena_bit: Cell<usize>,
    fastbins: [Cell<usize>; NFASTBINS],
    top: Cell<Chunk>,
    /// The remainder of the last split for a small request (locality for runs of them).
    /// It must sit just before `bins`: the unsorted bin's header doubles as the initial top
    /// chunk, and this word is read as that chunk's size (0 until the first allocation).
    pub(crate) last_remainder: Cell<Chunk>,
    bins: [Cell<usize>; NBINS * 2 - 2],
    binmap: [Cell<u32>; BINMAPSIZE],
    /// The next arena in the circular list of all arenas.
    pub(crate) next: AtomicPtr<Arena>,
    /// Link in the list of arenas no thread is attached to (under `free_list_lock`).
    pub(crate) next_free: Cell<*mut Arena>,
    /// Threads using this arena (under `free_list_lock`).
    pub(crate) attached_threads: Cell<usize>,
    pub(crate) system_mem: Cell<usize>,
    pub(crate) max_system_mem: Cell<usize>,
    /// Memory of the top chunk from this address up was never written since the kernel gave
    /// it (so it reads as zero): `calloc` need not clear it.
    pub(crate) clean_from: Cell<usize>,
    /// Bytes of this arena's chunks held by the program or by thread caches (exact).
    pub(crate) in_use: Cell<usize>,
    /// Change of `in_use` not yet added to the instance-wide total.
    pub(crate) unflushed: Cell<isize>,
    /// Start of each region of the main arena, for the heap walk.
    pub(crate) segments: [Cell<usize>; MAX_SEGMENTS],
    pub(crate) nsegments: Cell<usize>,
}

// The unsorted bin's header, read as a chunk, has its size word at `last_remainder`.
const _: () = assert!(offset_of!(Arena, bins) == offset_of!(Arena, last_remainder) + 8);
const _: () = assert!(offset_of!(Arena, last_remainder) == offset_of!(Arena, top) + 8);

// SAFETY: the Cell fields are only touched by the thread holding `mutex` (or, for
// `next_free` and `attached_threads`, the instance's `free_list_lock`); `next` is atomic.
unsafe impl Sync for Arena {}

impl Arena {
    pub(crate) const fn new() -> Arena {
        Arena {
            mutex: Lock::new(),
            deferred: AtomicUsize::new(0),
            _lock_line: [0; 52],
            flags: Cell::new(0),
            have_fastchunks: Cell::new(false),
            arena_bit: Cell::new(0),
            fastbins: [const { Cell::new(0) }; NFASTBINS],
            top: Cell::new(Chunk::NULL),
            last_remainder: Cell::new(Chunk::NULL),
            bins: [const { Cell::new(0) }; NBINS * 2 - 2],
            binmap: [const { Cell::new(0) }; BINMAPSIZE],
            next: AtomicPtr::new(core::ptr::null_mut()),
            next_free: Cell::new(core::ptr::null_mut()),
            attached_threads: Cell::new(0),
            system_mem: Cell::new(0),
            max_system_mem: Cell::new(0),
            clean_from: Cell::new(usize::MAX),
            in_use: Cell::new(0),
            unflushed: Cell::new(0),
            segments: [const { Cell::new(0) }; MAX_SEGMENTS],
            nsegments: Cell::new(0),
        }
    }

    /// glibc's `malloc_init_state`: empty circular bins, no fast chunks, and the initial
    /// top — the unsorted bin's header, of size 0 — so the first request goes to sysmalloc.
    pub(crate) fn init(&self, main: bool) {
        for i in 1..NBINS {
            let bin = self.bin_at(i);
            bin.set_fd(bin);
            bin.set_bk(bin);
        }
        self.flags.set(if main { 0 } else { NONCONTIGUOUS });
        self.arena_bit.set(if main { 0 } else { NON_MAIN_ARENA });
        self.have_fastchunks.set(false);
        for fb in &self.fastbins {
            fb.set(0);
        }
        self.last_remainder.set(Chunk::NULL);
        self.top.set(self.initial_top());
    }

    #[inline(always)]
    pub(crate) fn is_main(&self) -> bool {
        self.arena_bit.get() == 0
    }

    #[inline(always)]
    pub(crate) fn arena_bit(&self) -> usize {
        self.arena_bit.get()
    }

    #[inline(always)]
    pub(crate) fn contiguous(&self) -> bool {
        self.flags.get() & NONCONTIGUOUS == 0
    }

    pub(crate) fn set_noncontiguous(&self) {
        self.flags.set(self.flags.get() | NONCONTIGUOUS)
    }

    /// Bin `i` as a fake chunk whose `fd`/`bk` are the bin's list head and tail.
    #[inline(always)]
    pub(crate) fn bin_at(&self, i: usize) -> Chunk {
        let head = self.bins[(i - 1) * 2].as_ptr() as usize;
        // SAFETY: the fake chunk's fd/bk words are this bin's two entries inside the arena.
        unsafe { Chunk::at(head - CHUNK_HDR_SZ) }
    }

    #[inline(always)]
    pub(crate) fn unsorted(&self) -> Chunk {
        self.bin_at(UNSORTED)
    }

    pub(crate) fn initial_top(&self) -> Chunk {
        self.unsorted()
    }

    #[inline(always)]
    pub(crate) fn top(&self) -> Chunk {
        self.top.get()
    }

    #[inline(always)]
    pub(crate) fn set_top(&self, c: Chunk) {
        self.top.set(c)
    }

    /// Freed memory joined the top chunk, which now starts lower, at `c`: the part of the
    /// new top below the old top's user area is not known to be zero.
    pub(crate) fn merge_into_top(&self, c: Chunk) {
        let dirty_to = self.top.get().addr() + CHUNK_HDR_SZ;
        if self.clean_from.get() < dirty_to {
            self.clean_from.set(dirty_to);
        }
        self.top.set(c);
    }

    /// A new top chunk in memory fresh from the kernel (all of its user area reads zero).
    pub(crate) fn set_fresh_top(&self, c: Chunk) {
        self.top.set(c);
        self.clean_from.set(c.addr() + CHUNK_HDR_SZ);
    }

    /// The top chunk now ends at `end` (memory above was returned to the kernel and will
    /// read as zero when it comes back).
    pub(crate) fn top_trimmed_to(&self, end: usize) {
        if self.clean_from.get() > end {
            self.clean_from.set(end);
        }
    }

    /// Leave a chunk for the lock's next holder to free; returns how many chunks are now
    /// waiting. The chunk carries the tcache `key` meanwhile, so that freeing it a second
    /// time is noticed (see `int_free`). `c` must lie below `DEFER_ADDR_LIMIT`.
    pub(crate) fn defer(&self, c: Chunk, key: usize) -> usize {
        c.set_bk_word(key);
        let mut head = self.deferred.load(Ordering::Relaxed);
        loop {
            let waiting = ((head >> DEFER_COUNT_SHIFT) + 1).min(DEFER_COUNT_MAX);
            c.set_fd_word(protect_ptr(c.fd_addr(), head & DEFER_ADDR_MASK));
            let new = c.addr() | (waiting << DEFER_COUNT_SHIFT);
            match self.deferred.compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return waiting,
                Err(h) => head = h,
            }
        }
    }

    /// Whether other threads left chunks for the arena's next holder.
    #[inline(always)]
    pub(crate) fn has_deferred(&self) -> bool {
        self.deferred.load(Ordering::Relaxed) != 0
    }

    /// Take the whole deferred stack (the caller holds the arena, or is the only thread).
    #[inline]
    pub(crate) fn take_deferred(&self) -> Chunk {
        if !self.has_deferred() {
            return Chunk::NULL;
        }
        // SAFETY: the stack holds chunks of this arena pushed by `defer`.
        unsafe { Chunk::at(self.deferred.swap(0, Ordering::Acquire) & DEFER_ADDR_MASK) }
    }

    /// The raw (unmangled) head of fastbin `i`.
    #[inline(always)]
    pub(crate) fn fastbin(&self, i: usize) -> Chunk {
        // SAFETY: fastbin heads are chunks of this arena or null.
        unsafe { Chunk::at(self.fastbins[i].get()) }
    }

    #[inline(always)]
    pub(crate) fn set_fastbin(&self, i: usize, c: Chunk) {
        self.fastbins[i].set(c.addr())
    }

    #[inline(always)]
    pub(crate) fn mark_bin(&self, i: usize) {
        let w = &self.binmap[idx2block(i)];
        w.set(w.get() | idx2bit(i));
    }

    #[inline(always)]
    pub(crate) fn binmap_word(&self, block: usize) -> u32 {
        self.binmap[block].get()
    }

    #[inline(always)]
    pub(crate) fn set_binmap_word(&self, block: usize, v: u32) {
        self.binmap[block].set(v)
    }

    #[inline(always)]
    pub(crate) fn bin_is_marked(&self, i: usize) -> bool {
        self.binmap[idx2block(i)].get() & idx2bit(i) != 0
    }

    pub(crate) fn add_system_mem(&self, bytes: usize) {
        self.system_mem.set(self.system_mem.get() + bytes);
        if self.system_mem.get() > self.max_system_mem.get() {
            self.max_system_mem.set(self.system_mem.get());
        }
    }

    pub(crate) fn add_segment(&self, start: usize) {
        let n = self.nsegments.get();
        if n < MAX_SEGMENTS {
            self.segments[n].set(start);
        }
        self.nsegments.set(n + 1);
    }

    #[inline(always)]
    pub(crate) fn next_arena(&self) -> &'static Arena {
        // SAFETY: the arena list is circular and arenas are never freed.
        unsafe { &*self.next.load(Ordering::Acquire) }
    }
}

impl<K: Kernel> Malloc<K> {
    /// The arena that owns a non-mmapped chunk.
    #[inline(always)]
    pub(crate) fn arena_for_chunk(&self, p: Chunk) -> &Arena {
        if p.non_main_arena() {
            // SAFETY: a NON_MAIN_ARENA chunk lies in a heap whose header names its arena.
            unsafe { &*heap_for_ptr(p.addr()).ar_ptr() }
        } else {
            &self.main_arena
        }
    }

    /// Lock `av` unless the process is single-threaded, and free what others deferred to
    /// it; returns whether it locked.
    #[inline(always)]
    pub(crate) fn lock_arena(&'static self, av: &Arena) -> bool {
        if single_threaded() {
            self.drain_deferred(av);
            false
        } else {
            self.lock_and_drain(av)
        }
    }

    /// Lock `av` (waiting if need be) and free what others deferred to it; returns whether
    /// it locked — not when the calling thread is forking and holds every arena already.
    #[inline]
    pub(crate) fn lock_and_drain(&'static self, av: &Arena) -> bool {
        let locked = acquire(av);
        self.drain_deferred(av);
        locked
    }

    #[inline(always)]
    pub(crate) fn unlock_arena(&self, av: &Arena, locked: bool) {
        if locked {
            av.mutex.unlock();
        }
    }

    /// The calling thread's arena, held, and whether it was locked (glibc's `arena_get`).
    pub(crate) fn arena_get(&'static self, slot: &ThreadSlot, size: usize) -> (&'static Arena, bool) {
        match slot.arena() {
            Some(a) => (a, self.lock_and_drain(a)),
            // A thread that has exited (its later allocations come from TLS destructors)
            // borrows the main arena rather than attaching to one it would never leave; a
            // forking thread may not wait for the arena list lock it holds.
            None if slot.is_exited() || crate::fork::forking_thread() => {
                (&self.main_arena, self.lock_and_drain(&self.main_arena))
            }
            None => (self.arena_get2(slot, size, None), true),
        }
    }

    /// Find or make an arena for a thread that has none, or is moving away from `avoid`;
    /// returned locked. If a new arena cannot be mapped, an existing one is shared.
    fn arena_get2(
        &'static self,
        slot: &ThreadSlot,
        size: usize,
        avoid: Option<&'static Arena>,
    ) -> &'static Arena {
        if let Some(a) = self.get_free_list(slot) {
            return a;
        }
        let limit = self.narenas_limit();
        loop {
            let n = self.narenas.load(Ordering::Relaxed);
            if n < limit {
                if self.narenas.compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                    continue;
                }
                match self.new_arena(slot, size) {
                    Some(a) => return a,
                    None => {
                        self.narenas.fetch_sub(1, Ordering::Relaxed);
                        return self.reused_arena(slot, avoid);
                    }
                }
            }
            return self.reused_arena(slot, avoid);
        }
    }

    fn narenas_limit(&self) -> usize {
        let cached = self.narenas_limit.load(Ordering::Relaxed);
        if cached != 0 {
            return cached;
        }
        let arena_max = self.mp.arena_max.load(Ordering::Relaxed);
        let limit = if arena_max != 0 {
            arena_max
        } else if self.narenas.load(Ordering::Relaxed) > self.mp.arena_test.load(Ordering::Relaxed) {
            online_cpus() * ARENAS_PER_CORE
        } else {
            // Until there are more than arena_test arenas, new ones are made freely; the
            // limit is fixed once that many exist, as in glibc.
            return usize::MAX;
        };
        self.narenas_limit.store(limit, Ordering::Relaxed);
        limit
    }

    /// Create an arena in a fresh heap, attach the thread to it, and return it locked.
    fn new_arena(&'static self, slot: &ThreadSlot, size: usize) -> Option<&'static Arena> {
        let a = self.new_heap_arena(size)?;
        a.attached_threads.set(1);
        let replaced = slot.arena();
        slot.set_arena(Some(a));
        // Lock before publishing so reused_arena cannot hand it to another thread first.
        a.mutex.lock();
        self.list_lock.lock();
        a.next.store(self.main_arena.next.load(Ordering::Acquire), Ordering::Release);
        self.main_arena.next.store(a as *const Arena as *mut Arena, Ordering::Release);
        self.list_lock.unlock();
        self.free_list_lock.lock();
        detach_arena(replaced);
        self.free_list_lock.unlock();
        self.stats.arenas_created.fetch_add(1, Ordering::Relaxed);
        Some(a)
    }

    /// Take an arena no thread uses, if any.
    fn get_free_list(&'static self, slot: &ThreadSlot) -> Option<&'static Arena> {
        if self.free_list.load(Ordering::Relaxed).is_null() {
            return None;
        }
        let replaced = slot.arena();
        self.free_list_lock.lock();
        let result = self.free_list.load(Ordering::Relaxed);
        if !result.is_null() {
            // SAFETY: arenas on the free list are live arenas (never freed).
            let a = unsafe { &*result };
            self.free_list.store(a.next_free.get(), Ordering::Relaxed);
            a.attached_threads.set(1);
            detach_arena(replaced);
        }
        self.free_list_lock.unlock();
        if result.is_null() {
            return None;
        }
        // SAFETY: as above.
        let a = unsafe { &*result };
        self.lock_and_drain(a);
        slot.set_arena(Some(a));
        Some(a)
    }

    /// All arenas exist: take one no thread holds right now, or wait for the next in turn.
    fn reused_arena(&'static self, slot: &ThreadSlot, avoid: Option<&'static Arena>) -> &'static Arena {
        let start = match self.next_to_use.load(Ordering::Relaxed) {
            p if p.is_null() => &self.main_arena,
            // SAFETY: next_to_use only ever holds arenas of this instance.
            p => unsafe { &*p },
        };
        let mut result: &'static Arena = start;
        let mut found = false;
        loop {
            if result.mutex.try_lock() {
                found = true;
                break;
            }
            result = result.next_arena();
            if core::ptr::eq(result, start) {
                break;
            }
        }
        if !found {
            if let Some(avoid) = avoid {
                if core::ptr::eq(result, avoid) {
                    result = result.next_arena();
                }
            }
            result.mutex.lock();
        }
        self.drain_deferred(result);
        let replaced = slot.arena();
        self.free_list_lock.lock();
        detach_arena(replaced);
        self.remove_from_free_list(result);
        result.attached_threads.set(result.attached_threads.get() + 1);
        self.free_list_lock.unlock();
        slot.set_arena(Some(result));
        self.next_to_use.store(result.next.load(Ordering::Relaxed), Ordering::Relaxed);
        result
    }

    /// Called with `free_list_lock` held.
    fn remove_from_free_list(&self, arena: &Arena) {
        let mut prev: Option<&Arena> = None;
        let mut p = self.free_list.load(Ordering::Relaxed);
        while !p.is_null() {
            // SAFETY: free-list entries are live arenas.
            let a = unsafe { &*p };
            if core::ptr::eq(a, arena) {
                match prev {
                    None => self.free_list.store(a.next_free.get(), Ordering::Relaxed),
                    Some(prev) => prev.next_free.set(a.next_free.get()),
                }
                return;
            }
            prev = Some(a);
            p = a.next_free.get();
        }
    }

    /// An allocation failed in `av` (locked): try another arena, returned locked. From a
    /// heap arena fall back to the main arena (the brk heap may still grow); from the main
    /// arena to another (mmap may still work where brk did not).
    pub(crate) fn arena_get_retry(
        &'static self,
        slot: &ThreadSlot,
        av: &'static Arena,
        locked: bool,
        size: usize,
    ) -> (&'static Arena, bool) {
        self.unlock_arena(av, locked);
        if !av.is_main() {
            (&self.main_arena, self.lock_and_drain(&self.main_arena))
        } else if !locked || slot.is_exited() {
            // A forking or exited thread stays with the main arena (see `arena_get`).
            (av, self.lock_and_drain(av))
        } else {
            (self.arena_get2(slot, size, Some(av)), true)
        }
    }

    /// A thread is exiting: the arena it used may go on the free list, with nothing left
    /// deferred to it (an arena on the free list may wait long for its next holder).
    pub(crate) fn arena_thread_detach(&'static self, slot: &ThreadSlot) {
        if let Some(a) = slot.arena() {
            if a.has_deferred() {
                let locked = self.lock_and_drain(a);
                self.unlock_arena(a, locked);
            }
            slot.set_arena(None);
            self.free_list_lock.lock();
            let n = a.attached_threads.get();
            if n > 0 {
                a.attached_threads.set(n - 1);
                if n == 1 {
                    a.next_free.set(self.free_list.load(Ordering::Relaxed));
                    self.free_list.store(a as *const Arena as *mut Arena, Ordering::Relaxed);
                }
            }
            self.free_list_lock.unlock();
        }
    }

    /// Visit every arena, the main one first.
    pub(crate) fn for_each_arena(&self, mut visit: impl FnMut(&Arena)) {
        let mut a: &Arena = &self.main_arena;
        loop {
            visit(a);
            let next = a.next.load(Ordering::Acquire);
            if next.is_null() || core::ptr::eq(next, &self.main_arena) {
                break;
            }
            // SAFETY: arenas on the list are never freed.
            a = unsafe { &*next };
        }
    }
}

/// Take `av`'s lock, waiting if need be, unless the calling thread holds every lock for a
/// fork; returns whether it locked. The fork check is made only once the lock is seen taken.
#[inline(always)]
fn acquire(av: &Arena) -> bool {
    if av.mutex.try_lock() {
        return true;
    }
    if crate::fork::forking_thread() {
        return false;
    }
    av.mutex.lock();
    true
}

/// Drop a thread's attachment to its previous arena (with `free_list_lock` held). An arena
/// left without threads is not put on the free list here: it was replaced because an
/// allocation in it failed.
fn detach_arena(replaced: Option<&Arena>) {
    if let Some(a) = replaced {
        let n = a.attached_threads.get();
        if n > 0 {
            a.attached_threads.set(n - 1);
        }
    }
}
