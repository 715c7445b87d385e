//! The C functions while a trace may be recorded: each calls the allocator and writes its
//! record (`recorder.rs`), or only calls the allocator when the first call decides there is
//! no recording. Kept out of line, so that the functions of `lib.rs` stay as short as they
//! are without recording: one load and one branch more, and a tail call here.

use core::ffi::{c_int, c_void};

use ptalloc::linux;

use crate::recorder::{active, now, record};
use crate::trace::Kind;

#[cold]
#[inline(never)]
pub fn malloc(size: usize) -> *mut c_void {
    if !active() {
        return linux().malloc(size).cast();
    }
    let r = linux().malloc(size);
    record(Kind::Malloc, now(), [size as u64, r as u64]);
    r.cast()
}

/// Written before the call, timed at its start: the trace shows a free that aborts.
///
/// # Safety
/// As for C's `free`.
#[cold]
#[inline(never)]
pub unsafe fn free(p: *mut c_void) {
    if !active() {
        // SAFETY: the caller's promise.
        return unsafe { linux().free(p.cast()) };
    }
    record(Kind::Free, now(), [p as u64]);
    // SAFETY: the caller's promise.
    unsafe { linux().free(p.cast()) }
}

#[cold]
#[inline(never)]
pub fn calloc(n: usize, size: usize) -> *mut c_void {
    if !active() {
        return linux().calloc(n, size).cast();
    }
    let r = linux().calloc(n, size);
    record(Kind::Calloc, now(), [n as u64, size as u64, r as u64]);
    r.cast()
}

/// Timed at both ends: it frees at its start and returns a block at its end.
///
/// # Safety
/// As for C's `realloc`.
#[cold]
#[inline(never)]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if !active() {
        // SAFETY: the caller's promise.
        return unsafe { linux().realloc(p.cast(), size).cast() };
    }
    let start = now();
    // SAFETY: the caller's promise.
    let r = unsafe { linux().realloc(p.cast(), size) };
    record(Kind::Realloc, now(), [p as u64, size as u64, r as u64, start]);
    r.cast()
}

/// # Safety
/// As for C's `reallocarray`.
#[cold]
#[inline(never)]
pub unsafe fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    if !active() {
        // SAFETY: the caller's promise.
        return unsafe { linux().reallocarray(p.cast(), n, size).cast() };
    }
    let start = now();
    // SAFETY: the caller's promise.
    let r = unsafe { linux().reallocarray(p.cast(), n, size) };
    record(Kind::Reallocarray, now(), [p as u64, n as u64, size as u64, r as u64, start]);
    r.cast()
}

#[cold]
#[inline(never)]
pub fn memalign(alignment: usize, size: usize) -> *mut c_void {
    if !active() {
        return linux().memalign(alignment, size).cast();
    }
    let r = linux().memalign(alignment, size);
    record(Kind::Memalign, now(), [alignment as u64, size as u64, r as u64]);
    r.cast()
}

#[cold]
#[inline(never)]
pub fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    if !active() {
        return linux().aligned_alloc(alignment, size).cast();
    }
    let r = linux().aligned_alloc(alignment, size);
    record(Kind::AlignedAlloc, now(), [alignment as u64, size as u64, r as u64]);
    r.cast()
}

/// # Safety
/// `memptr` points to writable storage for a pointer (as POSIX requires).
#[cold]
#[inline(never)]
pub unsafe fn posix_memalign(memptr: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    let mut out = core::ptr::null_mut();
    let r = linux().posix_memalign(&mut out, alignment, size);
    if active() {
        record(Kind::PosixMemalign, now(), [alignment as u64, size as u64, out as u64, r as u64]);
    }
    if r == 0 {
        // SAFETY: the caller's promise.
        unsafe { *memptr = out.cast() };
    }
    r
}

#[cold]
#[inline(never)]
pub fn valloc(size: usize) -> *mut c_void {
    if !active() {
        return linux().valloc(size).cast();
    }
    let r = linux().valloc(size);
    record(Kind::Valloc, now(), [size as u64, r as u64]);
    r.cast()
}

#[cold]
#[inline(never)]
pub fn pvalloc(size: usize) -> *mut c_void {
    if !active() {
        return linux().pvalloc(size).cast();
    }
    let r = linux().pvalloc(size);
    record(Kind::Pvalloc, now(), [size as u64, r as u64]);
    r.cast()
}

#[cold]
#[inline(never)]
pub fn malloc_trim(pad: usize) -> c_int {
    if !active() {
        return linux().malloc_trim(pad);
    }
    let r = linux().malloc_trim(pad);
    record(Kind::MallocTrim, now(), [pad as u64, r as u64]);
    r
}
