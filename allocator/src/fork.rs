//! Fork safety: every arena lock is held across `fork()`, then released in the parent and
//! re-initialised in the child (whose other threads are gone, and with them any lock they
//! held).
//!
//! The handlers are registered once with `pthread_atfork` and serve every allocator
//! instance in the process. glibc's own `fork` takes its stdio list lock *after* the atfork
//! prepare handlers but before its (unused) malloc locks; a thread inside `getline` holds a
//! stream lock and may be waiting for an arena, so ptalloc takes the stdio list lock itself
//! first (it is recursive) to keep glibc's lock order. In a single-threaded process nothing is
//! locked, so `fork` from a signal handler cannot deadlock on a lock its own thread holds.
//!
//! Atfork handlers registered before ours run *after* our prepare handler, while the forking
//! thread holds every arena. If they allocate (many do), the forking thread must not wait for
//! itself: it is recorded as the fork owner, and the arena paths skip locking for it — it
//! holds every lock already, and no other thread can be inside the allocator.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::prim::{single_threaded, stdio_list_lock, stdio_list_unlock, thread_id};

const MAX_INSTANCES: usize = 4;

struct Entry {
    instance: AtomicUsize,
    lock: AtomicUsize,
    unlock_parent: AtomicUsize,
    reinit_child: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    instance: AtomicUsize::new(0),
    lock: AtomicUsize::new(0),
    unlock_parent: AtomicUsize::new(0),
    reinit_child: AtomicUsize::new(0),
};

static ENTRIES: [Entry; MAX_INSTANCES] = [EMPTY; MAX_INSTANCES];
static NENTRIES: AtomicUsize = AtomicUsize::new(0);
static HANDLERS_REGISTERED: AtomicBool = AtomicBool::new(false);
/// The prepare handler took the locks (the process had threads).
static LOCKED_FOR_FORK: AtomicBool = AtomicBool::new(false);
/// `pthread_self()` of the thread holding every lock for a fork; 0 when none.
static FORK_OWNER: AtomicUsize = AtomicUsize::new(0);

/// Whether the calling thread is between the prepare and parent/child handlers of a fork and
/// so already holds every arena lock. Only asked after a lock was found taken.
#[cold]
pub(crate) fn forking_thread() -> bool {
    let owner = FORK_OWNER.load(Ordering::Acquire);
    owner != 0 && owner == thread_id()
}

fn register_handlers() {
    if !HANDLERS_REGISTERED.swap(true, Ordering::AcqRel) {
        crate::prim::atfork(prepare, parent, child);
    }
}

/// A fork hook of one instance, called with the instance's address.
type Hook = unsafe fn(usize);

/// Add an instance to those the fork handlers look after. More instances than the table
/// holds would go unlocked across `fork` while their threads believe otherwise: abort.
pub(crate) fn register<K: Kernel>(m: &'static Malloc<K>) {
    let i = NENTRIES.fetch_add(1, Ordering::AcqRel);
    if i >= MAX_INSTANCES {
        crate::printerr::malloc_printerr("ptalloc: too many allocator instances for the fork handlers");
    }
    let e = &ENTRIES[i];
    e.lock.store(lock_all::<K> as Hook as usize, Ordering::Relaxed);
    e.unlock_parent.store(unlock_parent::<K> as Hook as usize, Ordering::Relaxed);
    e.reinit_child.store(reinit_child::<K> as Hook as usize, Ordering::Relaxed);
    e.instance.store(m as *const Malloc<K> as usize, Ordering::Release);
    register_handlers();
}

/// Call one hook of every registered instance.
///
/// # Safety
/// The hook's own condition holds for every instance (see each hook).
unsafe fn for_each_entry(hook: impl Fn(&Entry) -> usize) {
    for e in ENTRIES.iter().take(NENTRIES.load(Ordering::Acquire).min(MAX_INSTANCES)) {
        let instance = e.instance.load(Ordering::Acquire);
        if instance != 0 {
            // SAFETY: the slot holds a `Hook` stored by `register` for this instance's type,
            // whose condition the caller promises.
            unsafe {
                let f: Hook = core::mem::transmute::<usize, Hook>(hook(e));
                f(instance);
            }
        }
    }
}

extern "C" fn prepare() {
    if single_threaded() {
        return;
    }
    // glibc's recursive stdio list lock: released in `parent`, reset by glibc in the child.
    stdio_list_lock();
    // SAFETY: lock_all has no condition beyond a registered instance.
    unsafe { for_each_entry(|e| e.lock.load(Ordering::Relaxed)) };
    LOCKED_FOR_FORK.store(true, Ordering::Relaxed);
    FORK_OWNER.store(thread_id(), Ordering::Release);
}

extern "C" fn parent() {
    if LOCKED_FOR_FORK.swap(false, Ordering::Relaxed) {
        FORK_OWNER.store(0, Ordering::Release);
        // SAFETY: `prepare` took every instance's locks and the stdio list lock in this
        // thread (LOCKED_FOR_FORK said so).
        unsafe {
            for_each_entry(|e| e.unlock_parent.load(Ordering::Relaxed));
            stdio_list_unlock();
        }
    }
}

extern "C" fn child() {
    if LOCKED_FOR_FORK.swap(false, Ordering::Relaxed) {
        FORK_OWNER.store(0, Ordering::Release);
        // SAFETY: the child of a fork whose prepare handler locked everything
        // (LOCKED_FOR_FORK said so); nothing of ours has run in it yet.
        unsafe { for_each_entry(|e| e.reinit_child.load(Ordering::Relaxed)) };
    }
}

/// # Safety
/// `m` is the address of a `&'static Malloc<K>` registered with this `K`.
unsafe fn instance<K: Kernel>(m: usize) -> &'static Malloc<K> {
    // SAFETY: the caller's promise.
    unsafe { &*(m as *const Malloc<K>) }
}

/// Hold the arena list and every arena across `fork`, in the list's order (as glibc does).
///
/// # Safety
/// `m` is a registered instance of this `K`.
unsafe fn lock_all<K: Kernel>(m: usize) {
    // SAFETY: forwarded.
    let m = unsafe { instance::<K>(m) };
    m.list_lock.lock_forever();
    m.arenas().for_each(|a| a.lock_forever());
}

/// # Safety
/// `m` is a registered instance of this `K` whose locks `lock_all` took in this thread.
unsafe fn unlock_parent<K: Kernel>(m: usize) {
    // SAFETY: forwarded: the instance, and the locks lock_all took.
    unsafe {
        let m = instance::<K>(m);
        m.arenas().for_each(|a| a.unlock_forever());
        m.list_lock.unlock_forever();
    }
}

/// In the child only the forking thread exists: it keeps its arena, every other arena is
/// free for the taking, and every lock starts unlocked.
///
/// # Safety
/// `m` is a registered instance of this `K`; the calling process is the child of a fork
/// whose prepare handler ran `lock_all` on it, and nothing else has run in it yet.
unsafe fn reinit_child<K: Kernel>(m: usize) {
    // SAFETY: forwarded.
    unsafe { instance::<K>(m).reinit_arenas_after_fork() };
}
