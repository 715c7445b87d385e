//! The lock that guards one simulated machine: the `mmap_lock` analogue.
//!
//! Linux protects an address space with `mmap_lock` and physical memory with per-zone and
//! per-cache locks. Here one lock serialises a machine's whole state, for every process on
//! it: system calls and the page-fault handler both take it. It is a futex mutex on a word
//! in the machine's shared mapping, used without `FUTEX_PRIVATE_FLAG`, so the host
//! processes that are the machine's simulated processes exclude each other (no allocation
//! on first contention, usable from a signal handler). It remembers its holder's thread id,
//! unique across processes, so that a fault taken *while holding it* — which would
//! otherwise deadlock — is reported as the bug it is.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A futex mutex that works across processes sharing its memory, and its holder.
pub struct MmapLock {
    state: AtomicU32,
    owner: AtomicUsize,
}

std::thread_local! {
    /// The calling thread's id, once asked for (0 before): a system call per lock would
    /// dominate a simulated system call.
    static TID: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// The calling thread's id, unique among all threads of all processes.
#[inline]
pub fn thread_token() -> usize {
    TID.with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        // SAFETY: gettid has no preconditions.
        let v = unsafe { libc::syscall(libc::SYS_gettid) } as usize;
        t.set(v);
        v
    })
}

/// In a forked child, the forking thread (its only one) has a new id.
pub(crate) extern "C" fn forget_tid() {
    TID.with(|t| t.set(0));
}

/// Make every fork of this process forget the cached id in the child (once, at the first
/// boot; `pthread_atfork` may allocate, which booting may).
pub fn install_atfork() {
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !DONE.swap(true, Ordering::AcqRel) {
        // SAFETY: registers a handler that only resets a thread-local without destructor.
        unsafe { libc::pthread_atfork(None, None, Some(forget_tid)) };
    }
}

fn futex(word: &AtomicU32, op: i32, val: u32) {
    let saved = ptalloc::errno();
    // SAFETY: FUTEX_WAIT reads the word atomically and sleeps only while it equals `val`;
    // FUTEX_WAKE only wakes waiters. The word outlives the call.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, core::ptr::null::<libc::timespec>()) };
    ptalloc::set_errno(saved);
}

impl MmapLock {
    pub const fn new() -> MmapLock {
        MmapLock { state: AtomicU32::new(UNLOCKED), owner: AtomicUsize::new(0) }
    }

    #[inline]
    pub fn lock(&self) {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        self.owner.store(thread_token(), Ordering::Relaxed);
    }

    #[cold]
    fn lock_contended(&self) {
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            futex(&self.state, libc::FUTEX_WAIT, CONTENDED);
        }
    }

    /// # Safety
    /// The calling thread holds the lock (or holds it for a child it forked, which is done
    /// with it), and nothing it guards is reached after this without taking it again: the
    /// machine's state relies on that for its `&mut`.
    #[inline]
    pub unsafe fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex(&self.state, libc::FUTEX_WAKE, 1);
        }
    }

    /// Whether the calling thread holds the lock.
    pub fn held_by_me(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED && self.owner.load(Ordering::Relaxed) == thread_token()
    }
}

impl Default for MmapLock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_and_knows_its_holder() {
        let l = Arc::new(MmapLock::new());
        l.lock();
        assert!(l.held_by_me());
        let l2 = l.clone();
        let other = std::thread::spawn(move || l2.held_by_me()).join().unwrap();
        assert!(!other);
        // SAFETY: this thread took it above.
        unsafe { l.unlock() };
        assert!(!l.held_by_me());
        let counter = Arc::new(AtomicUsize::new(0));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let (l, c) = (l.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        l.lock();
                        let v = c.load(Ordering::Relaxed);
                        c.store(v + 1, Ordering::Relaxed);
                        // SAFETY: this thread took it just above.
                        unsafe { l.unlock() };
                    }
                })
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
    }
}
