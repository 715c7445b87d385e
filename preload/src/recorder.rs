//! The recorder behind `ptalloc record`: every malloc-family call of the program and every
//! memory call ptalloc makes to the kernel, written to the trace file `PTALLOC_RECORD`
//! names (layout in `trace.rs`).
//!
//! It allocates nothing: each thread writes its records straight into a block of the file
//! mapped `MAP_SHARED` (64 KiB, claimed with one atomic increment, written with zeros first
//! so a full disk ends the recording instead of raising SIGBUS), so there is no lock and no copy on
//! the way, and what is written is in the page cache at once — a program killed by a
//! signal leaves its trace up to the last record it completed. The cost, in the program's
//! own figures: one `clock_gettime` and a few stores per call, one block mapping (a
//! `pwrite` of 64 KiB of zeros, an `mmap`, an `munmap`, a read of `/proc/self/statm` and 16 page faults) per
//! 64 KiB of trace, and up to 64 KiB of resident file pages per thread.
//!
//! Processes: a forked child's first handler closes the parent's file in the child and
//! starts `FILE.PID`; a program the process executes loads the library again, finds `FILE`
//! taken and also starts `FILE.PID`.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

use ptalloc::{clock_ns, linux, FdWriter, SysCall};

use crate::trace::{
    self, BlockHeader, FileHeader, Kind, BLOCK_HEADER_SIZE, BLOCK_MAGIC, BLOCK_SIZE, FILE_HEADER_SIZE, MAGIC,
    VERSION,
};

const BLOCK_WORDS: usize = BLOCK_SIZE / 8;

/// Whether calls are recorded. Decided at the first call of the program after libc has set
/// up the environment (the constructors of other libraries may run before ours, and
/// allocate), or by the constructor; ended if the file cannot grow.
static STATE: AtomicU8 = AtomicU8::new(UNDECIDED);
const UNDECIDED: u8 = 0;
const OFF: u8 = 1;
const STARTING: u8 = 2;
const ON: u8 = 3;
static FD: AtomicI32 = AtomicI32::new(-1);
/// The next block of the file to hand to a thread.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
/// Threads numbered so far.
static THREADS: AtomicU32 = AtomicU32::new(0);
static START_NS: AtomicU64 = AtomicU64::new(0);
/// Records a thread could not write (made while it was starting a block or forking).
static DROPPED: AtomicU64 = AtomicU64::new(0);
static EXIT_KEY: AtomicU32 = AtomicU32::new(0);

/// Bytes set once before recording starts (at load, single-threaded) and read after.
struct Bytes<const N: usize>(UnsafeCell<[u8; N]>, AtomicU32);

// SAFETY: written only by `start` before `ON` is published (and by a forked child's
// handler, when the child has one thread); read only after.
unsafe impl<const N: usize> Sync for Bytes<N> {}

impl<const N: usize> Bytes<N> {
    const fn new() -> Self {
        Bytes(UnsafeCell::new([0; N]), AtomicU32::new(0))
    }

    fn get(&self) -> &[u8] {
        let len = self.1.load(Ordering::Acquire) as usize;
        // SAFETY: see the Sync impl: no writer runs while readers can.
        unsafe { &(&*self.0.get())[..len] }
    }

    /// # Safety
    /// No other thread reads it (see the Sync impl).
    unsafe fn set(&self, v: &[u8]) {
        let len = v.len().min(N);
        // SAFETY: the caller's promise.
        unsafe { (&mut *self.0.get())[..len].copy_from_slice(&v[..len]) };
        self.1.store(len as u32, Ordering::Release);
    }
}

/// The trace's path (without NUL), and the command line for every file's header.
static PATH: Bytes<4096> = Bytes::new();
static CMDLINE: Bytes<{ BLOCK_SIZE - FILE_HEADER_SIZE }> = Bytes::new();
static SESSION: AtomicU64 = AtomicU64::new(0);
static REALTIME_NS: AtomicU64 = AtomicU64::new(0);

/// A thread's place in the trace. Laid out in assembly (`.tbss`, all zero at thread start).
#[repr(C)]
struct ThreadRec {
    /// The mapped block, or null.
    window: *mut u64,
    /// Words of `window` used.
    used: u32,
    /// The thread's number (0: not yet numbered).
    thread: u32,
    tid: u32,
    /// The number of the thread's next block.
    seq: u32,
    /// Rounds of thread-exit destructors seen; at `EXIT_ROUNDS` the block goes.
    exit_rounds: u16,
    /// Starting a block, or forking: records made now (by a signal handler, a fork
    /// handler) are counted as dropped rather than written over a half-made block.
    busy: u16,
    /// Times `now` may still give without reading the clock (see `now`).
    coarse: u32,
    /// The last time `now` gave this thread.
    last: u64,
}

const _: () = assert!(core::mem::size_of::<ThreadRec>() == 40);

/// While the process has one recording thread, `now` reads the clock once every this many
/// calls.
const COARSE_RUN: u32 = 32;

/// glibc runs key destructors in up to `PTHREAD_DESTRUCTOR_ITERATIONS` rounds while values
/// are set again: the block stays until the last, so that the frees other keys' destructors
/// make are written in it.
const EXIT_ROUNDS: u16 = 4;

#[cfg(target_arch = "x86_64")]
mod tls {
    use super::ThreadRec;

    // Initial-exec TLS, as the allocator's own slot (see ptalloc's linux.rs): one
    // %fs-relative address away.
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl ptalloc_record_thread",
        ".hidden ptalloc_record_thread",
        ".type ptalloc_record_thread, @object",
        ".size ptalloc_record_thread, 40",
        "ptalloc_record_thread:",
        ".zero 40",
        ".popsection",
    );

    #[inline(always)]
    pub(super) fn this_thread() -> *mut ThreadRec {
        let p: *mut ThreadRec;
        // SAFETY: the thread pointer (%fs:0 holds its own address) plus the object's offset
        // from the GOT: this thread's record state.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + ptalloc_record_thread@GOTTPOFF]",
                p = out(reg) p,
                options(pure, readonly, nostack),
            );
        }
        p
    }
}

/// Calls are not being recorded, nor can be any more: a load and a comparison on every
/// call of the library (three instructions with the branch).
#[inline(always)]
pub fn off() -> bool {
    STATE.load(Ordering::Relaxed) == OFF
}

fn set_state(s: u8) {
    STATE.store(s, Ordering::Release);
}

/// Whether calls are being recorded, deciding it first if it is not decided yet.
#[inline(never)]
pub fn active() -> bool {
    if STATE.load(Ordering::Acquire) == UNDECIDED {
        start();
    }
    STATE.load(Ordering::Acquire) == ON
}

/// Nanoseconds since recording began, for the calling thread's next record.
///
/// Times order the records of different threads (see `trace.rs`); a thread's own records
/// are in its order already. So while a single thread records, the clock — 37 ns a read on
/// a VM, half of what a record costs — is read once every `COARSE_RUN` calls, and the
/// calls between get the last reading plus one nanosecond each: still increasing, and never
/// later than the true time (no call takes under a nanosecond). A second thread reads the
/// clock from its first call on (it has no number yet), and numbers itself before its first
/// record — before the free or after the malloc that could hand a block between the two —
/// so the first thread sees the count and reads the clock from then on.
#[inline]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let rec = tls::this_thread();
        // SAFETY: the calling thread's own state.
        unsafe {
            if (*rec).coarse > 0 && (*rec).thread != 0 && THREADS.load(Ordering::Relaxed) == 1 {
                (*rec).coarse -= 1;
                (*rec).last += 1;
                return (*rec).last;
            }
            let t = clock_ns().wrapping_sub(START_NS.load(Ordering::Relaxed)).max((*rec).last + 1);
            (*rec).last = t;
            (*rec).coarse = COARSE_RUN - 1;
            t
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    clock_ns().wrapping_sub(START_NS.load(Ordering::Relaxed))
}

/// Write one record of the calling thread, timed `time` (from [`now`]).
#[inline(never)]
pub fn record<const N: usize>(kind: Kind, time: u64, args: [u64; N]) {
    debug_assert_eq!(N, kind.args());
    #[cfg(target_arch = "x86_64")]
    {
        let rec = tls::this_thread();
        // SAFETY: the calling thread's own state; nothing else touches it (a signal handler
        // that records on this thread sees `busy` or the words already claimed).
        unsafe {
            if (*rec).busy != 0 {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let words = 1 + N;
            if ((*rec).window.is_null() || (*rec).used as usize + words > BLOCK_WORDS) && !start_block(rec) {
                return;
            }
            let p = (*rec).window.add((*rec).used as usize);
            (*rec).used += words as u32;
            for (i, a) in args.iter().enumerate() {
                p.add(1 + i).write_volatile(a.to_le());
            }
            // The first word last: a record cut short reads as the block's end.
            (*(p as *const AtomicU64)).store(trace::head(kind, time).to_le(), Ordering::Release);
            if (*rec).exit_rounds >= EXIT_ROUNDS {
                drop_block(rec);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (kind, time, args);
}

/// Give the thread a fresh block of the file, mapped.
///
/// # Safety
/// `rec` is the calling thread's state.
#[cold]
unsafe fn start_block(rec: *mut ThreadRec) -> bool {
    // SAFETY: the caller's promise; the system calls get valid arguments.
    unsafe {
        (*rec).busy = 1;
        drop_block(rec);
        if (*rec).thread == 0 {
            (*rec).thread = THREADS.fetch_add(1, Ordering::Relaxed) + 1;
            (*rec).tid = libc::gettid() as u32;
            (*rec).seq = 0;
            // The exit destructor runs only for a non-null value (any will do).
            libc::pthread_setspecific(EXIT_KEY.load(Ordering::Relaxed), core::ptr::dangling::<c_void>());
        }
        let fd = FD.load(Ordering::Relaxed);
        let block = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        let offset = (block as usize * BLOCK_SIZE) as libc::off_t;
        if !grow(fd, offset) {
            (*rec).busy = 0;
            return false;
        }
        let p = libc::mmap(
            core::ptr::null_mut(),
            BLOCK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            offset,
        );
        if p == libc::MAP_FAILED {
            stop(b"cannot map the trace file", crate::errno());
            (*rec).busy = 0;
            return false;
        }
        let w = p as *mut u64;
        let h = BlockHeader { magic: BLOCK_MAGIC, thread: (*rec).thread, tid: (*rec).tid, seq: (*rec).seq };
        let hw = h.to_words();
        w.write(hw[0].to_le());
        w.add(1).write(hw[1].to_le());
        (*rec).seq += 1;
        (*rec).window = w;
        (*rec).used = (BLOCK_HEADER_SIZE / 8) as u32;
        let rss = trace::resident_bytes();
        let at = (*rec).used as usize;
        w.add(at + 1).write(rss.to_le());
        (*(w.add(at) as *const AtomicU64)).store(trace::head(Kind::Rss, now()).to_le(), Ordering::Release);
        (*rec).used += 2;
        (*rec).busy = 0;
        true
    }
}

/// Unmap the thread's block (its records stay in the file).
///
/// # Safety
/// `rec` is the calling thread's state.
unsafe fn drop_block(rec: *mut ThreadRec) {
    // SAFETY: the caller's promise; the window is a mapping of ours of BLOCK_SIZE bytes.
    unsafe {
        if !(*rec).window.is_null() {
            libc::munmap((*rec).window.cast(), BLOCK_SIZE);
            (*rec).window = core::ptr::null_mut();
        }
    }
}

/// A block of zeros, written to make each new block of the file.
static ZEROS: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

/// Make the block at `offset` exist, filled with zeros: one `pwrite` of the whole block.
/// Never shrinks the file (concurrent growers are fine), and a full disk fails here, ending
/// the recording with a message, rather than as a SIGBUS when the mapping is written. And
/// the block's pages are then in the page cache: the first store to each through the
/// mapping does not read it from the disk first (with `fallocate` instead, that reading was
/// a tenth of a recorded bash's time).
fn grow(fd: c_int, offset: libc::off_t) -> bool {
    let mut done = 0usize;
    while done < BLOCK_SIZE {
        // SAFETY: a write from our static buffer to our descriptor.
        let n = unsafe {
            libc::pwrite(fd, ZEROS[done..].as_ptr().cast(), BLOCK_SIZE - done, offset + done as libc::off_t)
        };
        if n <= 0 {
            let e = if n < 0 { crate::errno() } else { libc::ENOSPC };
            if e == libc::EINTR {
                continue;
            }
            stop(b"cannot grow the trace file", e);
            return false;
        }
        done += n as usize;
    }
    true
}

/// End the recording after a failure, saying so once.
fn stop(what: &[u8], errno: c_int) {
    if STATE.swap(OFF, Ordering::Relaxed) == ON {
        let mut out = FdWriter::new(2);
        let _ = writeln!(
            out,
            "ptalloc: record: {} ({}), recording stopped: {}",
            core::str::from_utf8(what).unwrap_or("?"),
            errno_name(errno),
            core::str::from_utf8(PATH.get()).unwrap_or("?"),
        );
        out.flush();
    }
}

fn errno_name(e: c_int) -> &'static str {
    match e {
        libc::ENOSPC => "no space left on device",
        libc::EDQUOT => "disk quota exceeded",
        libc::EBADF => "bad file descriptor: the program closed it",
        libc::EACCES => "permission denied",
        libc::ENOENT => "no such file or directory",
        libc::ENOMEM => "out of memory",
        libc::EFBIG => "file too large",
        _ => "system error",
    }
}

extern "C" {
    static environ: *const *const c_char;
}

/// Start recording if `PTALLOC_RECORD` names a file, once: at the first call after libc has
/// set up the environment, or from the library's constructor (whichever comes first; the
/// process has one thread then).
pub fn start() {
    if STATE.compare_exchange(UNDECIDED, STARTING, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return;
    }
    // SAFETY: reading libc's environment pointer: null until libc has set it up.
    if unsafe { environ.is_null() } {
        set_state(UNDECIDED);
        return;
    }
    // Anything that returns before the end leaves recording off.
    set_state(OFF);
    // SAFETY: getenv with NUL-terminated names returns NULL or a NUL-terminated string.
    let (path, session) = unsafe {
        let v = libc::getenv(c"PTALLOC_RECORD".as_ptr());
        if v.is_null() || *v == 0 {
            return;
        }
        let s = libc::getenv(c"PTALLOC_RECORD_SESSION".as_ptr());
        (cstr(v), if s.is_null() { 0 } else { parse_u64(cstr(s)) })
    };
    if path.len() >= 4000 {
        let mut out = FdWriter::new(2);
        let _ = writeln!(out, "ptalloc: record: the trace's path is too long; not recording");
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = session;
        let mut out = FdWriter::new(2);
        let _ = writeln!(out, "ptalloc: record: recording needs x86-64; not recording");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: single-threaded start-up: nothing reads the buffers yet. The calls get valid
    // arguments (a zeroed key out-parameter, handler functions with C linkage).
    unsafe {
        PATH.set(path);
        SESSION.store(session, Ordering::Relaxed);
        let mut cmd = [0u8; 4096];
        let fd = libc::open(c"/proc/self/cmdline".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            let n = libc::read(fd, cmd.as_mut_ptr().cast(), cmd.len());
            libc::close(fd);
            if n > 0 {
                CMDLINE.set(&cmd[..n as usize]);
            }
        }
        START_NS.store(clock_ns(), Ordering::Relaxed);
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        REALTIME_NS.store(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64, Ordering::Relaxed);
        let mut key: libc::pthread_key_t = 0;
        if libc::pthread_key_create(&mut key, Some(thread_exit)) != 0 {
            let mut out = FdWriter::new(2);
            let _ = writeln!(out, "ptalloc: record: no thread key left; not recording");
            return;
        }
        EXIT_KEY.store(key, Ordering::Relaxed);
        if !open_trace(false) {
            return;
        }
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        linux().set_syscall_observer(Some(observe));
        libc::atexit(finish);
        set_state(ON);
    }
}

/// Open this process's file and write its header: `FILE` if it is free, else `FILE.PID`.
///
/// # Safety
/// Single-threaded: at start-up or in a forked child.
#[cfg(target_arch = "x86_64")]
unsafe fn open_trace(forked: bool) -> bool {
    // SAFETY: NUL-terminated paths in a buffer of ours; a descriptor we own.
    unsafe {
        let pid = libc::getpid();
        let mut name = [0u8; 4096 + 16];
        let path = PATH.get();
        name[..path.len()].copy_from_slice(path);
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC;
        let mut fd =
            if forked { -1 } else { libc::open(name.as_ptr() as *const c_char, flags | libc::O_EXCL, 0o644) };
        if fd < 0 && (forked || crate::errno() == libc::EEXIST) {
            let mut at = path.len();
            name[at] = b'.';
            at += 1;
            let mut digits = [0u8; 10];
            let mut n = 0;
            let mut v = pid as u32;
            loop {
                digits[n] = b'0' + (v % 10) as u8;
                n += 1;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            for i in 0..n {
                name[at + i] = digits[n - 1 - i];
            }
            name[at + n] = 0;
            fd = libc::open(name.as_ptr() as *const c_char, flags | libc::O_TRUNC, 0o644);
        }
        if fd < 0 {
            let e = crate::errno();
            let mut out = FdWriter::new(2);
            let len = name.iter().position(|b| *b == 0).unwrap_or(0);
            let _ = writeln!(
                out,
                "ptalloc: record: cannot create {} ({}); not recording",
                core::str::from_utf8(&name[..len]).unwrap_or("?"),
                errno_name(e)
            );
            return false;
        }
        // Out of the program's way, as the exit report's descriptor.
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
        if high >= 0 {
            libc::close(fd);
            fd = high;
        }
        let cmdline = CMDLINE.get();
        let header = FileHeader {
            magic: MAGIC,
            version: VERSION,
            block_size: BLOCK_SIZE as u32,
            pid: pid as u32,
            ppid: libc::getppid() as u32,
            session: SESSION.load(Ordering::Relaxed),
            start_ns: START_NS.load(Ordering::Relaxed),
            start_realtime_ns: REALTIME_NS.load(Ordering::Relaxed),
            page_size: libc::sysconf(libc::_SC_PAGESIZE) as u32,
            cmdline_len: cmdline.len() as u32,
            forked: forked as u32,
            dropped: 0,
        };
        let ok = grow(fd, 0)
            && libc::pwrite(fd, header.to_bytes().as_ptr().cast(), FILE_HEADER_SIZE, 0)
                == FILE_HEADER_SIZE as isize
            && libc::pwrite(fd, cmdline.as_ptr().cast(), cmdline.len(), FILE_HEADER_SIZE as libc::off_t)
                == cmdline.len() as isize;
        if !ok {
            let mut out = FdWriter::new(2);
            let _ = writeln!(out, "ptalloc: record: cannot write the trace's header; not recording");
            libc::close(fd);
            return false;
        }
        FD.store(fd, Ordering::Relaxed);
        NEXT_BLOCK.store(1, Ordering::Relaxed);
        THREADS.store(0, Ordering::Relaxed);
        true
    }
}

fn cstr<'a>(p: *const c_char) -> &'a [u8] {
    // SAFETY: the callers pass NUL-terminated strings of the environment, which live as long
    // as the process (start-up reads them before the program can change them).
    unsafe { core::slice::from_raw_parts(p as *const u8, libc::strlen(p)) }
}

fn parse_u64(s: &[u8]) -> u64 {
    s.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |v, d| v.wrapping_mul(10).wrapping_add((d - b'0') as u64))
}

/// The allocator's kernel calls, as they return.
fn observe(call: &SysCall) {
    let t = now();
    let r = |v: Result<usize, ptalloc::Errno>| trace::kernel_result(v.map_err(|e| e.0));
    let done = |v: Result<(), ptalloc::Errno>| trace::kernel_result(v.map(|()| 0).map_err(|e| e.0));
    match *call {
        SysCall::Sbrk { increment, result } => record(Kind::Sbrk, t, [increment as u64, r(result)]),
        SysCall::Mmap { len, prot, flags, result } => {
            record(Kind::Mmap, t, [len as u64, (prot as u32 as u64) << 32 | flags as u32 as u64, r(result)])
        }
        SysCall::Munmap { addr, len, result } => {
            record(Kind::Munmap, t, [addr as u64, len as u64, done(result)])
        }
        SysCall::Mremap { addr, old_len, new_len, flags, result } => {
            record(Kind::Mremap, t, [addr as u64, old_len as u64, new_len as u64, flags as u64, r(result)])
        }
        SysCall::Mprotect { addr, len, prot, result } => {
            record(Kind::Mprotect, t, [addr as u64, len as u64, prot as u64, done(result)])
        }
        SysCall::Madvise { addr, len, advice, result } => {
            record(Kind::Madvise, t, [addr as u64, len as u64, advice as u64, done(result)])
        }
    }
}

/// At exit: the count of dropped records into the header.
extern "C" fn finish() {
    if active() {
        let n = DROPPED.load(Ordering::Relaxed).min(u32::MAX as u64) as u32;
        // SAFETY: a write of 4 bytes of ours to our descriptor, inside the header block.
        unsafe { libc::pwrite(FD.load(Ordering::Relaxed), n.to_le_bytes().as_ptr().cast(), 4, 60) };
    }
}

/// The thread-exit destructor: keep the block through glibc's rounds, then unmap it.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn thread_exit(_: *mut c_void) {
    let rec = tls::this_thread();
    // SAFETY: the exiting thread's own state; setting the key again asks for another round.
    unsafe {
        (*rec).exit_rounds += 1;
        if (*rec).exit_rounds < EXIT_ROUNDS {
            libc::pthread_setspecific(EXIT_KEY.load(Ordering::Relaxed), core::ptr::dangling::<c_void>());
        } else {
            drop_block(rec);
        }
    }
}

// Between the prepare and the parent/child handlers the forking thread's records are
// dropped: a child must never write into its parent's block (the mapping is shared).
#[cfg(target_arch = "x86_64")]
extern "C" fn fork_prepare() {
    // SAFETY: the calling thread's own state.
    unsafe { (*tls::this_thread()).busy += 1 };
}

#[cfg(target_arch = "x86_64")]
extern "C" fn fork_parent() {
    // SAFETY: the calling thread's own state.
    unsafe { (*tls::this_thread()).busy -= 1 };
}

#[cfg(target_arch = "x86_64")]
extern "C" fn fork_child() {
    if !active() {
        return;
    }
    let rec = tls::this_thread();
    // SAFETY: the child has one thread, this one. The parent's blocks of other threads stay
    // mapped in the child but are never written (their threads do not exist here).
    unsafe {
        drop_block(rec);
        (*rec).thread = 0;
        (*rec).coarse = 0;
        (*rec).exit_rounds = 0;
        libc::close(FD.load(Ordering::Relaxed));
        FD.store(-1, Ordering::Relaxed);
        if !open_trace(true) {
            set_state(OFF);
        }
        (*rec).busy -= 1;
    }
}
