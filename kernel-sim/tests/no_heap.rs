//! Proof that no system-call or fault path touches the host heap: a global allocator that
//! records every allocation a thread makes while its "forbidden" flag is set, around every
//! system call and many page faults (including faults taken by other threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use kernel_sim::{Config, Machine, MREMAP_FIXED, MREMAP_MAYMOVE};

struct Watchdog;

static VIOLATIONS: AtomicUsize = AtomicUsize::new(0);
static LAST_SIZE: AtomicUsize = AtomicUsize::new(0);

std::thread_local!(static FORBIDDEN: Cell<bool> = const { Cell::new(false) });

fn note() {
    if FORBIDDEN.with(|f| f.get()) {
        VIOLATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator; recording touches only atomics and a
// const-initialised thread-local without destructor (neither allocates).
unsafe impl GlobalAlloc for Watchdog {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        LAST_SIZE.store(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static WATCHDOG: Watchdog = Watchdog;

/// Run `f` with host-heap use forbidden on this thread.
fn forbidden<T>(f: impl FnOnce() -> T) -> T {
    FORBIDDEN.with(|c| c.set(true));
    let r = f();
    FORBIDDEN.with(|c| c.set(false));
    r
}

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

#[test]
fn system_calls_and_faults_never_use_the_host_heap() {
    // Booting may not use it either, but it is allowed to: do it outside.
    let m = Machine::boot(&Config { phys_bytes: 256 << 20, ..Config::DEFAULT }).unwrap().leak();
    let mut calls = 0;
    let path =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("no-heap-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 40 * PAGE]).unwrap();
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    forbidden(|| {
        let mut ptrs = [0usize; 64];
        for round in 0..20 {
            for (i, p) in ptrs.iter_mut().enumerate() {
                let len = (2 + (i + round) % 9) * PAGE;
                let flags = if i % 7 == 0 { libc::MAP_SHARED | libc::MAP_ANONYMOUS } else { ANON };
                // SAFETY: without MAP_FIXED nothing is replaced.
                *p = unsafe { m.mmap(0, len, RW, flags, -1, 0) }.unwrap();
                // Faults: anonymous write, zero-page read, copy-on-write of the zero page.
                // SAFETY: the page was just mapped readable and writable.
                unsafe {
                    (*p as *mut u64).write_volatile(i as u64);
                    let _ = ((*p + PAGE) as *const u64).read_volatile();
                    ((*p + PAGE) as *mut u64).write_volatile(1);
                }
                calls += 1;
            }
            for (i, p) in ptrs.iter_mut().enumerate() {
                let len = (2 + (i + round) % 9) * PAGE;
                // SAFETY: the machine is this test's own, and its pages are only touched
                // through the raw addresses made here, never while a call changes them.
                unsafe {
                    m.mprotect(*p, PAGE, libc::PROT_READ).unwrap();
                    m.mprotect(*p, PAGE, RW).unwrap();
                    m.madvise(*p, len, libc::MADV_DONTNEED).unwrap();
                    m.madvise(*p, len, libc::MADV_RANDOM).unwrap();
                    *p = m.mremap(*p, len, len + 3 * PAGE, MREMAP_MAYMOVE, 0).unwrap();
                    let fixed = m.mmap(0, len + 3 * PAGE, libc::PROT_NONE, ANON, -1, 0).unwrap();
                    *p = m
                        .mremap(*p, len + 3 * PAGE, len + 3 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, fixed)
                        .unwrap();
                }
                let mut vec = [0u8; 16];
                m.mincore(*p, PAGE, &mut vec).unwrap();
                // SAFETY: still mapped readable and writable after the moves.
                unsafe { (*p as *mut u64).write_volatile(3) };
                // SAFETY: as for the moves.
                unsafe { m.munmap(*p, len + 3 * PAGE) }.unwrap();
                calls += 8;
            }
            // brk(0) rather than current_break: the call is part of what is watched.
            // SAFETY: brk(0) and raising the break take nothing away.
            let b = unsafe {
                let b = m.brk(0);
                m.brk(b + 5 * PAGE);
                b
            };
            // SAFETY: the heap page was just made.
            unsafe { (b as *mut u64).write_volatile(1) };
            // SAFETY: the machine is this test's own, and the heap is only touched through
            // the raw address above, never again; the failing calls change nothing.
            unsafe {
                m.brk(b);
                // Failing calls too.
                assert!(m.mmap(0, 0, RW, ANON, -1, 0).is_err());
                assert!(m.munmap(1, PAGE).is_err());
                assert!(m.mremap(b, PAGE, 2 * PAGE, 0, 0).is_err());
                assert!(m.madvise(b + PAGE, PAGE, 99).is_err());
            }
            calls += 7;
        }
        // Files: open, map, fault (reads from the file, copies, dirtying), read and write
        // through the cache, write back, truncate, drop, close; failing calls too.
        for round in 0..5 {
            let fd = m.open(&cpath, libc::O_RDWR, 0).unwrap();
            // SAFETY: without MAP_FIXED nothing is replaced.
            let (s, q) = unsafe {
                (
                    m.mmap(0, 40 * PAGE, RW, libc::MAP_SHARED, fd, 0).unwrap(),
                    m.mmap(0, 40 * PAGE, RW, libc::MAP_PRIVATE, fd, 0).unwrap(),
                )
            };
            for i in (0..40).step_by(3) {
                // SAFETY: pages of the two mappings just made.
                unsafe {
                    ((s + i * PAGE) as *const u64).read_volatile();
                    ((s + i * PAGE + 8) as *mut u64).write_volatile(i as u64);
                    ((q + i * PAGE) as *mut u64).write_volatile(round);
                }
            }
            let mut buf = [0u8; 64];
            m.pread(fd, &mut buf, (3 * PAGE) as i64).unwrap();
            m.pwrite(fd, &buf, (39 * PAGE + 10) as i64).unwrap();
            m.msync(s, 40 * PAGE, libc::MS_SYNC).unwrap();
            m.fsync(fd).unwrap();
            m.posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED).unwrap();
            m.ftruncate(fd, (39 * PAGE) as i64).unwrap();
            m.ftruncate(fd, (40 * PAGE) as i64).unwrap();
            m.sync().unwrap();
            let mut maps = kernel_sim_stack_writer();
            let _ = m.vma_at(s).map(|v| v.write_maps_line(&mut maps));
            // SAFETY: the mappings are only touched through the raw addresses above.
            unsafe {
                assert!(m.mmap(0, PAGE, RW, libc::MAP_SHARED, 99, 0).is_err());
                m.munmap(s, 40 * PAGE).unwrap();
                m.munmap(q, 40 * PAGE).unwrap();
            }
            assert!(m.msync(s, PAGE, libc::MS_SYNC).is_err());
            assert!(m.open(c"/nonexistent", libc::O_RDONLY, 0).is_err());
            m.close(fd).unwrap();
            calls += 17;
        }
        let _ = m.counters();
    });
    std::fs::remove_file(&path).unwrap();
    // exec: an ELF program with its interpreter, and a refusal.
    let m2 = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    let (prog, arg, envs) = (c"/bin/true", c"/bin/true", [c"A=1", c"B=2"]);
    forbidden(|| {
        // SAFETY: nothing lives on this machine.
        unsafe {
            assert!(m2.execve(c"/nonexistent", &[arg], &envs).is_err());
            let image = m2.execve(prog, &[arg], &envs).unwrap();
            ((image.sp) as *const u64).read_volatile();
        }
        let mut maps = kernel_sim_stack_writer();
        m2.vma_at(m2.layout().start_code).map(|v| v.write_maps_line(&mut maps)).unwrap().unwrap();
    });
    calls += 2;
    // fork: the parent's side (the child only exits on the machine and _exits).
    let m3 = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let q = unsafe { m3.mmap(0, 8 * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: a page of the mapping just made.
    unsafe { (q as *mut u64).write_volatile(1) };
    forbidden(|| {
        // SAFETY: the child makes no call but the machine's and _exit.
        let child = unsafe { m3.fork() }.unwrap();
        if child == 0 {
            // SAFETY: the child's copy-on-write page.
            unsafe { (q as *mut u64).write_volatile(2) };
            m3.exit_process();
            // SAFETY: leaving the child.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: the parent's own page: a copy-on-write fault.
        unsafe { (q as *mut u64).write_volatile(3) };
        m3.waitpid(child).unwrap();
    });
    calls += 3;
    // Faults taken by other threads at the same time.
    // Each thread faults in a quarter of a mapping and discards it while the others fault.
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 1024 * PAGE, RW, ANON, -1, 0) }.unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                forbidden(|| {
                    for i in t * 256..(t + 1) * 256 {
                        // SAFETY: a page of the mapping above.
                        unsafe { ((p + i * PAGE) as *mut u64).write_volatile(i as u64) };
                    }
                    // SAFETY: the machine is this test's own, and the quarter is only touched
                    // by this thread, through the raw addresses above, never again.
                    unsafe { m.madvise(p + t * 256 * PAGE, 256 * PAGE, libc::MADV_DONTNEED) }.unwrap();
                })
            });
        }
    });
    assert_eq!(
        VIOLATIONS.load(Ordering::Relaxed),
        0,
        "the host heap was used ({} bytes last) during {calls} calls",
        LAST_SIZE.load(Ordering::Relaxed)
    );
    m.check().unwrap();
}

/// A `fmt::Write` into a fixed buffer, for formatting under the watchdog.
fn kernel_sim_stack_writer() -> StackBuf {
    StackBuf { buf: [0; 256], len: 0 }
}

struct StackBuf {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[test]
fn the_watchdog_sees_allocations() {
    let before = VIOLATIONS.load(Ordering::Relaxed);
    forbidden(|| drop(std::hint::black_box(vec![1u8; 100])));
    assert_eq!(VIOLATIONS.load(Ordering::Relaxed), before + 2, "alloc and dealloc were seen");
    VIOLATIONS.fetch_sub(2, Ordering::Relaxed);
}
