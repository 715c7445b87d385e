//! The lock that guards one simulated machine: the `mmap_lock` analogue.
//!
//! Linux protects an address space with `mmap_lock` and physical memory with per-zone and
//! per-cache locks. A simulated machine runs one process, so a single lock serialises its
//! whole state; system calls and the page-fault handler both take it. It is a futex mutex
//! (no allocation on first contention, usable from a signal handler), and it remembers its
//! holder so that a fault taken *while holding it* — which would otherwise deadlock — is
//! reported as the bug it is.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;
const SPIN_LIMIT: u32 = 100;

pub struct MmapLock {
    state: AtomicU32,
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
        MmapLock { state: AtomicU32::new(UNLOCKED), owner: AtomicUsize::new(0) }
    }

    #[inline]
    pub fn lock(&self) {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        self.owner.store(thread_token(), Ordering::Relaxed);
    }

    #[inline]
    pub fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake(&self.state);
        }
    }

    /// Whether the calling thread holds the lock.
    pub fn held_by_me(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED && self.owner.load(Ordering::Relaxed) == thread_token()
    }

    /// Forget the holder: in a forked child the holder thread does not exist.
    pub fn reset(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.state.store(UNLOCKED, Ordering::Release);
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
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            futex_wait(&self.state, CONTENDED);
        }
    }
}

impl Default for MmapLock {
    fn default() -> Self {
        Self::new()
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT sleeps only while the word still equals `expected`; the word
    // outlives the call. The futex system call is async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only wakes waiters on this address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
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
        l.unlock();
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
                        l.unlock();
                    }
                })
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
    }
}
