//! Arenas (glibc's `malloc_state`): a lock, the bins, the top chunk, and which threads use it.
//!
//! The main arena lives inside the [`Malloc`] instance and grows the program break; every
//! other arena sits at the start of its first mmapped heap (see `heap.rs`), so the arena of
//! a chunk flagged `NON_MAIN_ARENA` is found by masking the chunk's address down to its heap.
//! Threads are spread over arenas: a thread keeps the arena it first got, new arenas are
//! made until there are 8 per core (or `M_ARENA_MAX`), after that threads share, picking an
//! arena nobody holds if there is one.
//!
//! An [`Arena`] owns what its lock protects: the bins, the top chunk and the counts live in
//! an [`ArenaState`] that only an [`ArenaGuard`] reaches, and the guard unlocks on drop. The
//! free list (arenas no thread is attached to) is a [`Mutex`](crate::lock::Mutex) of its own, whose guard is
//! the only way to an arena's free-list link and thread count.
//!
//! ARCHITECTURE.md, "Threads, locks and their order", has the lock order and the fork rules.

use core::cell::Cell;
use core::marker::PhantomData;
use core::mem::offset_of;
use core::ops::Deref;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::bins::{idx2bit, idx2block, BINMAPSIZE, NBINS, NFASTBINS, UNSORTED};
use crate::chunk::{Chunk, CHUNK_HDR_SZ, NON_MAIN_ARENA};
use crate::heap::{heap_for_ptr, HeapInfo};
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

/// Bytes in a cache line (x86-64, and the usual AArch64 parts).
pub(crate) const CACHE_LINE: usize = 64;

/// A value alone on its cache line(s): aligned to a line and padded to whole lines.
#[repr(C, align(64))]
pub(crate) struct CacheAligned<T>(pub(crate) T);

const _: () = assert!(core::mem::align_of::<CacheAligned<u8>>() == CACHE_LINE);

/// The words of an arena that other threads write: its lock, and the stack of chunks they
/// freed without taking it.
pub(crate) struct ArenaLock {
    mutex: Lock,
    /// Chunks other threads freed without taking the lock: a lock-free stack (safe-linked
    /// through `fd`), emptied by the next holder of the lock (see `drain_deferred`). The
    /// top 16 bits count the chunks waiting; the low 48 are the newest chunk's address.
    deferred: AtomicUsize,
}

/// An arena. See the module documentation for who may touch which part.
#[repr(C)]
pub(crate) struct Arena {
    /// Alone on the first cache line: other threads hammer these two words, which would
    /// otherwise take the holder's lines of the state from it.
    shared: CacheAligned<ArenaLock>,
    /// What the lock protects; reached through an [`ArenaGuard`] only.
    state: ArenaState,
    /// The next arena in the circular list of all arenas (published under `list_lock`,
    /// read without it: arenas are never freed).
    pub(crate) next: AtomicPtr<Arena>,
    /// Link in the free list; only [`FreeList`]'s methods touch it (under its lock).
    next_free: Cell<*const Arena>,
    /// Threads using this arena; only [`FreeList`]'s methods touch it (under its lock).
    attached_threads: Cell<usize>,
}

// The lock line holds nothing else: the state starts on the next line.
const _: () = assert!(offset_of!(Arena, state) == CACHE_LINE);
const _: () = assert!(core::mem::size_of::<ArenaLock>() <= CACHE_LINE);

// SAFETY: the state's Cells are reached only through an ArenaGuard, which one thread at a
// time holds (the lock, or a process with a single thread); `next_free` and
// `attached_threads` only by FreeList under its mutex; the rest is atomic or immutable.
unsafe impl Sync for Arena {}

/// Everything an arena's lock protects (glibc's `malloc_state` without the mutex).
///
/// The arena invariant, which the `unsafe` setters below ask their callers to keep and on
/// which every function that takes a held arena relies: `top`, `last_remainder`, the
/// fastbins and the bins name chunks in this arena's memory (its brk regions or heaps) —
/// or, for the bins and the initial top, the arena's own bin headers.
#[repr(C)]
pub(crate) struct ArenaState {
    /// `NON_MAIN_ARENA` for heap arenas, 0 for the main arena: or-ed into chunk headers.
    /// Fixed at construction, so it may be read without the lock.
    arena_bit: usize,
    flags: Cell<u32>,
    /// Whether any fastbin may be non-empty.
    pub(crate) have_fastchunks: Cell<bool>,
    /// Heads of the fastbins; a chunk's `fd` word holds the next one, safe-linked.
    fastbins: [Cell<Option<Chunk>>; NFASTBINS],
    /// The top chunk (`None` only before `init`, where it is the initial top).
    top: Cell<Option<Chunk>>,
    /// The remainder of the last split for a small request (locality for runs of them).
    /// It must sit just before `bins`: the unsorted bin's header doubles as the initial top
    /// chunk, and this word is read as that chunk's size (0 until the first allocation).
    last_remainder: Cell<Option<Chunk>>,
    /// Each bin's list head and tail, read as the `fd`/`bk` of a fake chunk (`bin_at`).
    bins: [Cell<usize>; NBINS * 2 - 2],
    /// Bit `i` set if bin `i` may be non-empty (never clear while it is non-empty).
    binmap: [Cell<u32>; BINMAPSIZE],
    /// Bytes obtained from the kernel for this arena (its heaps, or the brk regions).
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
const _: () = assert!(offset_of!(ArenaState, bins) == offset_of!(ArenaState, last_remainder) + 8);
const _: () = assert!(offset_of!(ArenaState, last_remainder) == offset_of!(ArenaState, top) + 8);

impl Arena {
    /// An arena, empty until [`ArenaState::init`] runs on it.
    pub(crate) const fn new(main: bool) -> Arena {
        Arena {
            shared: CacheAligned(ArenaLock { mutex: Lock::new(), deferred: AtomicUsize::new(0) }),
            state: ArenaState {
                arena_bit: if main { 0 } else { NON_MAIN_ARENA },
                flags: Cell::new(0),
                have_fastchunks: Cell::new(false),
                fastbins: [const { Cell::new(None) }; NFASTBINS],
                top: Cell::new(None),
                last_remainder: Cell::new(None),
                bins: [const { Cell::new(0) }; NBINS * 2 - 2],
                binmap: [const { Cell::new(0) }; BINMAPSIZE],
                system_mem: Cell::new(0),
                max_system_mem: Cell::new(0),
                clean_from: Cell::new(usize::MAX),
                in_use: Cell::new(0),
                unflushed: Cell::new(0),
                segments: [const { Cell::new(0) }; MAX_SEGMENTS],
                nsegments: Cell::new(0),
            },
            next: AtomicPtr::new(core::ptr::null_mut()),
            next_free: Cell::new(core::ptr::null()),
            attached_threads: Cell::new(0),
        }
    }

    #[inline(always)]
    pub(crate) fn is_main(&self) -> bool {
        self.state.arena_bit == 0
    }

    /// Take the lock, waiting if need be — unless the calling thread is forking and holds
    /// every arena already (see `fork.rs`); the guard then unlocks nothing. The fork check
    /// is made only once the lock is seen taken.
    #[inline(always)]
    pub(crate) fn lock(&'static self) -> ArenaGuard {
        if let Some(g) = self.try_lock() {
            return g;
        }
        if crate::fork::forking_thread() {
            return ArenaGuard { arena: self, locked: false, _not_send: PhantomData };
        }
        self.shared.0.mutex.lock();
        ArenaGuard { arena: self, locked: true, _not_send: PhantomData }
    }

    /// Take the lock if nobody holds it.
    #[inline(always)]
    pub(crate) fn try_lock(&'static self) -> Option<ArenaGuard> {
        // Not `then_some`: a guard built for a lock not taken would unlock it when dropped.
        if self.shared.0.mutex.try_lock() {
            Some(ArenaGuard { arena: self, locked: true, _not_send: PhantomData })
        } else {
            None
        }
    }

    /// Use the arena without its lock.
    ///
    /// # Safety
    /// No other thread can touch the arena meanwhile: the process has a single thread
    /// (nothing is deferred to an arena then either), or the caller holds its lock already.
    #[inline(always)]
    pub(crate) unsafe fn assume_held(&'static self) -> ArenaGuard {
        ArenaGuard { arena: self, locked: false, _not_send: PhantomData }
    }

    /// Take the lock and keep it past any guard (the fork handlers hold every arena across
    /// `fork`).
    pub(crate) fn lock_forever(&self) {
        self.shared.0.mutex.lock();
    }

    /// # Safety
    /// The calling thread took the lock with [`Arena::lock_forever`].
    pub(crate) unsafe fn unlock_forever(&self) {
        // SAFETY: the caller took the lock with lock_forever.
        unsafe { self.shared.0.mutex.unlock() };
    }

    /// Leave a chunk for the lock's next holder to free; returns how many chunks are now
    /// waiting. The chunk carries the tcache `key` meanwhile, so that freeing it a second
    /// time is noticed (see `int_free`).
    ///
    /// # Safety
    /// `c` is an in-use chunk of this arena that the caller is freeing (nobody else touches
    /// it), below `DEFER_ADDR_LIMIT`.
    pub(crate) unsafe fn defer(&self, c: Chunk, key: usize) -> usize {
        // SAFETY: the chunk is the caller's until the push publishes it: a run of one.
        unsafe {
            c.set_bk_word(key);
            self.defer_run(c, c, 1)
        }
    }

    /// Leave a run of `n` chunks, already linked from `first` to `last` through their
    /// safe-linked `fd` and each carrying the tcache key, for the lock's next holder, in one
    /// atomic operation; returns how many chunks are now waiting.
    ///
    /// # Safety
    /// As for [`Arena::defer`], for every chunk of the run; `last` is its last.
    pub(crate) unsafe fn defer_run(&self, first: Chunk, last: Chunk, n: usize) -> usize {
        let deferred = &self.shared.0.deferred;
        let mut head = deferred.load(Ordering::Relaxed);
        loop {
            let waiting = ((head >> DEFER_COUNT_SHIFT) + n).min(DEFER_COUNT_MAX);
            // SAFETY: the run is the caller's until the push below publishes it; the link is
            // rewritten on every attempt until the push wins.
            unsafe { last.set_fd_protected(Chunk::new(head & DEFER_ADDR_MASK)) };
            let new = first.addr() | (waiting << DEFER_COUNT_SHIFT);
            match deferred.compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return waiting,
                Err(h) => head = h,
            }
        }
    }

    /// Whether other threads left chunks for the arena's next holder.
    #[inline(always)]
    pub(crate) fn has_deferred(&self) -> bool {
        self.shared.0.deferred.load(Ordering::Relaxed) != 0
    }
}

/// The right to use an arena's state: the arena's lock, or a process where no other thread
/// can run. Dropping it releases the lock if it took one. It stays on the thread that took
/// it (neither `Send` nor `Sync`): the state it hands out is `Cell`s.
#[must_use = "the arena is released when the guard is dropped"]
pub(crate) struct ArenaGuard {
    arena: &'static Arena,
    locked: bool,
    _not_send: PhantomData<*const ()>,
}

impl ArenaGuard {
    /// The arena held.
    #[inline(always)]
    pub(crate) fn arena(&self) -> &'static Arena {
        self.arena
    }

    /// Whether this guard took the lock (not in a single-threaded process, nor for the
    /// forking thread, which holds every lock already).
    #[inline(always)]
    pub(crate) fn locked(&self) -> bool {
        self.locked
    }

    /// Take the whole deferred stack.
    #[inline]
    pub(crate) fn take_deferred(&self) -> Option<Chunk> {
        if !self.arena.has_deferred() {
            return None;
        }
        Chunk::new(self.arena.shared.0.deferred.swap(0, Ordering::Acquire) & DEFER_ADDR_MASK)
    }
}

impl Deref for ArenaGuard {
    type Target = ArenaState;
    #[inline(always)]
    fn deref(&self) -> &ArenaState {
        &self.arena.state
    }
}

impl Drop for ArenaGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if self.locked {
            // SAFETY: this guard took the lock (`locked`), and goes now.
            unsafe { self.arena.shared.0.mutex.unlock() };
        }
    }
}

impl Arena {
    /// glibc's `malloc_init_state` (see [`ArenaState::init`]).
    ///
    /// # Safety
    /// No other thread can reach the arena yet.
    pub(crate) unsafe fn init(&'static self) {
        // SAFETY: nobody else can reach the arena, so using it unlocked is exclusive use.
        unsafe { self.assume_held() }.init();
    }
}

impl ArenaState {
    /// glibc's `malloc_init_state`: empty circular bins, no fast chunks, and the initial
    /// top — the unsorted bin's header, of size 0 — so the first request goes to sysmalloc.
    pub(crate) fn init(&self) {
        for i in 1..NBINS {
            let bin = self.bin_at(i);
            // SAFETY: a bin's fake chunk has its fd/bk words inside `bins`.
            unsafe {
                bin.set_fd(bin);
                bin.set_bk(bin);
            }
        }
        self.flags.set(if self.is_main() { 0 } else { NONCONTIGUOUS });
        self.have_fastchunks.set(false);
        for fb in &self.fastbins {
            fb.set(None);
        }
        self.last_remainder.set(None);
        self.top.set(Some(self.initial_top()));
    }

    #[inline(always)]
    pub(crate) fn is_main(&self) -> bool {
        self.arena_bit == 0
    }

    #[inline(always)]
    pub(crate) fn arena_bit(&self) -> usize {
        self.arena_bit
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
        // SAFETY: an address inside this arena, so not zero.
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
        match self.top.get() {
            Some(c) => c,
            None => self.initial_top(),
        }
    }

    /// # Safety
    /// `c` is a chunk in this arena's memory (the arena invariant, see [`ArenaState`]).
    #[inline(always)]
    pub(crate) unsafe fn set_top(&self, c: Chunk) {
        self.top.set(Some(c))
    }

    /// Freed memory joined the top chunk, which now starts lower, at `c`: the part of the
    /// new top below the old top's user area is not known to be zero.
    ///
    /// # Safety
    /// As for [`ArenaState::set_top`].
    pub(crate) unsafe fn merge_into_top(&self, c: Chunk) {
        let dirty_to = self.top().addr() + CHUNK_HDR_SZ;
        if self.clean_from.get() < dirty_to {
            self.clean_from.set(dirty_to);
        }
        // SAFETY: forwarded.
        unsafe { self.set_top(c) };
    }

    /// A new top chunk in memory fresh from the kernel (all of its user area reads zero).
    ///
    /// # Safety
    /// As for [`ArenaState::set_top`].
    pub(crate) unsafe fn set_fresh_top(&self, c: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.set_top(c) };
        self.clean_from.set(c.addr() + CHUNK_HDR_SZ);
    }

    /// The remainder of the last split for a small request.
    #[inline(always)]
    pub(crate) fn last_remainder(&self) -> Option<Chunk> {
        self.last_remainder.get()
    }

    /// # Safety
    /// As for [`ArenaState::set_top`].
    #[inline(always)]
    pub(crate) unsafe fn set_last_remainder(&self, c: Chunk) {
        self.last_remainder.set(Some(c))
    }

    /// The top chunk now ends at `end` (memory above was returned to the kernel and will
    /// read as zero when it comes back).
    pub(crate) fn top_trimmed_to(&self, end: usize) {
        if self.clean_from.get() > end {
            self.clean_from.set(end);
        }
    }

    /// The head of fastbin `i` (its chunks' links are safe-linked).
    #[inline(always)]
    pub(crate) fn fastbin(&self, i: usize) -> Option<Chunk> {
        self.fastbins[i].get()
    }

    /// # Safety
    /// `c`, if any, is a chunk in this arena's memory (the arena invariant, see
    /// [`ArenaState`]).
    #[inline(always)]
    pub(crate) unsafe fn set_fastbin(&self, i: usize, c: Option<Chunk>) {
        self.fastbins[i].set(c)
    }

    /// Empty fastbin `i`, returning its head.
    #[inline(always)]
    pub(crate) fn take_fastbin(&self, i: usize) -> Option<Chunk> {
        self.fastbins[i].take()
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

    /// The heap holding the top chunk of a heap arena; `None` for the main arena.
    pub(crate) fn top_heap(&self) -> Option<&'static HeapInfo> {
        // SAFETY: a heap arena's top lies in its newest heap, mapped while the arena lives.
        (!self.is_main()).then(|| unsafe { heap_for_ptr(self.top().addr()) })
    }

    pub(crate) fn add_segment(&self, start: usize) {
        let n = self.nsegments.get();
        if n < MAX_SEGMENTS {
            self.segments[n].set(start);
        }
        self.nsegments.set(n + 1);
    }
}

/// The right to add to the circular list of all arenas (glibc's `list_lock`): the data of
/// `Malloc::list_lock`, so an arena is published only under it. The list is read without
/// it — arenas are never freed and links are published with release stores.
pub(crate) struct ArenaList;

impl ArenaList {
    /// Put `a` into the list, right after the main arena.
    fn push(&mut self, main: &Arena, a: &'static Arena) {
        a.next.store(main.next.load(Ordering::Acquire), Ordering::Release);
        main.next.store(a as *const Arena as *mut Arena, Ordering::Release);
    }
}

/// The arenas no thread is attached to (glibc's `free_list`), and every arena's count of
/// attached threads: the data of `Malloc::free_list`, so only its guard reaches them.
pub(crate) struct FreeList {
    head: *const Arena,
}

// SAFETY: the pointers are to arenas, which are Sync and never freed.
unsafe impl Send for FreeList {}

impl FreeList {
    pub(crate) const fn new() -> FreeList {
        FreeList { head: core::ptr::null() }
    }

    /// Take an arena no thread uses, attaching the calling thread to it.
    fn pop(&mut self) -> Option<&'static Arena> {
        // SAFETY: free-list entries are live arenas, never freed.
        let a: &'static Arena = unsafe { self.head.as_ref()? };
        self.head = a.next_free.get();
        a.attached_threads.set(1);
        Some(a)
    }

    /// One more thread uses `a`.
    pub(crate) fn attach(&mut self, a: &Arena) {
        a.attached_threads.set(a.attached_threads.get() + 1);
    }

    /// A thread no longer uses `a`: an arena left without threads goes on the free list if
    /// `release` (its last thread exited), else stays off it (the thread moved away because
    /// an allocation failed there).
    fn detach(&mut self, a: &Arena, release: bool) {
        let n = a.attached_threads.get();
        if n == 0 {
            return;
        }
        a.attached_threads.set(n - 1);
        if n == 1 && release {
            a.next_free.set(self.head);
            self.head = a;
        }
    }

    fn remove(&mut self, arena: &Arena) {
        let mut prev: Option<&Arena> = None;
        let mut p = self.head;
        // SAFETY: free-list entries are live arenas.
        while let Some(a) = unsafe { p.as_ref() } {
            if core::ptr::eq(a, arena) {
                match prev {
                    None => self.head = a.next_free.get(),
                    Some(prev) => prev.next_free.set(a.next_free.get()),
                }
                return;
            }
            prev = Some(a);
            p = a.next_free.get();
        }
    }

    /// After `fork`, in the child: only the forking thread exists, attached to `mine`;
    /// every other arena is free for the taking.
    fn rebuild(&mut self, arenas: impl Iterator<Item = &'static Arena>, mine: Option<&Arena>) {
        self.head = core::ptr::null();
        for a in arenas {
            if mine.is_some_and(|mine| core::ptr::eq(mine, a)) {
                a.attached_threads.set(1);
            } else {
                a.attached_threads.set(0);
                a.next_free.set(self.head);
                self.head = a;
            }
        }
    }
}

impl<K: Kernel> Malloc<K> {
    /// The arena that owns a non-mmapped chunk.
    ///
    /// # Safety
    /// `p` is a non-mmapped chunk this allocator handed out, its header intact.
    #[inline(always)]
    pub(crate) unsafe fn arena_for_chunk(&'static self, p: Chunk) -> &'static Arena {
        // SAFETY: the caller promises an intact header.
        if unsafe { p.non_main_arena() } {
            // SAFETY: a NON_MAIN_ARENA chunk lies in a heap whose header names its arena.
            unsafe { &*heap_for_ptr(p.addr()).ar_ptr() }
        } else {
            &self.main_arena
        }
    }

    /// Hold `av` — its lock, unless the process is single-threaded — and free what others
    /// deferred to it.
    #[inline(always)]
    pub(crate) fn lock_arena(&'static self, av: &'static Arena) -> ArenaGuard {
        if single_threaded() {
            // SAFETY: no other thread exists to touch the arena.
            let g = unsafe { av.assume_held() };
            self.drain_deferred(&g);
            g
        } else {
            self.lock_and_drain(av)
        }
    }

    /// Lock `av` (waiting if need be) and free what others deferred to it.
    #[inline]
    pub(crate) fn lock_and_drain(&'static self, av: &'static Arena) -> ArenaGuard {
        let g = av.lock();
        self.drain_deferred(&g);
        g
    }

    /// The calling thread's arena, held (glibc's `arena_get`).
    pub(crate) fn arena_get(&'static self, slot: &ThreadSlot, size: usize) -> ArenaGuard {
        match slot.arena() {
            Some(a) => self.lock_and_drain(a),
            // A thread that has exited (its later allocations come from TLS destructors)
            // borrows the main arena rather than attaching to one it would never leave; a
            // forking thread may not wait for the arena list lock it holds.
            None if slot.is_exited() || crate::fork::forking_thread() => {
                self.lock_and_drain(&self.main_arena)
            }
            None => self.arena_get2(slot, size, None),
        }
    }

    /// Find or make an arena for a thread that has none, or is moving away from `avoid`;
    /// returned locked. If a new arena cannot be mapped, an existing one is shared.
    fn arena_get2(
        &'static self,
        slot: &ThreadSlot,
        size: usize,
        avoid: Option<&'static Arena>,
    ) -> ArenaGuard {
        if let Some(g) = self.get_free_list(slot) {
            return g;
        }
        let limit = self.narenas_limit();
        loop {
            let n = self.narenas.load(Ordering::Relaxed);
            if n < limit {
                if self.narenas.compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                    continue;
                }
                match self.new_arena(slot, size) {
                    Some(g) => return g,
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
    fn new_arena(&'static self, slot: &ThreadSlot, size: usize) -> Option<ArenaGuard> {
        let a = self.new_heap_arena(size)?;
        let replaced = slot.arena();
        slot.set_arena(Some(a));
        // Locked before it is published, so reused_arena cannot hand it to another thread
        // first (nobody else can know it yet, so this does not wait).
        let g = a.lock();
        self.list_lock.lock().push(&self.main_arena, a);
        {
            let mut free = self.free_list.lock();
            free.attach(a);
            if let Some(r) = replaced {
                free.detach(r, false);
            }
        }
        self.stats.arenas_created.fetch_add(1, Ordering::Relaxed);
        Some(g)
    }

    /// Take an arena no thread uses, if any, held.
    fn get_free_list(&'static self, slot: &ThreadSlot) -> Option<ArenaGuard> {
        let replaced = slot.arena();
        let a = {
            let mut free = self.free_list.lock();
            let a = free.pop()?;
            if let Some(r) = replaced {
                free.detach(r, false);
            }
            a
        };
        let g = self.lock_and_drain(a);
        slot.set_arena(Some(a));
        Some(g)
    }

    /// All arenas exist: take one no thread holds right now, or wait for the next in turn.
    fn reused_arena(&'static self, slot: &ThreadSlot, avoid: Option<&'static Arena>) -> ArenaGuard {
        let start = match self.next_to_use.load(Ordering::Relaxed) {
            p if p.is_null() => &self.main_arena,
            // SAFETY: next_to_use only ever holds arenas of this instance.
            p => unsafe { &*p },
        };
        let mut result: &'static Arena = start;
        let g = loop {
            if let Some(g) = result.try_lock() {
                break g;
            }
            result = self.next_arena(result);
            if core::ptr::eq(result, start) {
                if avoid.is_some_and(|avoid| core::ptr::eq(result, avoid)) {
                    result = self.next_arena(result);
                }
                break result.lock();
            }
        };
        self.drain_deferred(&g);
        {
            let mut free = self.free_list.lock();
            if let Some(r) = slot.arena() {
                free.detach(r, false);
            }
            free.remove(result);
            free.attach(result);
        }
        slot.set_arena(Some(result));
        self.next_to_use.store(result.next.load(Ordering::Relaxed), Ordering::Relaxed);
        g
    }

    /// An allocation failed in `av`: try another arena, returned held. From a heap arena
    /// fall back to the main arena (the brk heap may still grow); from the main arena to
    /// another (mmap may still work where brk did not).
    pub(crate) fn arena_get_retry(
        &'static self,
        slot: &ThreadSlot,
        av: ArenaGuard,
        size: usize,
    ) -> ArenaGuard {
        let failed = av.arena();
        let locked = av.locked();
        drop(av);
        if !failed.is_main() {
            self.lock_and_drain(&self.main_arena)
        } else if !locked || slot.is_exited() {
            // Without a lock taken (a single-threaded process, or the forking thread) or for
            // an exited thread, stay with the main arena (see `arena_get`).
            self.lock_and_drain(failed)
        } else {
            self.arena_get2(slot, size, Some(failed))
        }
    }

    /// A thread is exiting: the arena it used may go on the free list, with nothing left
    /// deferred to it (an arena on the free list may wait long for its next holder).
    pub(crate) fn arena_thread_detach(&'static self, slot: &ThreadSlot) {
        if let Some(a) = slot.arena() {
            if a.has_deferred() {
                drop(self.lock_and_drain(a));
            }
            slot.set_arena(None);
            self.free_list.lock().detach(a, true);
        }
    }

    /// The first thread of the process uses the main arena.
    pub(crate) fn attach_main_arena(&'static self, slot: &ThreadSlot) {
        slot.set_arena(Some(&self.main_arena));
        self.free_list.lock().attach(&self.main_arena);
    }

    /// After `fork`, in the child: every lock unlocked, the forking thread's arena kept,
    /// every other arena free.
    ///
    /// # Safety
    /// The calling process is the child of a `fork` whose prepare handler locked every
    /// arena and the arena list; nothing else has run in it yet. (The free list is not
    /// locked across fork, as in glibc: the child rebuilds it from scratch.)
    pub(crate) unsafe fn reinit_arenas_after_fork(&'static self) {
        // SAFETY: the threads that held these locks do not exist in the child.
        unsafe {
            self.free_list.reset();
            self.list_lock.reset();
        }
        let mine = self.slot().arena();
        // SAFETY: as above, for every arena's lock.
        self.arenas().for_each(|a| unsafe { a.shared.0.mutex.reset() });
        self.free_list.lock().rebuild(self.arenas(), mine);
    }

    /// The arena after `a` in the circular list of all arenas.
    #[inline(always)]
    pub(crate) fn next_arena(&'static self, a: &Arena) -> &'static Arena {
        let next = a.next.load(Ordering::Acquire);
        // SAFETY: arenas on the list are never freed; a null link (before the list closes)
        // leads back to the main arena.
        unsafe { next.as_ref() }.unwrap_or(&self.main_arena)
    }

    /// Every arena, the main one first.
    pub(crate) fn arenas(&'static self) -> impl Iterator<Item = &'static Arena> {
        let mut next = Some(&self.main_arena);
        core::iter::from_fn(move || {
            let a = next?;
            let after = self.next_arena(a);
            next = (!core::ptr::eq(after, &self.main_arena)).then_some(after);
            Some(a)
        })
    }
}
