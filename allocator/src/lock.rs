//! An allocation-free mutex on a Linux futex.
//!
//! Arena locks sit on the malloc path, so they may not allocate on first contention (as
//! parking_lot's parking table does) nor call back into malloc. Three states: 0 unlocked,
//! 1 locked, 2 locked with waiters (so `unlock` knows whether to wake anyone).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::prim::{futex_wait, futex_wake};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Spins before sleeping: arena critical sections are short.
const SPIN_LIMIT: u32 = 100;

/// A mutex that never allocates and never calls back into malloc: safe inside an allocator
/// and, not being recursive, inside a signal handler that does not interrupt its own holder.
/// It leaves `errno` as it found it.
pub struct Lock {
    state: AtomicU32,
}

impl Default for Lock {
    fn default() -> Lock {
        Lock::new()
    }
}

impl Lock {
    pub const fn new() -> Lock {
        Lock { state: AtomicU32::new(UNLOCKED) }
    }

    #[inline]
    pub fn lock(&self) {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
    }

    #[inline]
    pub fn try_lock(&self) -> bool {
        self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Release the lock (the caller holds it).
    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake(&self.state);
        }
    }

    /// Forget any holder: used in a forked child, where the threads that held locks in the
    /// parent do not exist.
    pub fn reset(&self) {
        self.state.store(UNLOCKED, Ordering::Relaxed);
    }

    /// Whether some thread holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        for _ in 0..SPIN_LIMIT {
            if self.state.load(Ordering::Relaxed) == UNLOCKED
                && self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
            core::hint::spin_loop();
        }
        // Mark the lock contended; whoever unlocks will wake one sleeper.
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            futex_wait(&self.state, CONTENDED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lock_excludes_and_try_lock_reports() {
        let l = Lock::new();
        l.lock();
        assert!(l.is_locked());
        assert!(!l.try_lock());
        l.unlock();
        assert!(l.try_lock());
        l.unlock();
        assert!(!l.is_locked());
    }

    #[test]
    fn contended_counter_is_exact() {
        struct Shared {
            lock: Lock,
            counter: core::cell::UnsafeCell<u64>,
        }
        // SAFETY: `counter` is only touched with `lock` held.
        unsafe impl Sync for Shared {}
        let shared = Arc::new(Shared { lock: Lock::new(), counter: core::cell::UnsafeCell::new(0) });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        s.lock.lock();
                        // SAFETY: the lock is held.
                        unsafe { *s.counter.get() += 1 };
                        s.lock.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads have finished.
        assert_eq!(unsafe { *shared.counter.get() }, 200_000);
    }
}
