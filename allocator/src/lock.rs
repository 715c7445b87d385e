//! Allocation-free locks on a Linux futex: [`Lock`], the raw lock, and [`Mutex`], a lock
//! that owns the data it protects and hands it out through a guard that unlocks on drop.
//!
//! Locks on the malloc path may not allocate on first contention (as parking_lot's parking
//! table does) nor call back into malloc. Three states: 0 unlocked, 1 locked, 2 locked with
//! waiters (so `unlock` knows whether to wake anyone).

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
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

    /// Release the lock.
    ///
    /// # Safety
    /// The caller holds it (took it with `lock` or a successful `try_lock`), and so does
    /// whatever it protects: releasing someone else's lock breaks their exclusion.
    #[inline]
    pub unsafe fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake(&self.state);
        }
    }

    /// Forget any holder: used in a forked child, where the threads that held locks in the
    /// parent do not exist.
    ///
    /// # Safety
    /// No thread of this process holds the lock or uses what it protects.
    pub unsafe fn reset(&self) {
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

/// A [`Lock`] that owns the data it protects: the data is reached only through the
/// [`MutexGuard`] that `lock` returns, and the guard unlocks when dropped.
pub(crate) struct Mutex<T> {
    lock: Lock,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, which exists for one thread at a time.
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    pub(crate) const fn new(data: T) -> Mutex<T> {
        Mutex { lock: Lock::new(), data: UnsafeCell::new(data) }
    }

    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.lock.lock();
        MutexGuard { mutex: self, _not_send: PhantomData }
    }

    /// Keep the lock taken past the guard's life (a fork handler holds it across `fork`).
    pub(crate) fn lock_forever(&self) {
        core::mem::forget(self.lock());
    }

    /// Release a lock taken by [`Mutex::lock_forever`].
    ///
    /// # Safety
    /// The calling thread took the lock with `lock_forever` and has not released it.
    pub(crate) unsafe fn unlock_forever(&self) {
        // SAFETY: the caller took the lock (and forgot its guard).
        unsafe { self.lock.unlock() };
    }

    /// Unlocked, whoever held it: for a forked child, where the threads that held locks in
    /// the parent do not exist.
    ///
    /// # Safety
    /// No guard of this mutex is alive in the calling process (the child of a fork, before
    /// anything else runs).
    pub(crate) unsafe fn reset(&self) {
        // SAFETY: forwarded: no guard is alive.
        unsafe { self.lock.reset() };
    }
}

/// The data of a locked [`Mutex`]; dropping the guard unlocks it. Like std's, it stays on
/// the thread that locked (not `Send`), and is `Sync` only for `Sync` data.
#[must_use = "the mutex is unlocked when the guard is dropped"]
pub(crate) struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard shares `&T` only, which is sound for `T: Sync`.
unsafe impl<T: Sync> Sync for MutexGuard<'_, T> {}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's life, so no other reference exists.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only while its lock is held.
        unsafe { self.mutex.lock.unlock() };
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
        // SAFETY: taken just above.
        unsafe { l.unlock() };
        assert!(l.try_lock());
        // SAFETY: taken by the try_lock.
        unsafe { l.unlock() };
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
                        // SAFETY: the lock is held, then released by its holder.
                        unsafe {
                            *s.counter.get() += 1;
                            s.lock.unlock();
                        }
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

    #[test]
    fn mutex_guard_unlocks_on_drop() {
        let m = Mutex::new(5u32);
        {
            let mut g = m.lock();
            *g += 1;
            assert!(m.lock.is_locked());
        }
        assert!(!m.lock.is_locked());
        assert_eq!(*m.lock(), 6);
        m.lock_forever();
        assert!(m.lock.is_locked());
        // SAFETY: taken by lock_forever just above.
        unsafe { m.unlock_forever() };
        assert!(!m.lock.is_locked());
    }
}
