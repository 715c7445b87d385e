//! The platform layer: every host call the allocator makes that is not a memory call.
//!
//! Memory comes from the [`Kernel`](crate::Kernel) seam (`linux.rs` on the real kernel,
//! kernel-sim's `SimKernel` on the simulated one). Everything else ptalloc needs from the
//! host — errno, random bytes, the environment, standard error, futexes, the CPU count,
//! glibc's single-threaded flag, the thread-exit and fork hooks — is here, as mimalloc keeps
//! its primitives in `prim.h` / `src/prim/unix/prim.c`. No other module calls `libc`.
//!
//! None of these functions allocates, and none changes `errno` unless it says so: they run
//! inside `malloc` and `free`, and the dynamic loader may call those before libc has set up
//! its own state.

use core::sync::atomic::AtomicU32;

use crate::kernel::Errno;

// ----------------------------------------------------------------- errno

/// The calling thread's `errno`.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's `errno`.
#[inline]
pub fn set_errno(value: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Run a host call that may set `errno`, then give `errno` back its old value; returns the
/// call's result and the `errno` it left. Code running underneath an allocator reports
/// errors as values, and `free` must not change `errno`.
#[inline]
pub fn keeping_errno<T>(call: impl FnOnce() -> T) -> (T, Errno) {
    let saved = errno();
    let r = call();
    let e = Errno(errno());
    set_errno(saved);
    (r, e)
}

// ----------------------------------------------------------------- process facts

/// Random bytes for the tcache key, from `getrandom` without blocking; `None` if the kernel
/// has no entropy yet (early boot) or refuses.
pub(crate) fn random_word() -> Option<usize> {
    let mut word: usize = 0;
    let size = core::mem::size_of::<usize>();
    // SAFETY: getrandom writes at most `size` bytes into `word`.
    let (n, _) = keeping_errno(|| unsafe {
        libc::syscall(libc::SYS_getrandom, &mut word as *mut usize, size, libc::GRND_NONBLOCK)
    });
    (n == size as libc::c_long).then_some(word)
}

/// A monotonic clock reading in nanoseconds: the fallback seed when there is no entropy, and
/// the simulated kernel's clock.
pub fn clock_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// Whether the process runs in secure-execution mode (setuid and the like), where glibc
/// ignores the malloc settings of the environment.
pub(crate) fn secure_mode() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Whether the environment block exists yet. The dynamic loader can call malloc before libc
/// has set up `environ`; settings are then read on a later call.
pub(crate) fn environment_ready() -> bool {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: reading the address stored in libc's `environ` variable.
    unsafe { !core::ptr::addr_of!(environ).read_volatile().is_null() }
}

/// The value of environment variable `name`, without allocating: `getenv` returns a pointer
/// into the environment block.
///
/// # Safety
/// Nothing changes the environment (`setenv`, `putenv`, writes to `environ`) while the
/// result is used — glibc's own rule for `getenv`.
pub(crate) unsafe fn getenv<'a>(name: &[u8]) -> Option<&'a [u8]> {
    let mut buf = [0u8; 40];
    if name.len() >= buf.len() || name.contains(&0) {
        return None;
    }
    buf[..name.len()].copy_from_slice(name);
    // SAFETY: buf is NUL-terminated.
    let value = unsafe { libc::getenv(buf.as_ptr().cast()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string from the environment (see above for its lifetime).
    Some(unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes())
}

/// Number of CPUs this process may run on (at least 1; 2 if the kernel will not say).
pub(crate) fn online_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    2
}

/// Whether the process has only ever had one thread (glibc's `__libc_single_threaded`,
/// cleared by `pthread_create` before the second thread starts). Arena locks are skipped
/// while it holds, as glibc does.
#[inline(always)]
pub(crate) fn single_threaded() -> bool {
    extern "C" {
        static __libc_single_threaded: libc::c_char;
    }
    // SAFETY: a byte of libc that pthread_create writes before any second thread runs.
    unsafe { core::ptr::addr_of!(__libc_single_threaded).read_volatile() != 0 }
}

/// An identifier of the calling thread (`pthread_self`), never 0.
pub(crate) fn thread_id() -> usize {
    // SAFETY: pthread_self only reads the thread pointer.
    unsafe { libc::pthread_self() as usize }
}

// ----------------------------------------------------------------- output

/// Write all of `bytes` to file descriptor `fd`, as far as the descriptor takes them.
pub(crate) fn write_fd(fd: i32, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writing initialised bytes of the caller's buffer.
        let (n, _) =
            keeping_errno(|| unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) });
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
}

/// End the process with `SIGABRT`, as glibc does after reporting heap corruption.
pub(crate) fn abort() -> ! {
    // SAFETY: abort() has no preconditions and does not return.
    unsafe { libc::abort() }
}

// ----------------------------------------------------------------- futex

/// Sleep while `word` holds `expected` (or until woken). Leaves errno alone: the kernel's
/// EAGAIN (the word changed before we slept) and EINTR are both "look again".
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the word atomically and sleeps only while it equals
    // `expected`; the word outlives the call.
    keeping_errno(|| unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        )
    });
}

/// Wake one thread sleeping on `word`. Leaves errno alone.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only wakes waiters on the word's address.
    keeping_errno(|| unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1)
    });
}

// ----------------------------------------------------------------- thread exit and fork

/// A thread-specific key whose destructor runs at thread exit (`pthread_key_create`): the
/// allocator's thread-exit hook. A Rust TLS destructor would register itself by calling
/// `calloc`; `pthread_key_create` does not allocate.
pub(crate) fn thread_key_create(destructor: unsafe extern "C" fn(*mut libc::c_void)) -> Option<u32> {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is ours to fill; the destructor is an extern "C" function that lives for
    // the whole process.
    let (r, _) = keeping_errno(|| unsafe { libc::pthread_key_create(&mut key, Some(destructor)) });
    (r == 0).then_some(key)
}

/// Give the calling thread's `key` the value `value`, which its destructor gets at exit.
///
/// # Safety
/// `value` is what the key's destructor expects as its argument.
pub(crate) unsafe fn thread_key_set(key: u32, value: *const libc::c_void) {
    // SAFETY: `key` came from thread_key_create; the value is passed back untouched.
    keeping_errno(|| unsafe { libc::pthread_setspecific(key, value) });
}

/// Register fork handlers (`pthread_atfork`); glibc copies the pointers.
pub(crate) fn atfork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: plain extern "C" functions that live for the whole process.
    keeping_errno(|| unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) });
}

extern "C" {
    fn _IO_list_lock();
    fn _IO_list_unlock();
}

/// Take glibc's (recursive) lock of the list of stdio streams, which its `fork` takes after
/// the prepare handlers: see `fork.rs` for why ptalloc takes it first.
pub(crate) fn stdio_list_lock() {
    // SAFETY: glibc's own lock; balanced by stdio_list_unlock, reset by glibc in a child.
    unsafe { _IO_list_lock() }
}

/// # Safety
/// The calling thread holds the lock through `stdio_list_lock`.
pub(crate) unsafe fn stdio_list_unlock() {
    // SAFETY: balances a stdio_list_lock of this thread.
    unsafe { _IO_list_unlock() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_errno_restores_and_reports() {
        set_errno(1234);
        // SAFETY: closing a descriptor that is not open fails with EBADF and changes nothing.
        let (r, e) = keeping_errno(|| unsafe { libc::close(-1) });
        assert_eq!((r, e), (-1, Errno::EBADF));
        assert_eq!(errno(), 1234);
    }

    #[test]
    fn getenv_reads_without_allocating() {
        // SAFETY: the test process does not change its environment.
        unsafe {
            assert_eq!(getenv(b"PTALLOC_SURELY_UNSET_VARIABLE"), None);
            assert!(getenv(b"PATH").is_some_and(|v| !v.is_empty()));
            assert_eq!(getenv(b"PA\0TH"), None);
        }
        assert!(online_cpus() >= 1);
        assert_ne!(thread_id(), 0);
    }
}
