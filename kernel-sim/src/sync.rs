//! The lock that guards one simulated machine: the `mmap_lock` analogue.
//!
//! Linux protects an address space with `mmap_lock` and physical memory with per-zone and
//! per-cache locks. A simulated machine runs one process, so a single lock serialises its
//! whole state; system calls and the page-fault handler both take it. It is a futex mutex
//! (no allocation on first contention, usable from a signal handler), and it remembers its
//! holder so that a fault taken *while holding it* — which would otherwise deadlock — is
//! reported as the bug it is.

use core::sync::atomic::{AtomicUsize, Ordering};

/// ptalloc's futex lock (allocation-free, errno-preserving) plus the holder's identity.
pub struct MmapLock {
    lock: ptalloc::Lock,
    owner: AtomicUsize,
}

/// A token unique to the calling thread (the address of a thread-local byte).
#[inline]
pub fn thread_token() -> usize {
    std::thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| t as *const u8 as usize)
}

impl MmapLock {
    pub const fn new() -> MmapLock {
        MmapLock { lock: ptalloc::Lock::new(), owner: AtomicUsize::new(0) }
    }

    #[inline]
    pub fn lock(&self) {
        self.lock.lock();
        self.owner.store(thread_token(), Ordering::Relaxed);
    }

    /// # Safety
    /// The calling thread holds the lock, and nothing it guards is reached after this
    /// without taking it again: the machine's state relies on that for its `&mut`.
    #[inline]
    pub unsafe fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the lock (forwarded).
        unsafe { self.lock.unlock() };
    }

    /// Whether the calling thread holds the lock.
    pub fn held_by_me(&self) -> bool {
        self.lock.is_locked() && self.owner.load(Ordering::Relaxed) == thread_token()
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
