//! `Malloc<K>`: one allocator instance on kernel `K`, and its public entry points with C's
//! semantics (glibc's `__libc_malloc` layer): `malloc`, `free`, `calloc`, `realloc`, the
//! `memalign` family, `malloc_usable_size`, `mallopt`, `malloc_trim`.
//!
//! The fast paths are the thread-cache hits at the top of [`Malloc::malloc`] and
//! [`Malloc::free`]: no lock, no atomic, about a dozen instructions each. Everything else
//! goes through `#[cold]` slow paths.
//!
//! ARCHITECTURE.md, "The life of a `malloc`" and "The life of a `free`", follows these entry
//! points down through the arena and the kernel.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use crate::arena::{Arena, ArenaGuard, ArenaList, ArenaState, FreeList};
use crate::chunk::{
    aligned_ok, checked_request2size, request2size, Chunk, CHUNK_HDR_SZ, MALLOC_ALIGNMENT, MINSIZE, SIZE_SZ,
};
use crate::kernel::Kernel;
use crate::lock::Mutex;
use crate::params::{tunables_from_process_env, Params};
use crate::prim::{environment_ready, set_errno, single_threaded};
use crate::printerr::malloc_printerr;
use crate::stats::SysStats;
use crate::tcache::{
    request_slot, slot_for_request, slot_of, Tcache, FAST_FREE_MASK, FAST_MAX_REQUEST, MAX_TCACHE_SIZE,
    MID_MAX_REQUEST,
};
use crate::thread::ThreadSlot;

/// Granularity of the instance-wide in-use total.
const IN_USE_BATCH: usize = 64 * 1024;

const UNINIT: u8 = 0;
const INITIALISING: u8 = 1;
const READY: u8 = 2;
/// Working, but the environment could not be read yet (see `load_environment`).
const READY_ENV_PENDING: u8 = 3;

/// One allocator: a kernel, the main arena, the parameters, the list of arenas.
///
/// Instances live in `static`s (the entry points take `&'static self`): `ptalloc` keeps one
/// on the Linux kernel (see [`crate::PtAlloc`]), kernel-sim one on the simulated kernel.
pub struct Malloc<K: Kernel> {
    pub(crate) kernel: K,
    pub(crate) main_arena: Arena,
    pub(crate) mp: Params,
    state: AtomicU8,
    /// The environment was not readable at initialisation; read it on a later slow path.
    env_pending: AtomicBool,
    /// Serialises additions to the arena list (and is held across fork).
    pub(crate) list_lock: Mutex<ArenaList>,
    /// The arenas no thread uses, and every arena's count of attached threads.
    pub(crate) free_list: Mutex<FreeList>,
    pub(crate) narenas: AtomicUsize,
    pub(crate) narenas_limit: AtomicUsize,
    pub(crate) next_to_use: AtomicPtr<Arena>,
    /// The second, already aligned half of the last double-size heap reservation.
    pub(crate) aligned_heap_area: AtomicUsize,
    /// Marks chunks sitting in a thread cache (random per process).
    pub(crate) tcache_key: AtomicUsize,
    pagesize: AtomicUsize,
    /// Where the main arena's first brk region starts.
    pub(crate) sbrk_base: AtomicUsize,
    thread_key: AtomicU32,
    thread_key_ok: AtomicBool,
    pub(crate) stats: SysStats,
    /// Told of every memory call to the kernel (`set_syscall_observer`); null for none.
    pub(crate) syscall_observer: AtomicPtr<()>,
    /// Bytes held by the program or thread caches, all arenas and mmapped chunks together,
    /// updated in batches (see `taken`); and the highest value it reached.
    in_use_total: AtomicIsize,
    peak_in_use: AtomicIsize,
}

// SAFETY: the main arena synchronises through its own lock (see `Arena`), the free list
// through its mutex; everything else is atomic.
unsafe impl<K: Kernel> Sync for Malloc<K> {}

impl<K: Kernel> Malloc<K> {
    /// An allocator on `kernel`, initialised lazily on its first call.
    ///
    /// # Safety
    /// At most one instance per kernel type `K` may ever be used: instances of the same type
    /// share the per-thread slot `K::thread_slot()`.
    pub const unsafe fn new(kernel: K) -> Malloc<K> {
        Malloc {
            kernel,
            main_arena: Arena::new(true),
            mp: Params::new(),
            state: AtomicU8::new(UNINIT),
            env_pending: AtomicBool::new(false),
            list_lock: Mutex::new(ArenaList),
            free_list: Mutex::new(FreeList::new()),
            narenas: AtomicUsize::new(1),
            narenas_limit: AtomicUsize::new(0),
            next_to_use: AtomicPtr::new(core::ptr::null_mut()),
            aligned_heap_area: AtomicUsize::new(0),
            tcache_key: AtomicUsize::new(0),
            pagesize: AtomicUsize::new(4096),
            sbrk_base: AtomicUsize::new(0),
            thread_key: AtomicU32::new(0),
            thread_key_ok: AtomicBool::new(false),
            stats: SysStats::new(),
            syscall_observer: AtomicPtr::new(core::ptr::null_mut()),
            in_use_total: AtomicIsize::new(0),
            peak_in_use: AtomicIsize::new(0),
        }
    }

    /// The kernel this allocator runs on.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    #[inline(always)]
    pub(crate) fn pagesize(&self) -> usize {
        self.pagesize.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(crate) fn slot(&self) -> &ThreadSlot {
        // SAFETY: the slot is the calling thread's and lives as long as the thread.
        unsafe { &*K::thread_slot() }
    }

    /// The calling thread's cache (the disabled one if it has none).
    #[inline(always)]
    pub(crate) fn thread_tcache(&self) -> &Tcache {
        // SAFETY: the slot holds the disabled cache (a static) or this thread's own cache,
        // which stays allocated until thread exit swaps it out.
        unsafe { &*K::thread_tcache() }
    }

    #[inline(always)]
    pub(crate) fn key(&self) -> usize {
        self.tcache_key.load(Ordering::Relaxed)
    }

    // ----------------------------------------------------------------- initialisation

    #[inline(always)]
    pub(crate) fn ensure_ready(&'static self) {
        // One test on the hot path; both rare cases are sorted out in `init`.
        if self.state.load(Ordering::Acquire) != READY {
            self.init();
        }
    }

    /// Initialise now rather than at the first call: read the environment, and register the
    /// fork handlers before the program registers its own (`libptalloc.so` does this from
    /// its constructor).
    pub fn initialize(&'static self) {
        self.ensure_ready();
    }

    /// Whether the allocator has been initialised (by any call).
    pub fn is_initialized(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), READY | READY_ENV_PENDING)
    }

    #[cold]
    #[inline(never)]
    fn init(&'static self) {
        loop {
            match self.state.compare_exchange(UNINIT, INITIALISING, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break,
                Err(READY) => return,
                Err(READY_ENV_PENDING) => return self.load_environment(),
                // Another thread is initialising: nothing in `init` calls malloc, so it
                // finishes without us.
                Err(_) => core::hint::spin_loop(),
            }
        }
        self.pagesize.store(self.kernel.page_size(), Ordering::Relaxed);
        // SAFETY: no other thread uses the allocator until `state` says it is ready.
        unsafe { self.main_arena.init() };
        self.main_arena.next.store(&self.main_arena as *const Arena as *mut Arena, Ordering::Release);
        self.tcache_key.store(random_key(), Ordering::Relaxed);
        if environment_ready() {
            self.mp.apply(&tunables_from_process_env());
        } else {
            self.env_pending.store(true, Ordering::Relaxed);
        }
        if let Some(key) = crate::prim::thread_key_create(crate::thread::thread_exit::<K>) {
            self.thread_key.store(key, Ordering::Relaxed);
            self.thread_key_ok.store(true, Ordering::Relaxed);
        }
        self.attach_main_arena(self.slot());
        let ready = if self.env_pending.load(Ordering::Relaxed) { READY_ENV_PENDING } else { READY };
        self.state.store(ready, Ordering::Release);
        // Registration may allocate, so it comes after the allocator works.
        crate::fork::register(self);
    }

    #[cold]
    fn load_environment(&'static self) {
        if !environment_ready() || !self.env_pending.swap(false, Ordering::Relaxed) {
            return;
        }
        self.state.store(READY, Ordering::Release);
        {
            let av = self.lock_and_drain(&self.main_arena);
            self.malloc_consolidate(&av);
            self.mp.apply(&tunables_from_process_env());
        }
        // Caches made before the settings were known follow them from now on, from their
        // base room (a bin grown beyond it gives the excess back first).
        self.tcache_shrink();
        let tc = self.thread_tcache();
        if !core::ptr::eq(tc, Tcache::disabled()) {
            tc.set_limits(
                self.mp.tcache_bins.load(Ordering::Relaxed),
                self.mp.tcache_count.load(Ordering::Relaxed),
                !self.mp.tcache_count_set.load(Ordering::Relaxed),
            );
        }
    }

    /// Give the calling thread its cache, allocated from its arena (glibc's `tcache_init`),
    /// and register the thread-exit hook that returns it.
    #[cold]
    #[inline(never)]
    pub(crate) fn tcache_init(&'static self, slot: &ThreadSlot) {
        if !slot.is_new() {
            return;
        }
        let first = slot.is_first_seen();
        // Active before allocating: the allocation below must not come back here.
        slot.set_active();
        if first {
            self.stats.threads_seen.fetch_add(1, Ordering::Relaxed);
            if self.thread_key_ok.load(Ordering::Relaxed) {
                // SAFETY: the key's destructor is thread_exit::<K>, which takes this 'static
                // instance.
                unsafe {
                    crate::prim::thread_key_set(
                        self.thread_key.load(Ordering::Relaxed),
                        self as *const Self as *const libc::c_void,
                    )
                };
            }
        }
        let bins = self.mp.tcache_bins.load(Ordering::Relaxed);
        let count = self.mp.tcache_count.load(Ordering::Relaxed);
        if bins > 0 && count > 0 {
            let bytes = core::mem::size_of::<Tcache>();
            let victim = self.alloc_in_arena(slot, bytes, |av| self.int_malloc(av, bytes));
            if victim.is_null() {
                // Out of memory for now: like glibc, try again at a later slow path.
                slot.set_no_cache_yet();
                return;
            }
            let tc = victim as *mut Tcache;
            let by_bytes = !self.mp.tcache_count_set.load(Ordering::Relaxed);
            // SAFETY: a fresh chunk of at least size_of::<Tcache>() bytes, 16-aligned.
            unsafe { tc.write(Tcache::with_limits(bins, count, by_bytes)) };
            // SAFETY: the thread's own cache, just initialised, freed only at thread exit.
            unsafe { slot.set_tcache(tc) };
        }
    }

    /// Run `f` on the calling thread's arena — the main arena without a lock while the
    /// process is single-threaded, else the thread's arena locked — retrying once in another
    /// arena if it fails (glibc's `arena_get` / `arena_get_retry` pattern).
    #[inline]
    pub(crate) fn alloc_in_arena(
        &'static self,
        slot: &ThreadSlot,
        size: usize,
        f: impl Fn(&ArenaGuard) -> *mut u8,
    ) -> *mut u8 {
        let single = single_threaded();
        let mut av = if single {
            // SAFETY: without a second thread nobody else can touch the main arena (and
            // nothing is ever deferred to it before the second thread starts).
            unsafe { self.main_arena.assume_held() }
        } else {
            self.arena_get(slot, size)
        };
        let mut may_retry = !single;
        // One call site for `f`, so that it is inlined.
        loop {
            let p = f(&av);
            if !p.is_null() || !may_retry {
                return p;
            }
            may_retry = false;
            av = self.arena_get_retry(slot, av, size);
        }
    }

    /// The thread's heap grew while its cache bins had grown (see `Tcache::note_heap_growth`):
    /// give their excess back, now that no arena is held.
    #[inline(always)]
    pub(crate) fn shrink_if_due(&'static self) {
        if self.thread_tcache().shrink_due() {
            self.tcache_shrink();
        }
    }

    // ----------------------------------------------------------------- accounting

    /// `bytes` of chunks left arena `av`'s free structures for the program or a thread
    /// cache (`av` held). The arena's count is exact; the instance-wide total (for the peak)
    /// is updated in steps of `IN_USE_BATCH` so arenas do not fight over one cache line.
    #[inline]
    pub(crate) fn taken(&self, av: &ArenaState, bytes: usize) {
        av.in_use.set(av.in_use.get() + bytes);
        self.note_in_use(av, bytes as isize);
    }

    /// `bytes` of chunks came back to arena `av`'s free structures.
    #[inline]
    pub(crate) fn returned(&self, av: &ArenaState, bytes: usize) {
        av.in_use.set(av.in_use.get().wrapping_sub(bytes));
        self.note_in_use(av, -(bytes as isize));
    }

    #[inline]
    fn note_in_use(&self, av: &ArenaState, delta: isize) {
        let pending = av.unflushed.get() + delta;
        if pending.unsigned_abs() < IN_USE_BATCH {
            av.unflushed.set(pending);
        } else {
            av.unflushed.set(0);
            self.mmap_taken(pending);
        }
    }

    /// Change of in-use bytes outside any arena (mmapped chunks), or a flushed batch.
    pub(crate) fn mmap_taken(&self, delta: isize) {
        if single_threaded() {
            // No other thread to race with: plain loads and stores, not locked instructions.
            let total = self.in_use_total.load(Ordering::Relaxed) + delta;
            self.in_use_total.store(total, Ordering::Relaxed);
            if total > self.peak_in_use.load(Ordering::Relaxed) {
                self.peak_in_use.store(total, Ordering::Relaxed);
            }
            return;
        }
        let total = self.in_use_total.fetch_add(delta, Ordering::Relaxed) + delta;
        if delta > 0 {
            self.peak_in_use.fetch_max(total, Ordering::Relaxed);
        }
    }

    /// The highest in-use total seen (within `IN_USE_BATCH` bytes per arena).
    pub(crate) fn peak_in_use(&self) -> usize {
        self.peak_in_use.load(Ordering::Relaxed).max(0) as usize
    }

    // ----------------------------------------------------------------- malloc

    /// `malloc(3)`: at least `bytes` bytes, 16-byte aligned, or null with `errno = ENOMEM`.
    /// `malloc(0)` returns a unique pointer.
    #[inline(always)]
    pub fn malloc(&'static self, bytes: usize) -> *mut u8 {
        // Thread-cache hit, about 18 instructions: a range test, the slot, a TLS load, a
        // safe-linked list pop with its alignment check, the room count, the key cleared.
        if bytes <= FAST_MAX_REQUEST {
            let tc = self.thread_tcache();
            let slot = request_slot(bytes);
            // SAFETY: requests up to FAST_MAX_REQUEST have slots below TCACHE_SLOTS.
            if !unsafe { tc.first_unchecked(slot) }.is_null() {
                // SAFETY: the bin's first entry is not null (just tested).
                return unsafe { tc.get(slot) };
            }
        }
        self.malloc_slow(bytes)
    }

    #[cold]
    #[inline(never)]
    fn malloc_slow(&'static self, bytes: usize) -> *mut u8 {
        self.ensure_ready();
        if checked_request2size(bytes).is_none() {
            set_errno(libc::ENOMEM);
            return core::ptr::null_mut();
        }
        let slot = self.slot();
        if slot.is_new() {
            self.tcache_init(slot);
        }
        // The fast path has tried the bins (a new thread's are empty); the ring of larger
        // chunks is tried here.
        let cache_slot = slot_for_request(bytes);
        if cache_slot.is_none() && bytes <= MID_MAX_REQUEST {
            let mem = slot.tcache().take_mid(request2size(bytes));
            if !mem.is_null() {
                return mem;
            }
        }
        // No refilling of the cache beyond what int_malloc stashes from exact-size bins (as
        // glibc): carving extra chunks for the cache while the lock is held saved locks but
        // scattered each thread's blocks (CPython's test_pickle peaked 7% higher).
        if let Some(s) = cache_slot {
            slot.tcache().note_miss(s);
        }
        // Taking the arena drains what other threads deferred to it; the thread's own
        // arena's small chunks go into its cache then, and this request may find one there.
        slot.set_drain_to_cache(true);
        let p = self.alloc_in_arena(slot, bytes, |av| match cache_slot {
            // SAFETY: the bin's first entry is not null (just tested).
            Some(s) if !slot.tcache().first(s).is_null() => unsafe { slot.tcache().get(s) },
            _ => self.int_malloc_inline(av, bytes, true),
        });
        slot.set_drain_to_cache(false);
        self.shrink_if_due();
        if p.is_null() {
            set_errno(libc::ENOMEM);
        }
        p
    }

    // ----------------------------------------------------------------- free

    /// `free(3)`. Preserves `errno`. Aborts with glibc's message on a pointer the heap
    /// metadata shows was not allocated (or was already freed).
    ///
    /// # Safety
    /// `mem` is null or a pointer returned by this instance and not freed since (violations
    /// are detected where the metadata allows, but not always).
    #[inline(always)]
    pub unsafe fn free(&'static self, mem: *mut u8) {
        if mem.is_null() {
            return;
        }
        // SAFETY: forwarded; `mem` is not null.
        unsafe { self.free_nonnull(mem) }
    }

    /// `free` of a pointer known not to be null (Rust's `dealloc`).
    ///
    /// # Safety
    /// As for [`Malloc::free`], and `mem` is not null.
    #[inline(always)]
    pub unsafe fn free_nonnull(&'static self, mem: *mut u8) {
        // Thread-cache put, about 20 instructions: an aligned pointer whose header passes one
        // mask test (small, not mmapped, a multiple of 16), a bin with room, and a chunk not
        // already cached. Whichever arena the chunk is from, as in glibc: see `int_free_body`.
        // SAFETY: the caller promises a pointer of ours, not freed: its chunk header is
        // before it (the slow path re-checks it before trusting more than the header).
        let p = unsafe { Chunk::from_mem(mem) };
        if aligned_ok(mem as usize) {
            let tc = self.thread_tcache();
            // The flag bits are below the size, so they leave the slot alone.
            // SAFETY: the header of a block of ours, in use by the caller.
            let head = unsafe { p.head() };
            if head & FAST_FREE_MASK == 0 {
                let slot = slot_of(head);
                let key = self.key();
                // SAFETY: the mask leaves head < 2048, so slot < ROOM_SLOTS; the chunk is at
                // least MINSIZE, so its user area holds the key word.
                if unsafe { tc.has_room_unchecked(slot) && Tcache::entry_key(mem) != key } {
                    // SAFETY: a small in-use chunk, not cached.
                    unsafe { tc.put(p, slot, key) };
                    return;
                }
            }
        }
        // SAFETY: as above.
        unsafe { self.free_slow(p) }
    }

    /// errno needs no saving here: kernel calls report errors as values and leave it alone.
    ///
    /// # Safety
    /// `p` is the chunk of a pointer `free` may be given (see [`Malloc::free`]).
    #[cold]
    #[inline(never)]
    unsafe fn free_slow(&'static self, p: Chunk) {
        self.ensure_ready();
        // SAFETY: the chunk of a live block of ours (the caller's promise).
        unsafe {
            if p.is_mmapped() {
                self.free_mmapped(p);
            } else {
                let slot = self.slot();
                if slot.is_new() {
                    self.tcache_init(slot);
                }
                let av = self.arena_for_chunk(p);
                self.int_free_inline(av, p);
            }
        }
    }

    // ----------------------------------------------------------------- calloc

    /// `calloc(3)`: zeroed memory for `n` elements of `size` bytes; overflow fails with
    /// `ENOMEM`. Memory fresh from the kernel is not cleared again.
    pub fn calloc(&'static self, n: usize, size: usize) -> *mut u8 {
        let bytes = match n.checked_mul(size) {
            Some(b) if b <= isize::MAX as usize => b,
            _ => {
                set_errno(libc::ENOMEM);
                return core::ptr::null_mut();
            }
        };
        self.ensure_ready();
        let slot = self.slot();
        if slot.is_new() {
            self.tcache_init(slot);
        }
        if bytes > MAX_TCACHE_SIZE && bytes <= MID_MAX_REQUEST {
            let mem = slot.tcache().take_mid(request2size(bytes));
            if !mem.is_null() {
                // SAFETY: a chunk from the thread's ring, now the caller's; it was used
                // before, so all of its usable size is cleared, as glibc's calloc does.
                unsafe { core::ptr::write_bytes(mem, 0, Chunk::from_mem(mem).size() - SIZE_SZ) };
                return mem;
            }
        }
        // (clean_bound, chunk): the address from which the returned chunk is known zero.
        let clean = Cell::new(usize::MAX);
        let mem = self.alloc_in_arena(slot, bytes, |av| {
            let old_top = av.top();
            let mem = self.int_malloc(av, bytes);
            if !mem.is_null() {
                // SAFETY: a block just allocated.
                let p = unsafe { Chunk::from_mem(mem) };
                clean.set(if p == old_top { av.clean_from.get() } else { usize::MAX });
            }
            mem
        });
        self.shrink_if_due();
        if mem.is_null() {
            set_errno(libc::ENOMEM);
            return mem;
        }
        // SAFETY: the chunk just allocated, ours until we return it.
        let (mmapped, size) = unsafe {
            let p = Chunk::from_mem(mem);
            (p.is_mmapped(), p.size())
        };
        let perturbed = self.mp.perturb().is_some();
        let len = if mmapped {
            if perturbed {
                bytes
            } else {
                0
            }
        } else {
            let usable = size - SIZE_SZ;
            if perturbed {
                usable
            } else {
                usable.min(clean.get().saturating_sub(mem as usize))
            }
        };
        // SAFETY: `len` bytes of the new block's user area.
        unsafe { core::ptr::write_bytes(mem, 0, len) };
        mem
    }

    // ----------------------------------------------------------------- realloc

    /// `realloc(3)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns
    /// null; on failure the old block is left intact and null is returned with `ENOMEM`.
    ///
    /// # Safety
    /// As for [`Malloc::free`].
    pub unsafe fn realloc(&'static self, old: *mut u8, bytes: usize) -> *mut u8 {
        if bytes == 0 && !old.is_null() {
            // SAFETY: forwarded from the caller.
            unsafe { self.free(old) };
            return core::ptr::null_mut();
        }
        if old.is_null() {
            return self.malloc(bytes);
        }
        self.ensure_ready();
        // SAFETY: a pointer the caller got from us: its header is before it.
        let oldp = unsafe { Chunk::from_mem(old) };
        // Aligned before the header is read (a misaligned word read would itself be wrong).
        if !aligned_ok(oldp.addr()) {
            malloc_printerr("realloc(): invalid pointer");
        }
        // SAFETY: as above; aligned.
        let (oldsize, mmapped) = unsafe { (oldp.size(), oldp.is_mmapped()) };
        if oldp.addr() > oldsize.wrapping_neg() {
            malloc_printerr("realloc(): invalid pointer");
        }
        let Some(nb) = checked_request2size(bytes) else {
            set_errno(libc::ENOMEM);
            return core::ptr::null_mut();
        };
        if mmapped {
            // SAFETY: an in-use mmapped chunk of the caller's.
            return unsafe { self.realloc_mmapped(oldp, bytes, nb) };
        }
        let slot = self.slot();
        if slot.is_new() {
            self.tcache_init(slot);
        }
        // SAFETY: a non-mmapped chunk of ours.
        let av = unsafe { self.arena_for_chunk(oldp) };
        let (mut newp, locked) = {
            let g = self.lock_arena(av);
            // SAFETY: an in-use chunk of the arena held.
            (unsafe { self.int_realloc(&g, oldp, oldsize, nb) }, g.locked())
        };
        self.shrink_if_due();
        if newp.is_null() && locked {
            // Try harder: another arena may have room.
            newp = self.malloc(bytes);
            if !newp.is_null() {
                // SAFETY: distinct blocks; the old one, still ours, holds `usable()` bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(old, newp, oldp.usable());
                    self.int_free(av, oldp);
                }
            }
        }
        if newp.is_null() {
            set_errno(libc::ENOMEM);
        }
        newp
    }

    /// `reallocarray(3)`: `realloc` of `n * size` bytes, failing with `ENOMEM` on overflow.
    ///
    /// # Safety
    /// As for [`Malloc::free`].
    pub unsafe fn reallocarray(&'static self, old: *mut u8, n: usize, size: usize) -> *mut u8 {
        match n.checked_mul(size) {
            // SAFETY: forwarded from the caller.
            Some(bytes) => unsafe { self.realloc(old, bytes) },
            None => {
                set_errno(libc::ENOMEM);
                core::ptr::null_mut()
            }
        }
    }

    // ----------------------------------------------------------------- memalign family

    /// `memalign(3)`: `bytes` bytes aligned to `alignment`; an alignment that is not a power
    /// of two is rounded up to one; one above `SIZE_MAX / 2 + 1` fails with `EINVAL`.
    pub fn memalign(&'static self, alignment: usize, bytes: usize) -> *mut u8 {
        if alignment <= MALLOC_ALIGNMENT {
            return self.malloc(bytes);
        }
        let mut alignment = alignment.max(MINSIZE);
        if alignment > usize::MAX / 2 + 1 {
            set_errno(libc::EINVAL);
            return core::ptr::null_mut();
        }
        if !alignment.is_power_of_two() {
            alignment = alignment.next_power_of_two();
        }
        self.ensure_ready();
        let slot = self.slot();
        if slot.is_new() {
            self.tcache_init(slot);
        }
        let hint = bytes.saturating_add(alignment).saturating_add(MINSIZE);
        let p = self.alloc_in_arena(slot, hint, |av| self.int_memalign(av, alignment, bytes));
        self.shrink_if_due();
        if p.is_null() {
            set_errno(libc::ENOMEM);
        }
        p
    }

    /// `aligned_alloc(3)`, which glibc 2.36 serves exactly as `memalign`.
    pub fn aligned_alloc(&'static self, alignment: usize, bytes: usize) -> *mut u8 {
        self.memalign(alignment, bytes)
    }

    /// `posix_memalign(3)`: 0 and `*memptr` set on success; `EINVAL` if `alignment` is not a
    /// power-of-two multiple of `sizeof(void *)`; `ENOMEM` (with `*memptr` untouched).
    pub fn posix_memalign(&'static self, memptr: &mut *mut u8, alignment: usize, bytes: usize) -> i32 {
        let word = core::mem::size_of::<usize>();
        if alignment == 0 || !alignment.is_multiple_of(word) || !(alignment / word).is_power_of_two() {
            return libc::EINVAL;
        }
        let p = self.memalign(alignment, bytes);
        if p.is_null() {
            return libc::ENOMEM;
        }
        *memptr = p;
        0
    }

    /// `valloc(3)`: page-aligned memory.
    pub fn valloc(&'static self, bytes: usize) -> *mut u8 {
        self.ensure_ready();
        self.memalign(self.pagesize(), bytes)
    }

    /// `pvalloc(3)`: page-aligned memory, the size rounded up to whole pages.
    pub fn pvalloc(&'static self, bytes: usize) -> *mut u8 {
        self.ensure_ready();
        let pagesize = self.pagesize();
        match bytes.checked_add(pagesize - 1) {
            Some(b) => self.memalign(pagesize, b & !(pagesize - 1)),
            None => {
                set_errno(libc::ENOMEM);
                core::ptr::null_mut()
            }
        }
    }

    // ----------------------------------------------------------------- introspection

    /// `malloc_usable_size(3)`: bytes the block can really hold (0 for null).
    ///
    /// # Safety
    /// `mem` is null or a live block of this instance.
    pub unsafe fn usable_size(&self, mem: *mut u8) -> usize {
        if mem.is_null() {
            return 0;
        }
        // SAFETY: a live block of ours, so its header and the next chunk's are there.
        unsafe {
            let p = Chunk::from_mem(mem);
            if p.is_mmapped() {
                p.size() - CHUNK_HDR_SZ
            } else if p.inuse() {
                p.size() - SIZE_SZ
            } else {
                0
            }
        }
    }

    /// `mallopt(3)`: set a parameter (`M_MXFAST`, `M_TRIM_THRESHOLD`, `M_TOP_PAD`,
    /// `M_MMAP_THRESHOLD`, `M_MMAP_MAX`, `M_PERTURB`, `M_ARENA_TEST`, `M_ARENA_MAX`); returns
    /// 1 on success and 0 for a value glibc rejects.
    pub fn mallopt(&'static self, param: i32, value: i32) -> i32 {
        self.ensure_ready();
        let av = self.lock_and_drain(&self.main_arena);
        // Fastbins are indexed by the current max_fast: empty them before it changes.
        self.malloc_consolidate(&av);
        self.mp.mallopt(param, value)
    }

    /// `malloc_trim(3)`: return free memory to the kernel — the top of the brk heap beyond
    /// `pad`, and every whole free page inside free chunks (`MADV_DONTNEED`). Returns 1 if
    /// any memory was released.
    pub fn malloc_trim(&'static self, pad: usize) -> i32 {
        self.ensure_ready();
        // The calling thread's larger cached chunks may be what keeps pages from the kernel.
        self.flush_mid();
        self.tcache_shrink();
        let mut result = false;
        self.arenas().for_each(|av| result |= self.mtrim(&self.lock_and_drain(av), pad));
        result as i32
    }
}

/// A process-wide random key for the tcache double-free check.
fn random_key() -> usize {
    match crate::prim::random_word() {
        Some(key) if key != 0 => key,
        // No entropy yet: mix the clock with an address (ASLR makes it vary per process).
        _ => {
            let local = 0u8;
            let seed = crate::prim::clock_ns() as usize ^ (&local as *const u8 as usize);
            seed.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
        }
    }
}
