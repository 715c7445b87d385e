//! Throughput of the simulated kernel, next to the real one doing the same work.
//!
//! ```text
//! cargo run --release -p kernel-sim --example sim_bench
//! ```
//!
//! Measures `mmap`+`munmap` pairs, page faults (sequential, random, and from 8 threads)
//! and `brk` round trips. The simulated numbers include what the real kernel does on the
//! simulation's behalf: each fault is a host SIGSEGV plus one host `mmap` of the frame.

use std::time::Instant;

use kernel_sim::{Config, Machine};
use ptalloc_testkit::Rng;

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

/// The calls measured, on one kernel. `flags` never holds `MAP_FIXED`.
trait Os: Sync {
    fn mmap(&self, len: usize, flags: i32) -> usize;
    /// # Safety
    /// Nothing uses `[addr, addr + len)` any more, and it was mapped by `mmap`.
    unsafe fn munmap(&self, addr: usize, len: usize);
    /// # Safety
    /// Nothing uses the heap between `addr` and the break when `addr` is below it.
    unsafe fn brk(&self, addr: usize) -> usize;
}

struct Sim(&'static Machine);

impl Os for Sim {
    fn mmap(&self, len: usize, flags: i32) -> usize {
        // SAFETY: without MAP_FIXED nothing is replaced.
        unsafe { self.0.mmap(0, len, RW, flags, -1, 0) }.unwrap()
    }
    unsafe fn munmap(&self, addr: usize, len: usize) {
        // SAFETY: the caller's promise is the range rule.
        unsafe { self.0.munmap(addr, len) }.unwrap()
    }
    unsafe fn brk(&self, addr: usize) -> usize {
        // SAFETY: the caller's promise is the range rule below a lowered break.
        unsafe { self.0.brk(addr) }
    }
}

struct Linux;

impl Os for Linux {
    fn mmap(&self, len: usize, flags: i32) -> usize {
        // SAFETY: a fresh anonymous mapping.
        let p = unsafe { libc::mmap(core::ptr::null_mut(), len, RW, flags, -1, 0) };
        assert_ne!(p, libc::MAP_FAILED);
        p as usize
    }
    unsafe fn munmap(&self, addr: usize, len: usize) {
        // SAFETY: unmapping what `mmap` gave, which the caller no longer uses.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }
    unsafe fn brk(&self, addr: usize) -> usize {
        // SAFETY: the raw brk system call; the caller no longer uses what a lowered break
        // gives back.
        unsafe { libc::syscall(libc::SYS_brk, addr) as usize }
    }
}

/// Write to the page at `addr`.
///
/// # Safety
/// `addr` is in a writable mapping made by `Os::mmap` and not yet unmapped.
unsafe fn touch(addr: usize) {
    // SAFETY: the caller's promise.
    unsafe { (addr as *mut u64).write_volatile(1) }
}

fn rate(n: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    n as f64 / t.elapsed().as_secs_f64()
}

fn bench(os: &dyn Os) -> [f64; 6] {
    let pairs = 200_000;
    // For every unsafe block below: each range is one `os.mmap` just made, touched only
    // through the raw addresses here and not after it is unmapped.
    let mmap_pairs = rate(pairs, || {
        for _ in 0..pairs {
            let p = os.mmap(4 * PAGE, ANON);
            // SAFETY: see above.
            unsafe { os.munmap(p, 4 * PAGE) };
        }
    });
    let touched_pairs = rate(pairs / 4, || {
        for _ in 0..pairs / 4 {
            let p = os.mmap(4 * PAGE, ANON);
            // SAFETY: see above.
            unsafe {
                touch(p);
                os.munmap(p, 4 * PAGE);
            }
        }
    });
    let pages = 64 << 10;
    let p = os.mmap(pages * PAGE, ANON | libc::MAP_NORESERVE);
    // SAFETY: see above.
    let seq = rate(pages, || (0..pages).for_each(|i| unsafe { touch(p + i * PAGE) }));
    // SAFETY: see above.
    unsafe { os.munmap(p, pages * PAGE) };
    // Random order leaves every page's frame apart from its neighbours', so each one is a
    // host VMA of its own: keep well below the host's vm.max_map_count.
    let pages = 16 << 10;
    let p = os.mmap(pages * PAGE, ANON | libc::MAP_NORESERVE);
    let mut order: Vec<usize> = (0..pages).collect();
    let mut rng = Rng::new(1);
    for i in (1..pages).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // SAFETY: see above.
    let random = rate(pages, || order.iter().for_each(|&i| unsafe { touch(p + i * PAGE) }));
    // SAFETY: see above.
    unsafe { os.munmap(p, pages * PAGE) };
    let threads = 8;
    let per = 16 << 10;
    let p = os.mmap(threads * per * PAGE, ANON | libc::MAP_NORESERVE);
    let threaded = rate(threads * per, || {
        std::thread::scope(|s| {
            for t in 0..threads {
                // SAFETY: see above.
                s.spawn(move || (0..per).for_each(|i| unsafe { touch(p + (t * per + i) * PAGE) }));
            }
        })
    });
    // SAFETY: see above.
    unsafe { os.munmap(p, threads * per * PAGE) };
    // SAFETY: the heap pages the break goes up and down over are never touched.
    let brks = unsafe {
        let b = os.brk(0);
        rate(pairs, || {
            for _ in 0..pairs / 2 {
                os.brk(b + 64 * PAGE);
                os.brk(b);
            }
        })
    };
    [mmap_pairs, touched_pairs, seq, random, threaded, brks]
}

fn host_vmas() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count())
}

fn main() {
    let m = Machine::boot(&Config { phys_bytes: 2 << 30, ..Config::DEFAULT }).unwrap().leak();
    let sim = bench(&Sim(m));
    let linux = bench(&Linux);
    let names = [
        "mmap+munmap pairs/s (4 pages, untouched)",
        "mmap+touch+munmap/s",
        "faults/s, sequential (64K pages)",
        "faults/s, random order (16K pages)",
        "faults/s, 8 threads (128K pages)",
        "brk calls/s (grow+shrink 64 pages)",
    ];
    println!("{:<44} {:>14} {:>14} {:>8}", "", "simulation", "linux", "ratio");
    for i in 0..names.len() {
        println!("{:<44} {:>14.0} {:>14.0} {:>8.2}", names[i], sim[i], linux[i], linux[i] / sim[i]);
    }
    let c = m.counters();
    println!(
        "\nsimulated: {} faults, {} mmap, {} munmap, peak RSS {} MiB, host VMAs now {}",
        c.faults,
        c.calls(kernel_sim::Syscall::Mmap),
        c.calls(kernel_sim::Syscall::Munmap),
        (c.hiwater_rss * PAGE) >> 20,
        host_vmas()
    );
    m.check().unwrap();
}
