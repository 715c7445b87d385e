//! `libptalloc.so`: ptalloc behind the C allocation functions, for `LD_PRELOAD`.
//!
//! Every function of glibc's malloc family is exported, with glibc's semantics (they are
//! those of `ptalloc::Malloc`): `malloc free calloc realloc reallocarray memalign
//! posix_memalign aligned_alloc valloc pvalloc malloc_usable_size cfree free_sized
//! free_aligned_sized mallopt mallinfo mallinfo2 malloc_trim malloc_stats malloc_info`, and
//! the `__libc_*` names glibc also exports. glibc calls these through the PLT from inside
//! libc too (its manual's "Replacing malloc"), so the whole process uses ptalloc. C++'s
//! replaceable `operator new` and `operator delete` forms are here too (`operator_new.rs`),
//! so a C++ program's `new` reaches ptalloc without libstdc++'s wrappers in between.
//!
//! Rules this file keeps: nothing here allocates except through ptalloc itself; the
//! allocator initialises itself on the first call (the dynamic loader frees memory before
//! any constructor runs); no panic can unwind out of an `extern "C"` function (Rust aborts
//! the process when one tries), and the allocator has no panicking paths by design.
//!
//! `PTALLOC_STATS=1` prints a summary on standard error when the process exits;
//! `PTALLOC_STATS=/some/file` appends it to that file instead. `PTALLOC_RECORD=/some/file`
//! records every call in a trace (`recorder.rs`; `ptalloc record` sets it): when it is off,
//! each function pays one load and one branch for it; the recording versions of the
//! functions (`recorded.rs`, reached by a tail call) stay out of the fast paths' code.

// Built with `panic = "abort"` (the release profile) the library links no std: without
// std's unwinder, panic hook and backtrace printer it needs no libgcc_s, and its text is a
// fraction of the size — the pages a small program maps for it are part of its RSS. A build
// that unwinds (the unit-test harness) keeps std.
#![cfg_attr(panic = "abort", no_std)]

use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write;
use core::sync::atomic::{AtomicI32, Ordering};

use ptalloc::{linux, FdWriter, MallInfo, MallInfo2};

mod operator_new;
mod recorded;
mod recorder;
// Shared by the library (which writes traces) and the command (which reads them): each
// uses its half.
#[allow(dead_code)]
mod trace;

// Rust code in this library allocates from ptalloc too, where std is linked (the unit-test
// harness); the library itself allocates nothing.
// Without std nothing else asks the linker for libc, which every function here calls.
#[cfg(panic = "abort")]
#[link(name = "c")]
extern "C" {}

#[cfg(not(panic = "abort"))]
#[global_allocator]
static GLOBAL: ptalloc::PtAlloc = ptalloc::PtAlloc;

/// No path of the allocator panics by design; should one, the process ends as after any
/// other fatal error of ours: a line on stderr and `abort` (which the program can see as
/// SIGABRT), formatted on the stack.
#[cfg(panic = "abort")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut out = FdWriter::new(2);
    let _ = match info.location() {
        Some(at) => {
            writeln!(out, "ptalloc: internal error at {}:{}: {}", at.file(), at.line(), info.message())
        }
        None => writeln!(out, "ptalloc: internal error: {}", info.message()),
    };
    out.flush();
    // SAFETY: abort has no preconditions and does not return.
    unsafe { libc::abort() }
}

// ------------------------------------------------------------------ the C functions

#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    if !recorder::off() {
        return recorded::malloc(size);
    }
    linux().malloc(size).cast()
}

/// # Safety
/// `p` is null or a block of this allocator not freed since (as C requires).
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if !recorder::off() {
        // SAFETY: the C contract of free.
        return unsafe { recorded::free(p) };
    }
    // SAFETY: the C contract of free.
    unsafe { linux().free(p.cast()) }
}

#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    if !recorder::off() {
        return recorded::calloc(n, size);
    }
    linux().calloc(n, size).cast()
}

/// # Safety
/// `p` is null or a live block of this allocator (as C requires).
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if !recorder::off() {
        // SAFETY: the C contract of realloc.
        return unsafe { recorded::realloc(p, size) };
    }
    // SAFETY: the C contract of realloc.
    unsafe { linux().realloc(p.cast(), size).cast() }
}

/// # Safety
/// `p` is null or a live block of this allocator (as C requires).
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    if !recorder::off() {
        // SAFETY: the C contract of reallocarray.
        return unsafe { recorded::reallocarray(p, n, size) };
    }
    // SAFETY: the C contract of reallocarray.
    unsafe { linux().reallocarray(p.cast(), n, size).cast() }
}

#[no_mangle]
pub extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    if !recorder::off() {
        return recorded::memalign(alignment, size);
    }
    linux().memalign(alignment, size).cast()
}

#[no_mangle]
pub extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    if !recorder::off() {
        return recorded::aligned_alloc(alignment, size);
    }
    linux().aligned_alloc(alignment, size).cast()
}

/// # Safety
/// `memptr` points to writable storage for a pointer (as POSIX requires).
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    if !recorder::off() {
        // SAFETY: the C contract of posix_memalign.
        return unsafe { recorded::posix_memalign(memptr, alignment, size) };
    }
    let mut out = core::ptr::null_mut();
    let r = linux().posix_memalign(&mut out, alignment, size);
    if r == 0 {
        // SAFETY: the caller passes a valid pointer to store the result in.
        unsafe { *memptr = out.cast() };
    }
    r
}

#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    if !recorder::off() {
        return recorded::valloc(size);
    }
    linux().valloc(size).cast()
}

#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    if !recorder::off() {
        return recorded::pvalloc(size);
    }
    linux().pvalloc(size).cast()
}

/// # Safety
/// `p` is null or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the C contract: null or a live block.
    unsafe { linux().usable_size(p.cast()) }
}

/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: as free.
    unsafe { free(p) }
}

/// C23's sized free: glibc ignores the size, and so does ptalloc (the chunk knows it).
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: as free.
    unsafe { free(p) }
}

/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _alignment: usize, _size: usize) {
    // SAFETY: as free.
    unsafe { free(p) }
}

#[no_mangle]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    linux().mallopt(param, value)
}

#[no_mangle]
pub extern "C" fn mallinfo() -> MallInfo {
    linux().mallinfo()
}

#[no_mangle]
pub extern "C" fn mallinfo2() -> MallInfo2 {
    linux().mallinfo2()
}

#[no_mangle]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
    if !recorder::off() {
        return recorded::malloc_trim(pad);
    }
    linux().malloc_trim(pad)
}

extern "C" {
    static mut stderr: *mut libc::FILE;
    fn flockfile(f: *mut libc::FILE);
    fn funlockfile(f: *mut libc::FILE);
}

/// `fmt::Write` into a C stream.
struct FileWriter(*mut libc::FILE);

impl Write for FileWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // SAFETY: writing initialised bytes to a stream the caller gave us.
        let n = unsafe { libc::fwrite(s.as_ptr().cast(), 1, s.len(), self.0) };
        if n == s.len() {
            Ok(())
        } else {
            Err(core::fmt::Error)
        }
    }
}

#[no_mangle]
pub extern "C" fn malloc_stats() {
    // SAFETY: libc's stderr stream, locked for the whole report as glibc does.
    unsafe {
        let err = stderr;
        flockfile(err);
        linux().write_malloc_stats(&mut FileWriter(err));
        funlockfile(err);
    }
}

/// # Safety
/// `fp` is an open `FILE` stream.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    match linux().malloc_info(options, &mut FileWriter(fp)) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

// glibc's internal names, which some programs and libraries call directly.

#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}

/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: as free.
    unsafe { free(p) }
}

#[no_mangle]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    calloc(n, size)
}

/// # Safety
/// As for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: as realloc.
    unsafe { realloc(p, size) }
}

#[no_mangle]
pub extern "C" fn __libc_memalign(alignment: usize, size: usize) -> *mut c_void {
    memalign(alignment, size)
}

#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    valloc(size)
}

#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    pvalloc(size)
}

#[no_mangle]
pub extern "C" fn __libc_mallinfo() -> MallInfo {
    mallinfo()
}

#[no_mangle]
pub extern "C" fn __libc_mallopt(param: c_int, value: c_int) -> c_int {
    mallopt(param, value)
}

/// # Safety
/// As for `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(memptr: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    // SAFETY: as posix_memalign.
    unsafe { posix_memalign(memptr, alignment, size) }
}

// ------------------------------------------------------------------ PTALLOC_STATS

/// Where the exit report goes: a private copy of stderr, because many programs close
/// stderr in their own exit handlers (which run before ours, registered first); or the file
/// `PTALLOC_STATS` names, when it is a path.
static REPORT_FD: AtomicI32 = AtomicI32::new(2);

/// Runs when the library is loaded (after libc is ready, before `main`): registering the
/// exit report may allocate, so it cannot wait for the first malloc.
#[ctor::ctor(unsafe)]
fn on_load() {
    // Most libraries register their fork handlers from constructors that run after ours:
    // registering first puts their handlers' allocations outside the window in which ours
    // hold the arena locks.
    linux().initialize();
    recorder::start();
    // SAFETY: getenv with a NUL-terminated name returns NULL or a NUL-terminated string;
    // open/fcntl make a close-on-exec descriptor (duplicates at a high number, out of the
    // program's way); atexit takes a plain extern "C" function.
    unsafe {
        let v = libc::getenv(c"PTALLOC_STATS".as_ptr());
        if v.is_null() || *v == 0 || (*v == b'0' as c_char && *v.add(1) == 0) {
            return;
        }
        let fd = if *v == b'/' as c_char {
            let f = libc::open(v, libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC, 0o644);
            let high = if f >= 0 { libc::fcntl(f, libc::F_DUPFD_CLOEXEC, 100) } else { -1 };
            if high >= 0 {
                libc::close(f);
                high
            } else {
                f
            }
        } else {
            libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 100)
        };
        if fd >= 0 {
            REPORT_FD.store(fd, Ordering::Relaxed);
        }
        libc::atexit(report_at_exit);
    }
}

/// The calling thread's errno.
fn errno() -> c_int {
    ptalloc::errno()
}

/// Bytes as MiB with one decimal, rounded to nearest; integer arithmetic, which keeps
/// float formatting (a tenth of the library's text) out of the library.
struct Mib(u64);

impl core::fmt::Display for Mib {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let tenths = (self.0 as u128 * 10 + (1 << 19)) >> 20;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

fn mib(bytes: u64) -> Mib {
    Mib(bytes)
}

extern "C" fn report_at_exit() {
    let s = linux().stats();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // One write of under 512 bytes: reports of concurrent processes appending to one file
    // do not interleave.
    let mut out = FdWriter::new(REPORT_FD.load(Ordering::Relaxed));
    let _ = write!(
        out,
        "ptalloc[{pid}]: in use {} MiB at exit, {} MiB at peak\n\
         ptalloc[{pid}]: brk {} calls (+{} MiB, -{} MiB), mmap {} calls ({} MiB), \
         munmap {} calls ({} MiB), mremap {} calls (+{} MiB, -{} MiB)\n\
         ptalloc[{pid}]: {} arenas, {} threads seen\n",
        mib(s.in_use as u64),
        mib(s.peak_in_use as u64),
        s.brk_calls,
        mib(s.brk_grown),
        mib(s.brk_shrunk),
        s.mmap_calls,
        mib(s.mmap_bytes),
        s.munmap_calls,
        mib(s.munmap_bytes),
        s.mremap_calls,
        mib(s.mremap_grown),
        mib(s.mremap_shrunk),
        s.arenas,
        s.threads_seen,
    );
    out.flush();
}
