//! `ptalloc demo`: one workload on ptalloc and on the system allocator (glibc), each in a
//! fresh process of its own so that time and peak RSS belong to one allocator alone.
//!
//! The workload: several threads each keep a table of live blocks and replace random
//! entries — mostly small blocks, some medium, a few large enough to be mmapped, some grown
//! with realloc — touching the memory they get; a share of blocks is handed to the next
//! thread through a queue and freed there. All threads are started and their tables
//! reserved before the clock starts, so the measured part calls nothing but the allocator.

use std::process::Command;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use ptalloc_testkit::Rng;

/// Settings of one demo run.
#[derive(Clone, Copy, Debug)]
pub struct DemoConfig {
    pub threads: usize,
    pub ops: u64,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> DemoConfig {
        DemoConfig { threads: 4, ops: 1_000_000, seed: 1 }
    }
}

/// The allocator entry points the workload calls. `realloc` and `free` take a block of the
/// same allocator, null or live, as C's do.
#[derive(Clone, Copy)]
struct Api {
    malloc: fn(usize) -> *mut u8,
    realloc: unsafe fn(*mut u8, usize) -> *mut u8,
    free: unsafe fn(*mut u8),
}

fn pt_malloc(n: usize) -> *mut u8 {
    ptalloc::linux().malloc(n)
}
/// # Safety
/// `p` is null or a live block of ptalloc's.
unsafe fn pt_realloc(p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe { ptalloc::linux().realloc(p, n) }
}
/// # Safety
/// `p` is null or a live block of ptalloc's.
unsafe fn pt_free(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { ptalloc::linux().free(p) }
}
fn sys_malloc(n: usize) -> *mut u8 {
    // SAFETY: plain malloc.
    unsafe { libc::malloc(n) as *mut u8 }
}
/// # Safety
/// `p` is null or a live block of glibc's.
unsafe fn sys_realloc(p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe { libc::realloc(p.cast(), n) as *mut u8 }
}
/// # Safety
/// `p` is null or a live block of glibc's.
unsafe fn sys_free(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { libc::free(p.cast()) }
}

const PTALLOC: Api = Api { malloc: pt_malloc, realloc: pt_realloc, free: pt_free };
const SYSTEM: Api = Api { malloc: sys_malloc, realloc: sys_realloc, free: sys_free };

const SLOTS: usize = 4096;

/// A block handed between threads (raw pointers are not Send by default).
struct Handoff(usize);

fn size_for(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=749 => 16 + rng.below(112) as usize,
        750..=929 => 128 + rng.below(1920) as usize,
        930..=989 => 2048 + rng.below(30 << 10) as usize,
        _ => (32 << 10) + rng.below(1 << 20) as usize,
    }
}

/// Write the first and last byte and one byte a page: the memory is really used.
fn touch(p: *mut u8, n: usize) {
    let mut off = 0;
    while off < n {
        // SAFETY: inside a block of n bytes.
        unsafe { p.add(off).write(off as u8) };
        off += 4096;
    }
    // SAFETY: the last byte of the block.
    unsafe { p.add(n - 1).write(0xa5) };
}

/// Returns (bytes requested, blocks whose contents did not survive a realloc).
fn thread_work(
    api: Api,
    id: usize,
    cfg: DemoConfig,
    queues: &[Mutex<Vec<Handoff>>],
    start: &Barrier,
) -> (u64, u64) {
    let mut rng = Rng::new(cfg.seed * 1000 + id as u64);
    let mut table: Vec<(usize, usize)> = vec![(0, 0); SLOTS];
    let mut incoming: Vec<Handoff> = Vec::with_capacity(1 << 16);
    let next = &queues[(id + 1) % queues.len()];
    let mine = &queues[id];
    let mut requested = 0u64;
    let mut damaged = 0u64;
    start.wait();
    for i in 0..cfg.ops {
        let slot = rng.below(SLOTS as u64) as usize;
        let (old, old_size) = table[slot];
        let r = rng.below(100);
        if r < 5 && old != 0 {
            // Grow in place or move, keeping the contents; past 1 MiB, shrink back to an
            // ordinary size (unbounded growth would make peak memory a matter of timing).
            let new_size = if old_size > 1 << 20 { size_for(&mut rng) } else { old_size + old_size / 2 + 16 };
            requested += new_size as u64;
            // SAFETY: a live block of ours.
            let p = unsafe { (api.realloc)(old as *mut u8, new_size) };
            if !p.is_null() {
                // SAFETY: the old last byte, still inside the block when it grew.
                if new_size >= old_size && unsafe { *p.add(old_size - 1) } != 0xa5 {
                    damaged += 1;
                }
                touch(p, new_size);
                table[slot] = (p as usize, new_size);
            }
        } else {
            if old != 0 {
                if r < 15 {
                    // Hand it to the next thread, which frees it.
                    let mut q = next.lock().unwrap();
                    if q.len() < q.capacity() {
                        q.push(Handoff(old));
                    } else {
                        drop(q);
                        // SAFETY: a live block of ours.
                        unsafe { (api.free)(old as *mut u8) };
                    }
                } else {
                    // SAFETY: a live block of ours.
                    unsafe { (api.free)(old as *mut u8) };
                }
            }
            let n = size_for(&mut rng);
            requested += n as u64;
            let p = (api.malloc)(n);
            if p.is_null() {
                table[slot] = (0, 0);
                continue;
            }
            touch(p, n);
            table[slot] = (p as usize, n);
        }
        if i % 256 == 0 {
            std::mem::swap(&mut *mine.lock().unwrap(), &mut incoming);
            for h in incoming.drain(..) {
                // SAFETY: a live block handed over by another thread.
                unsafe { (api.free)(h.0 as *mut u8) };
            }
        }
    }
    for (p, _) in table {
        if p != 0 {
            // SAFETY: live blocks.
            unsafe { (api.free)(p as *mut u8) };
        }
    }
    (requested, damaged)
}

/// Peak resident set size of this process in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Run the workload in this process on one allocator and print `key=value` results.
pub fn worker(which: &str, cfg: DemoConfig) -> i32 {
    let api = match which {
        "ptalloc" => PTALLOC,
        "system" => SYSTEM,
        _ => return 2,
    };
    let queues: Arc<Vec<Mutex<Vec<Handoff>>>> =
        Arc::new((0..cfg.threads).map(|_| Mutex::new(Vec::with_capacity(1 << 16))).collect());
    let start = Arc::new(Barrier::new(cfg.threads + 1));
    let handles: Vec<_> = (0..cfg.threads)
        .map(|id| {
            let (queues, start) = (queues.clone(), start.clone());
            std::thread::spawn(move || thread_work(api, id, cfg, &queues, &start))
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let (mut requested, mut damaged) = (0, 0);
    for h in handles {
        let (r, d) = h.join().unwrap();
        requested += r;
        damaged += d;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    for q in queues.iter() {
        for h in q.lock().unwrap().drain(..) {
            // SAFETY: blocks handed over and never picked up.
            unsafe { (api.free)(h.0 as *mut u8) };
        }
    }
    println!("time_s={elapsed:.4}");
    println!("peak_rss_kib={}", peak_rss_kib());
    println!("requested={requested}");
    println!("damaged={damaged}");
    if which == "system" {
        // SAFETY: glibc's mallinfo2 has no preconditions.
        let i = unsafe { libc::mallinfo2() };
        println!("arena_bytes={}\nin_use={}\nfree={}", i.arena, i.uordblks, i.fordblks);
    }
    if which == "ptalloc" {
        let s = ptalloc::linux().stats();
        let i = s.info;
        for (k, v) in [
            ("brk_calls", s.brk_calls),
            ("brk_grown", s.brk_grown),
            ("brk_shrunk", s.brk_shrunk),
            ("mmap_calls", s.mmap_calls),
            ("mmap_bytes", s.mmap_bytes),
            ("munmap_calls", s.munmap_calls),
            ("mremap_calls", s.mremap_calls),
            ("mprotect_calls", s.mprotect_calls),
            ("madvise_calls", s.madvise_calls),
            ("arenas", s.arenas as u64),
            ("heaps", s.heaps_created),
            ("mmap_threshold", s.mmap_threshold as u64),
            ("arena_bytes", i.arena as u64),
            ("in_use", i.uordblks as u64),
            ("free", i.fordblks as u64),
            ("mmapped_bytes", i.hblkhd as u64),
            ("mmapped_chunks", i.hblks as u64),
        ] {
            println!("{k}={v}");
        }
    }
    0
}

fn parse_results(out: &str) -> Vec<(String, String)> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get(r: &[(String, String)], k: &str) -> f64 {
    r.iter().find(|(key, _)| key == k).and_then(|(_, v)| v.parse().ok()).unwrap_or(0.0)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// Run both workers and print the comparison.
pub fn demo(cfg: DemoConfig) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ptalloc demo: cannot find own executable: {e}");
            return 1;
        }
    };
    println!(
        "ptalloc demo: {} threads x {} operations (75% blocks of 16-128 B, 18% up to 2 KiB, 6% up to 32 KiB, \
         1% up to 1 MiB; 5% reallocs; 10% freed by another thread)\n",
        cfg.threads, cfg.ops
    );
    let mut results = Vec::new();
    for which in ["ptalloc", "system"] {
        let out = Command::new(&exe)
            .args(["demo", "--worker", which])
            .args(["--threads", &cfg.threads.to_string(), "--ops", &cfg.ops.to_string()])
            .args(["--seed", &cfg.seed.to_string()])
            .output();
        match out {
            Ok(o) if o.status.success() => results.push(parse_results(&String::from_utf8_lossy(&o.stdout))),
            Ok(o) => {
                eprintln!(
                    "ptalloc demo: the {which} run failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                );
                return 1;
            }
            Err(e) => {
                eprintln!("ptalloc demo: cannot start the {which} run: {e}");
                return 1;
            }
        }
    }
    let (pt, sys) = (&results[0], &results[1]);
    println!("{:<22}{:>10}{:>14}", "allocator", "time", "peak RSS");
    for (name, r) in [("ptalloc", pt), ("glibc (system malloc)", sys)] {
        println!("{:<22}{:>8.3} s{:>14}", name, get(r, "time_s"), mib(get(r, "peak_rss_kib") * 1024.0));
    }
    let ratio = get(pt, "time_s") / get(sys, "time_s").max(1e-9);
    let rss_ratio = get(pt, "peak_rss_kib") / get(sys, "peak_rss_kib").max(1.0);
    println!("ptalloc / glibc: time {ratio:.2}, peak RSS {rss_ratio:.2}\n");
    println!("what ptalloc asked of the kernel:");
    println!(
        "  brk     {:>8} calls (grew {}, shrank {})",
        get(pt, "brk_calls"),
        mib(get(pt, "brk_grown")),
        mib(get(pt, "brk_shrunk"))
    );
    println!("  mmap    {:>8} calls ({} mapped)", get(pt, "mmap_calls"), mib(get(pt, "mmap_bytes")));
    println!(
        "  munmap  {:>8} calls, mremap {} calls, mprotect {} calls, madvise {} calls",
        get(pt, "munmap_calls"),
        get(pt, "mremap_calls"),
        get(pt, "mprotect_calls"),
        get(pt, "madvise_calls")
    );
    println!("at the end, all blocks freed:");
    println!(
        "  ptalloc  {} arenas ({} mmapped heaps); mmap threshold now {}",
        get(pt, "arenas"),
        get(pt, "heaps"),
        mib(get(pt, "mmap_threshold"))
    );
    for (name, r) in [("ptalloc", pt), ("glibc", sys)] {
        println!(
            "  {name:<8} arenas hold {} ({} in use, {} free)",
            mib(get(r, "arena_bytes")),
            mib(get(r, "in_use")),
            mib(get(r, "free"))
        );
    }
    if get(pt, "requested") != get(sys, "requested") || get(pt, "damaged") + get(sys, "damaged") != 0.0 {
        eprintln!("ptalloc demo: the runs disagree: a block lost its contents or an allocation failed");
        return 1;
    }
    0
}
