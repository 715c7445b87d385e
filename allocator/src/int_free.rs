//! Freeing a chunk into its arena (glibc's `_int_free`).
//!
//! A freed chunk goes, in order of preference, to the thread cache, to a fastbin (small
//! chunks, not coalesced), or is coalesced with its free neighbours and put in the unsorted
//! bin — or merged into top. Freeing something large afterwards also consolidates fastbins
//! and trims the heap if its top has grown past the trim threshold. A thread that frees
//! into an arena it does not hold either takes the lock without waiting or leaves the chunk
//! on the arena's deferred stack for the lock's next holder.
//!
//! ARCHITECTURE.md, "The life of a `free`", puts this step in its place.

use core::sync::atomic::Ordering;

use crate::arena::{Arena, ArenaGuard, DEFER_ADDR_LIMIT};
use crate::bins::{
    fastbin_index, in_smallbin_range, smallbin_index, unlink_chunk, FASTBIN_CONSOLIDATION_THRESHOLD,
};
use crate::check::CHUNK_CHECKS;
use crate::chunk::{aligned_ok, Chunk, CHUNK_HDR_SZ, MINSIZE, PREV_INUSE};
use crate::int_malloc::merge_with_prev;
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::prim::single_threaded;
use crate::printerr::malloc_printerr;
use crate::tcache::{slot_of, Tcache, MID_MAX_CHUNK, MID_MIN_CHUNK, TCACHE_SLOTS};

/// Chunks waiting on an arena's deferred stack past which the freeing thread frees them
/// itself if the lock is free, and past which it waits for the lock.
const DEFER_LIMIT: usize = 128;
const DEFER_HARD_LIMIT: usize = 4096;

impl<K: Kernel> Malloc<K> {
    /// Free chunk `p` of arena `av`, which the caller does not hold.
    ///
    /// # Safety
    /// `p` is a chunk of ours (of arena `av` unless mmapped) that `free` may be given: in
    /// use, or the checks abort.
    pub(crate) unsafe fn int_free(&'static self, av: &'static Arena, p: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.int_free_body(av, None, p) }
    }

    /// [`Malloc::int_free`], inlined into `free`'s slow path (one call layer less on every
    /// free the thread cache cannot take).
    ///
    /// # Safety
    /// As for [`Malloc::int_free`].
    #[inline(always)]
    pub(crate) unsafe fn int_free_inline(&'static self, av: &'static Arena, p: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.int_free_body(av, None, p) }
    }

    /// Free chunk `p` of the arena `av` holds (glibc's `_int_free` with `have_lock`).
    ///
    /// # Safety
    /// As for [`Malloc::int_free`], with `p` of `av`'s arena.
    pub(crate) unsafe fn int_free_held(&'static self, av: &ArenaGuard, p: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.int_free_body(av.arena(), Some(av), p) }
    }

    /// # Safety
    /// As for [`Malloc::int_free`]; `held`, if given, holds `av`.
    #[inline(always)]
    unsafe fn int_free_body(&'static self, av: &'static Arena, held: Option<&ArenaGuard>, p: Chunk) {
        // SAFETY: the caller's chunk: its header is ours to read.
        let size = unsafe { p.size() };
        // The allocator never wraps around the end of the address space, and every chunk is
        // aligned and at least MINSIZE: anything else was not allocated here.
        if p.addr() > size.wrapping_neg() || !aligned_ok(p.addr()) {
            malloc_printerr("free(): invalid pointer");
        }
        if size < MINSIZE || !aligned_ok(size) {
            malloc_printerr("free(): invalid size");
        }
        // SAFETY: the caller's chunk, as above.
        let mmapped = unsafe { p.is_mmapped() };

        let tc = self.thread_tcache();
        let slot = slot_of(size);
        if tc.serves(slot) {
            let key = self.key();
            let mem = p.mem();
            // SAFETY: a chunk of at least MINSIZE bytes holds the key word.
            if unsafe { Tcache::entry_key(mem) } == key {
                tc.verify_not_cached(mem, slot);
                if !mmapped {
                    // SAFETY: forwarded.
                    unsafe { self.free_marked(av, held, p) };
                    return;
                }
            }
            // A chunk of another thread's arena is cached here too, as glibc does: sending
            // each one back to its arena (deferred to its owner) kept memory waiting behind
            // owners that were not running, and raised the demonstration's peak RSS by half.
            if !tc.has_room(slot) && held.is_none() && !tc.try_grow(slot) && !single_threaded() {
                // The bin is full (and does not grow): give a quarter of it back to its
                // arenas in one go, one lock for the lot. The fewer given back, the fewer
                // chunks go through the arena: in a random walk of frees and mallocs over a
                // bin of 7, giving back 2 moves 13% fewer chunks than giving back half (4)
                // for 4% more trips, and a run of 16 frees then 16 mallocs sends 10 pairs to
                // the arena rather than 12. With no lock to share (one thread), the chunk
                // itself goes, as in glibc: fewest chunks moved (9 pairs of that run).
                // SAFETY: the cache is the calling thread's own (it serves this slot).
                unsafe { self.tcache_flush(tc, slot, tc.capacity(slot).div_ceil(4)) };
            }
            if tc.has_room(slot) {
                // SAFETY: an in-use chunk, not cached.
                unsafe { tc.put(p, slot, key) };
                return;
            }
        }

        // A chunk the ring has no room for goes to its arena unless it carries the key: then
        // it may be in the ring already, which `free_to_mid` finds out.
        let (av, p) = if !mmapped
            && held.is_none()
            && (MID_MIN_CHUNK..=MID_MAX_CHUNK).contains(&size)
            // SAFETY: a chunk of at least MINSIZE bytes holds the key word.
            && (tc.mid_has_room(size) || unsafe { Tcache::entry_key(p.mem()) } == self.key())
        {
            // SAFETY: forwarded: the caller's in-use chunk, not cached.
            match unsafe { self.free_to_mid(tc, p, size) } {
                // SAFETY: a chunk of ours (never mmapped: the ring takes none) to free into
                // its own arena.
                Some(c) => (unsafe { self.arena_for_chunk(c) }, c),
                None => return,
            }
        } else {
            (av, p)
        };

        // SAFETY: the caller's chunk (or the ring's oldest); an unmapped one belongs to `av`.
        unsafe {
            if mmapped {
                self.munmap_chunk(p);
            } else if let Some(av) = held {
                self.int_free_chunk_held(av, p);
            } else {
                // The one call site on `free`'s own path: the arena's part inlined here, a
                // call layer (its register saves and restores) less per chunk.
                let g = if single_threaded() {
                    // No other thread exists; nothing is deferred before the second starts.
                    av.assume_held()
                } else {
                    match self.take_or_defer(av, p) {
                        Some(g) => g,
                        None => return,
                    }
                };
                self.int_free_chunk_held_inline(&g, p);
            }
        }
    }

    /// Put a larger chunk in the thread's ring (see `Tcache::mid`); returns the chunk to
    /// free into its arena instead (the ring's oldest, or `p` when the ring cannot take it).
    ///
    /// A chunk that carries the cache's key and is in the ring is being freed twice: its
    /// first free is completed in its arena and the second made there too, under one hold
    /// of the lock, so glibc's own checks report it in glibc's words.
    ///
    /// # Safety
    /// `p` is an in-use, non-mmapped chunk of `size` bytes the caller is freeing; `tc` is
    /// the calling thread's cache.
    #[inline(never)]
    unsafe fn free_to_mid(&'static self, tc: &Tcache, p: Chunk, size: usize) -> Option<Chunk> {
        let key = self.key();
        // SAFETY: a chunk of at least MINSIZE bytes holds the key word.
        if unsafe { Tcache::entry_key(p.mem()) } == key {
            if let Some(c) = tc.take_mid_if_cached(p.mem()) {
                // SAFETY: `c` is `p`, out of the ring: freed once, now again.
                unsafe {
                    let av = self.lock_arena(self.arena_for_chunk(c));
                    self.int_free_chunk_held(&av, c);
                    self.int_free_chunk_held(&av, c);
                }
                return None;
            }
        }
        // SAFETY: forwarded.
        unsafe { tc.put_mid(p, size, key) }
    }

    /// Free the chunks of the calling thread's ring into their arenas (`malloc_trim`).
    pub(crate) fn flush_mid(&'static self) {
        self.thread_tcache().drain_mid(|mem| {
            // SAFETY: the ring's chunks are in-use chunks of ours that only this thread
            // reaches, each leaving the ring here.
            unsafe {
                let c = Chunk::from_mem(mem);
                self.int_free_chunk_inline(self.arena_for_chunk(c), c);
            }
        });
    }

    /// Give the calling thread's bins their base room back, freeing what they hold beyond
    /// it into the arenas (after its heap grew, at `malloc_trim`, at thread exit and before
    /// new tunables apply): memory a grown bin keeps for the thread's next run of mallocs is
    /// not to cost the heap a growth.
    pub(crate) fn tcache_shrink(&'static self) {
        let tc = self.thread_tcache();
        if !tc.has_grown() {
            return;
        }
        for slot in 2..TCACHE_SLOTS {
            let excess = tc.excess(slot);
            if excess > 0 {
                // SAFETY: the calling thread's own cache.
                unsafe { self.tcache_flush(tc, slot, excess) };
            }
        }
        tc.reset_growth();
    }

    /// Top cannot serve a request of the held arena `av`, whose heap would grow next: first
    /// free into it what the calling thread's cache holds of its chunks — with `whole` (in a
    /// process that has one thread, see `int_malloc`), every one of the default cache's bins
    /// (see `Tcache::full_give_back_due`), else only what grown bins hold beyond their base
    /// room — and the ring's chunks of it. glibc
    /// would have had most of them in its fastbins and bins, consolidated before growing;
    /// left cached, a program that moves from one size to the next grows the heap by each
    /// size's run (glibc-bench simple's three), and one whose live blocks move about leaves
    /// the heap in pieces that cached chunks keep apart (espresso's heap peaked at 1,140 KiB
    /// with the bins' base room kept, 660 KiB without it, 840 KiB on glibc). Chunks of other
    /// arenas stay cached: they are given back once the call lets go of `av`
    /// (`shrink_if_due`). Returns how many chunks it freed into `av`.
    pub(crate) fn tcache_give_back_to(&'static self, av: &ArenaGuard, whole: bool) -> usize {
        let tc = self.thread_tcache();
        let key = self.key();
        let mut freed = 0;
        if whole || tc.has_grown() {
            let mut kept = false;
            for slot in tc.occupied_slots().filter(|&slot| slot >= 2) {
                // Other arenas' chunks, chained through their first word, to be put back.
                let mut foreign: *mut u8 = core::ptr::null_mut();
                for _ in 0..(if whole { tc.count(slot) } else { tc.excess(slot) }) {
                    if tc.first(slot).is_null() {
                        break;
                    }
                    // SAFETY: the bin is not empty; its chunks are in-use chunks of ours that
                    // only this thread reaches (see `tcache_flush`). One of `av` is freed into
                    // it, held; another's first word links it until it is cached again.
                    unsafe {
                        let mem = tc.get(slot);
                        let c = Chunk::from_mem(mem);
                        if core::ptr::eq(self.arena_for_chunk(c), av.arena()) {
                            self.int_free_chunk_held(av, c);
                            freed += 1;
                        } else {
                            *(mem as *mut *mut u8) = foreign;
                            foreign = mem;
                            kept = true;
                        }
                    }
                }
                while !foreign.is_null() {
                    let mem = foreign;
                    // SAFETY: a chunk taken from this bin just above (so the bin has room
                    // for it again), linked through its first word.
                    unsafe {
                        foreign = *(mem as *const *mut u8);
                        tc.put(Chunk::from_mem(mem), slot, key);
                    }
                }
            }
            if !kept && tc.has_grown() {
                tc.reset_growth();
            }
        }
        tc.drain_mid_if(
            |mem| {
                // SAFETY: a chunk in the ring: an in-use chunk of ours, its header intact.
                let owner = unsafe { self.arena_for_chunk(Chunk::from_mem(mem)) };
                core::ptr::eq(owner, av.arena())
            },
            |mem| {
                // SAFETY: a chunk of `av` just taken out of the ring, now freed into it.
                unsafe { self.int_free_chunk_held(av, Chunk::from_mem(mem)) };
                freed += 1;
            },
        );
        freed
    }

    /// Free the first `count` chunks of a thread-cache bin into the arenas they belong to,
    /// holding each arena once for a run of its chunks (blocks other threads handed over
    /// are cached with the thread's own).
    ///
    /// # Safety
    /// `tc` is the calling thread's own cache.
    #[cold]
    #[inline(never)]
    unsafe fn tcache_flush(&'static self, tc: &Tcache, slot: usize, count: usize) {
        let own = self.slot().arena();
        let key = self.key();
        let mut held: Option<ArenaGuard> = None;
        // A run of another arena's chunks, linked as they come: (arena, first, last, count).
        let mut run: Option<(&'static Arena, Chunk, Chunk, usize)> = None;
        for _ in 0..count {
            if tc.first(slot).is_null() {
                break;
            }
            // SAFETY: the bin is not empty; its chunks are in-use chunks of ours that only
            // this thread reaches, each leaving the cache here to be freed into its arena.
            unsafe {
                let c = Chunk::from_mem(tc.get(slot));
                let av = self.arena_for_chunk(c);
                // Another thread's arena is not locked from here (its owner is likely using
                // it): its chunks are deferred to it, a run in one atomic push.
                if !single_threaded()
                    && !own.is_some_and(|a| core::ptr::eq(a, av))
                    && c.addr() < DEFER_ADDR_LIMIT
                {
                    c.set_bk_word(key);
                    match &mut run {
                        Some((a, _, last, n)) if core::ptr::eq(*a, av) => {
                            last.set_fd_protected(Some(c));
                            *last = c;
                            *n += 1;
                        }
                        _ => {
                            if let Some((a, first, last, n)) = run.take() {
                                // defer_run may lock `a`: one arena at a time.
                                drop(held.take());
                                self.defer_run(a, first, last, n);
                            }
                            run = Some((av, c, c, 1));
                        }
                    }
                    continue;
                }
                if !held.as_ref().is_some_and(|g| core::ptr::eq(g.arena(), av)) {
                    // One arena at a time: release the last before taking the next.
                    drop(held.take());
                    held = if single_threaded() {
                        Some(av.assume_held())
                    } else {
                        av.try_lock().inspect(|g| self.drain_deferred(g))
                    };
                }
                match &held {
                    Some(g) => self.int_free_chunk_held(g, c),
                    // Busy: lock it without waiting, or leave the chunk to its holder.
                    None => self.int_free_chunk_inline(av, c),
                }
            }
        }
        drop(held);
        if let Some((a, first, last, n)) = run {
            // SAFETY: a run linked above, of chunks leaving this thread's cache.
            unsafe { self.defer_run(a, first, last, n) };
        }
    }

    /// Defer a linked run of `n` chunks to arena `av` (see [`Arena::defer_run`]), and past
    /// `DEFER_LIMIT` waiting free them here if its lock is free, as `take_or_defer` does.
    ///
    /// # Safety
    /// As for [`Arena::defer_run`].
    unsafe fn defer_run(&'static self, av: &'static Arena, first: Chunk, last: Chunk, n: usize) {
        // SAFETY: forwarded.
        let waiting = unsafe { av.defer_run(first, last, n) };
        self.after_defer(av, waiting);
    }

    /// `waiting` chunks now wait on `av`'s deferred stack: past `DEFER_LIMIT` free them here
    /// if the lock is free (a busy arena is drained by its next holder soon), and past
    /// `DEFER_HARD_LIMIT` wait for the lock.
    fn after_defer(&'static self, av: &'static Arena, waiting: usize) {
        if waiting >= DEFER_LIMIT {
            if let Some(g) = av.try_lock() {
                self.drain_deferred(&g);
            } else if waiting >= DEFER_HARD_LIMIT {
                drop(self.lock_and_drain(av));
            }
        }
    }

    /// A chunk carrying the tcache key but not in this thread's cache: most likely one
    /// deferred to its arena and now freed again (else another thread's cached chunk, or user
    /// data that happens to equal the key). Free what waits for the arena first and then
    /// this chunk, in the arena: a double free is caught there as glibc catches it.
    ///
    /// # Safety
    /// As for [`Malloc::int_free_body`], `p` not mmapped.
    #[cold]
    #[inline(never)]
    unsafe fn free_marked(&'static self, av: &'static Arena, held: Option<&ArenaGuard>, p: Chunk) {
        // SAFETY: a chunk of the arena, held either way.
        unsafe {
            match held {
                Some(g) => {
                    self.drain_deferred(g);
                    self.int_free_chunk_held(g, p);
                }
                None => self.int_free_chunk_held(&self.lock_arena(av), p),
            }
        }
    }

    /// Free the chunks other threads deferred to the arena `av` holds.
    #[inline(always)]
    pub(crate) fn drain_deferred(&'static self, av: &ArenaGuard) {
        // Nearly always empty: one load inline, the loop out of line.
        if av.arena().has_deferred() {
            self.drain_deferred_slow(av);
        }
    }

    #[cold]
    #[inline(never)]
    fn drain_deferred_slow(&'static self, av: &ArenaGuard) {
        // A malloc of the arena's own thread keeps the small chunks in its cache, as if it
        // had freed them itself: they are blocks it handed out (a producer's, back from its
        // consumers), and its next mallocs of their sizes take them there rather than from
        // the fastbins — or from bins, after a larger request consolidated the fastbins
        // (xmalloc-test's producers, 0.73 → 0.65 of glibc's time). A bin its mallocs found
        // empty grows for them as for its own frees. Any other holder — another thread, or
        // a free completing a double free — frees them into the arena.
        let slot = self.slot();
        let to_cache = slot.drain_to_cache() && slot.arena().is_some_and(|a| core::ptr::eq(a, av.arena()));
        let tc = slot.tcache();
        let key = self.key();
        let mut next = av.take_deferred();
        while let Some(c) = next {
            // SAFETY: the stack holds chunks of this arena pushed by `Arena::defer`, now ours:
            // the arena is held and the stack taken. Each is an in-use chunk (never mmapped)
            // that `free` vetted before deferring it, and in no cache.
            unsafe {
                next = c.fd_revealed();
                if to_cache {
                    let s = slot_of(c.size());
                    if tc.has_room(s) || tc.try_grow(s) {
                        // Still counted in use, as deferred and cached chunks both are.
                        tc.put(c, s, key);
                        continue;
                    }
                }
                // The key goes: once freed here the chunk may be handed out from a bin.
                c.set_bk_word(0);
                self.int_free_chunk_held(av, c);
            }
        }
    }

    /// Take `av` to free `p` without waiting: the guard when `p` can be freed now (after
    /// what was deferred), `None` when `p` was deferred for the lock's next holder instead.
    ///
    /// A chunk of an arena other than the thread's own is deferred even when the lock is
    /// free: one atomic push, where freeing it here would take the lock and pull the owner's
    /// bins into this thread's cache (the owner drains the stack under the lock it takes
    /// anyway). Large chunks, whose free may consolidate and trim, are freed in place. Once
    /// `DEFER_LIMIT` chunks wait, the freeing thread frees them all itself if the lock is
    /// free (and waits for it past `DEFER_HARD_LIMIT`), so memory does not pile up behind an
    /// owner that seldom allocates.
    ///
    /// # Safety
    /// `p` is an in-use chunk of `av` being freed by the caller.
    #[inline(never)]
    unsafe fn take_or_defer(&'static self, av: &'static Arena, p: Chunk) -> Option<ArenaGuard> {
        const DEFER_MAX_SIZE: usize = 16 * 1024;
        let own = self.slot().arena().is_some_and(|a| core::ptr::eq(a, av));
        // SAFETY: the caller's chunk.
        if own || unsafe { p.size() } > DEFER_MAX_SIZE {
            if let Some(g) = av.try_lock() {
                self.drain_deferred(&g);
                return Some(g);
            }
        }
        if p.addr() >= DEFER_ADDR_LIMIT {
            return Some(self.lock_and_drain(av));
        }
        // SAFETY: the caller's chunk of `av`, below the limit.
        let waiting = unsafe { av.defer(p, self.key()) };
        self.after_defer(av, waiting);
        None
    }

    /// Free a non-mmapped chunk into arena `av` itself, not into a thread cache, without
    /// holding it: a busy arena gets the chunk deferred instead (frees never wait for
    /// another thread's lock).
    ///
    /// # Safety
    /// `p` is an in-use, non-mmapped chunk of `av` that the caller is freeing.
    #[inline(always)]
    unsafe fn int_free_chunk_inline(&'static self, av: &'static Arena, p: Chunk) {
        let g = if single_threaded() {
            // SAFETY: no other thread exists; nothing is ever deferred before the second
            // thread starts.
            unsafe { av.assume_held() }
        } else {
            // SAFETY: forwarded.
            match unsafe { self.take_or_defer(av, p) } {
                Some(g) => g,
                None => return,
            }
        };
        // SAFETY: forwarded, with the arena now held.
        unsafe { self.int_free_chunk_held(&g, p) }
    }

    /// Free a non-mmapped chunk into the arena `av` holds (fastbin, or coalesced into the
    /// unsorted bin or top).
    ///
    /// # Safety
    /// `p` is an in-use, non-mmapped chunk of `av`'s arena that the caller is freeing.
    #[inline(never)]
    unsafe fn int_free_chunk_held(&'static self, av: &ArenaGuard, p: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.int_free_chunk_held_inline(av, p) }
    }

    /// [`Malloc::int_free_chunk_held`], inlined (into `free`'s path only).
    ///
    /// # Safety
    /// As for [`Malloc::int_free_chunk_held`].
    #[inline(always)]
    unsafe fn int_free_chunk_held_inline(&'static self, av: &ArenaGuard, p: Chunk) {
        // SAFETY: the caller's chunk of the held arena.
        let size = unsafe { p.size() };
        if size > self.mp.max_fast() {
            // SAFETY: forwarded.
            return unsafe { self.free_and_coalesce(av, p, size) };
        }
        // SAFETY: `p` and (its size says) the chunk after it are in the held arena.
        unsafe {
            let next = p.plus(size);
            if next.head() <= CHUNK_HDR_SZ || next.size() >= av.system_mem.get() {
                malloc_printerr("free(): invalid next size (fast)");
            }
        }
        // SAFETY: the user area of the caller's chunk.
        unsafe { self.free_perturb(p.mem(), size - CHUNK_HDR_SZ) };
        self.returned(av, size);
        av.have_fastchunks.set(true);
        let idx = fastbin_index(size);
        let old = av.fastbin(idx);
        // Freeing the chunk at the head of its bin again is a cheap double free to see.
        if old == Some(p) {
            malloc_printerr("double free or corruption (fasttop)");
        }
        // SAFETY: the caller's chunk; `old` is the head of the held arena's fastbin.
        unsafe {
            p.set_fd_protected(old);
            av.set_fastbin(idx, Some(p));
            if old.is_some_and(|old| fastbin_index(old.size()) != idx) {
                malloc_printerr("invalid fastbin entry (free)");
            }
            if CHUNK_CHECKS {
                // Fastbin chunks keep looking in use, so that nothing coalesces with them.
                self.check_inuse_chunk(av, p);
            }
        }
    }

    /// Coalesce `p` with free neighbours and file it in the unsorted bin or the top chunk;
    /// then, after a large free, consolidate and trim.
    ///
    /// # Safety
    /// `p` is an in-use, non-mmapped chunk of `size` bytes of `av`'s arena, being freed.
    #[inline(always)]
    unsafe fn free_and_coalesce(&'static self, av: &ArenaGuard, p: Chunk, size: usize) {
        // SAFETY: `p`, its neighbours (reached through boundary tags the checks vet) and the
        // bin headers are all in the held arena.
        let size = unsafe {
            let next = p.plus(size);
            let top = av.top();
            if p == top {
                malloc_printerr("double free or corruption (top)");
            }
            if av.contiguous() && next.addr() >= top.addr() + top.size() {
                malloc_printerr("double free or corruption (out)");
            }
            if !next.prev_inuse() {
                malloc_printerr("double free or corruption (!prev)");
            }
            let nextsize = next.size();
            if next.head() <= CHUNK_HDR_SZ || nextsize >= av.system_mem.get() {
                malloc_printerr("free(): invalid next size (normal)");
            }
            self.free_perturb(p.mem(), size - CHUNK_HDR_SZ);
            self.returned(av, size);

            let (p, mut size) = merge_with_prev(p, size, "corrupted size vs. prev_size while consolidating");
            if next != top {
                if !next.inuse_bit_at_offset(nextsize) {
                    unlink_chunk(next);
                    size += nextsize;
                } else {
                    next.clear_inuse_bit_at_offset(0);
                }
                // glibc gives every freed chunk one chance in the unsorted bin before the next
                // malloc sorts it. One of a smallbin's size goes straight into its bin here:
                // the same list work, done once instead of twice (unsorted in, unsorted out,
                // then the bin), and a later malloc of that size finds it by the exact-fit
                // test — with the rest of the bin for its cache — rather than by walking
                // the unsorted chunks.
                let bck = if in_smallbin_range(size) {
                    let idx = smallbin_index(size);
                    av.mark_bin(idx);
                    av.bin_at(idx)
                } else {
                    av.unsorted()
                };
                let fwd = bck.fd();
                if fwd.bk() != bck {
                    malloc_printerr("free(): corrupted unsorted chunks");
                }
                p.set_fd(fwd);
                p.set_bk(bck);
                if !in_smallbin_range(size) {
                    p.set_fd_nextsize(None);
                    p.set_bk_nextsize(None);
                }
                bck.set_fd(p);
                fwd.set_bk(p);
                p.set_head(size | PREV_INUSE);
                p.set_foot(size);
                if CHUNK_CHECKS {
                    self.check_free_chunk(av, p);
                }
            } else {
                size += nextsize;
                p.set_head(size | PREV_INUSE);
                av.merge_into_top(p);
                if CHUNK_CHECKS {
                    self.check_chunk(av, p);
                }
            }
            size
        };

        if size >= FASTBIN_CONSOLIDATION_THRESHOLD {
            if av.have_fastchunks.get() {
                self.malloc_consolidate(av);
            }
            let top_pad = self.mp.top_pad.load(Ordering::Relaxed);
            if !av.is_main() {
                self.heap_trim(av, top_pad);
            } else {
                // SAFETY: the held arena's top chunk.
                let top_size = unsafe { av.top().size() };
                // systrim gives back whole pages of top beyond the pad: without one to give,
                // the call (and its look at the break) is skipped.
                if top_size >= self.mp.trim_threshold.load(Ordering::Relaxed)
                    && top_size.saturating_sub(MINSIZE + 1) >= top_pad.saturating_add(self.pagesize())
                {
                    self.systrim(top_pad, av);
                }
            }
        }
    }
}
