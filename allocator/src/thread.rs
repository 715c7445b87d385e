//! Per-thread state: the thread's cache and arena, and what happens when the thread exits.
//!
//! The slot is a `thread_local!` with a `const` initialiser and no destructor (declared by
//! each [`Kernel`] type), so reaching it never allocates and costs one TLS address
//! computation. Clean-up at thread exit goes through a `pthread_key_create` destructor
//! instead of a Rust TLS destructor, which would register itself by calling `calloc`.

use core::cell::Cell;

use crate::arena::Arena;
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::tcache::Tcache;

// The two states that want `tcache_init` come first, so that one comparison finds them.
const NEW: u8 = 0;
/// Counted and registered for exit, but its cache could not be allocated: try again later.
const NO_CACHE_YET: u8 = 1;
const ACTIVE: u8 = 2;
const EXITED: u8 = 3;

/// A thread's allocator state. Create it only as the `const` initialiser of a
/// `thread_local!` in [`Kernel::thread_slot`]. (`repr(C)`: `LinuxKernel` lays it out in
/// assembly, see `linux.rs`.)
#[repr(C)]
pub struct ThreadSlot {
    /// Never null: the disabled cache until the thread has its own, and again after exit.
    tcache: Cell<*const Tcache>,
    arena: Cell<*const Arena>,
    state: Cell<u8>,
    /// A malloc of the thread is draining its own arena's deferred stack: small chunks go
    /// into the thread's cache rather than the arena's bins (see `drain_deferred_slow`).
    drain_to_cache: Cell<bool>,
}

impl ThreadSlot {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> ThreadSlot {
        ThreadSlot {
            tcache: Cell::new(&crate::tcache::DISABLED_TCACHE.0 as *const Tcache),
            arena: Cell::new(core::ptr::null()),
            state: Cell::new(NEW),
            drain_to_cache: Cell::new(false),
        }
    }

    #[inline(always)]
    pub(crate) fn tcache_ptr(&self) -> *const Tcache {
        self.tcache.get()
    }

    #[inline(always)]
    pub(crate) fn tcache(&self) -> &Tcache {
        // SAFETY: the pointer is the disabled cache (a static) or this thread's own cache,
        // which stays allocated until thread exit swaps it out.
        unsafe { &*self.tcache.get() }
    }

    /// # Safety
    /// `tc` is this thread's own cache, initialised, allocated from ptalloc and alive until
    /// the thread exits (or the disabled cache).
    pub(crate) unsafe fn set_tcache(&self, tc: *const Tcache) {
        self.tcache.set(tc);
    }

    pub(crate) fn arena(&self) -> Option<&'static Arena> {
        let a = self.arena.get();
        // SAFETY: arenas are never freed.
        (!a.is_null()).then(|| unsafe { &*a })
    }

    pub(crate) fn set_arena(&self, a: Option<&'static Arena>) {
        self.arena.set(a.map_or(core::ptr::null(), |a| a as *const Arena));
    }

    /// The thread has not yet been given a cache (nor exited).
    #[inline(always)]
    pub(crate) fn is_new(&self) -> bool {
        self.state.get() <= NO_CACHE_YET
    }

    /// First time through `tcache_init` (the thread is counted and its exit hook set once).
    pub(crate) fn is_first_seen(&self) -> bool {
        self.state.get() == NEW
    }

    /// The thread has run its exit hook; it may still allocate from later TLS destructors.
    pub(crate) fn is_exited(&self) -> bool {
        self.state.get() == EXITED
    }

    pub(crate) fn set_active(&self) {
        self.state.set(ACTIVE)
    }

    pub(crate) fn drain_to_cache(&self) -> bool {
        self.drain_to_cache.get()
    }

    pub(crate) fn set_drain_to_cache(&self, on: bool) {
        self.drain_to_cache.set(on)
    }

    pub(crate) fn set_no_cache_yet(&self) {
        self.state.set(NO_CACHE_YET)
    }
}

/// The `pthread_key_create` destructor: return the thread's cached chunks and the cache
/// itself to their arenas, and detach from the arena so another thread can have it.
///
/// # Safety
/// `instance` is the `&'static Malloc<K>` that set the key (see `tcache_init`), and the
/// calling thread is exiting.
pub(crate) unsafe extern "C" fn thread_exit<K: Kernel>(instance: *mut libc::c_void) {
    // SAFETY: the caller's promise.
    let m: &'static Malloc<K> = unsafe { &*(instance as *const Malloc<K>) };
    let slot = m.slot();
    // Grown bins first, in runs an arena at a time, rather than chunk by chunk below.
    m.tcache_shrink();
    let tc = slot.tcache.replace(Tcache::disabled());
    slot.state.set(EXITED);
    if !core::ptr::eq(tc, Tcache::disabled()) {
        // SAFETY: the thread's own cache, now unreachable from the slot.
        let tcache = unsafe { &*tc };
        // SAFETY: cached chunks, and the cache itself, are blocks of ours nobody else uses.
        tcache.drain(|mem| unsafe { m.free_to_arena(mem) });
        // SAFETY: as above.
        unsafe { m.free_to_arena(tc as *mut u8) };
    }
    m.arena_thread_detach(slot);
}

impl<K: Kernel> Malloc<K> {
    /// Free a block straight into its arena, bypassing the (gone) thread cache.
    ///
    /// # Safety
    /// `mem` is a live block of ours, the caller's to release.
    pub(crate) unsafe fn free_to_arena(&'static self, mem: *mut u8) {
        // SAFETY: the caller's block.
        unsafe {
            let p = crate::chunk::Chunk::from_mem(mem);
            if p.is_mmapped() {
                self.munmap_chunk(p);
            } else {
                let av = self.arena_for_chunk(p);
                self.int_free(av, p);
            }
        }
    }
}
