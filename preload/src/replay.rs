//! `ptalloc replay`: a trace's program calls made again, with their sizes and their order,
//! on any installed allocator and on either kernel, in a fresh process per run.
//!
//! The command turns the trace into a workload file (`workload.rs`) and runs
//! `ptalloc replay-worker` on it: under `LD_PRELOAD` of the chosen allocator on Linux, or
//! with ptalloc on kernel-sim's simulated kernel. Each recorded thread is a replay thread
//! (or all run on one, in the trace's order); a free waits for its block's malloc when the
//! two were on different threads, so cross-thread frees stay cross-thread. The worker
//! touches every page of each block it gets, as the program did (or else the allocators'
//! resident memory could not be compared), and reports its time, its resident memory, and
//! what it called — which the command checks against the trace.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Instant;

use crate::history;
use crate::trace::Kind;
use crate::trace_stats::{bytes, duration};
use crate::tracefile;
use crate::workload::{self, Mapped, Op, Workload, FAILED, NO_SLOT};

pub const ALLOCATORS: [&str; 5] = ["ptalloc", "glibc", "jemalloc", "mimalloc", "tcmalloc"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Linux,
    Sim,
}

pub struct ReplayConfig {
    pub file: PathBuf,
    pub allocator: String,
    pub kernel: Kernel,
    pub one_thread: bool,
    pub compare: bool,
    pub runs: usize,
    pub lib: Option<PathBuf>,
    pub svg: Option<PathBuf>,
}

/// What one replay run reported.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    pub time_ns: u64,
    /// Resident bytes when the replay began, and the peak (the process's `VmHWM`).
    pub rss_start: u64,
    pub rss_peak: u64,
    /// Calls made, by kind, and the bytes they asked for (of the calls that succeeded).
    pub calls: BTreeMap<String, u64>,
    pub requested: u64,
    /// (allocating thread, freeing thread) -> frees, of blocks that moved between threads.
    pub cross: BTreeMap<(u32, u32), u64>,
    /// Live requested bytes at peak: measured on one thread only (see `worker`).
    pub peak_live: Option<u64>,
    /// The simulated kernel's view (`--kernel sim`).
    pub sim_faults: Option<u64>,
    pub sim_maps: Option<String>,
    /// Resident bytes over the run, sampled about every millisecond (time, bytes).
    pub rss_series: Vec<(u64, u64)>,
}

fn unknown_allocator(name: &str) -> String {
    format!("replay: unknown allocator {name:?} (known: {})", ALLOCATORS.join(", "))
}

/// The library to preload for `name` on Linux (None: glibc, the system's own).
fn library(name: &str, lib: &Option<PathBuf>) -> Result<Option<PathBuf>, String> {
    Ok(match name {
        "glibc" => None,
        "ptalloc" => Some(crate::run::library_path(lib.clone(), "replay")?),
        other => {
            let (file, package) = match other {
                "jemalloc" => ("libjemalloc.so.2", "libjemalloc2"),
                "mimalloc" => ("libmimalloc.so.2", "libmimalloc2.0"),
                "tcmalloc" => ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
                _ => return Err(unknown_allocator(other)),
            };
            let found = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
                .iter()
                .map(|d| Path::new(d).join(file))
                .find(|p| p.exists());
            Some(
                found.ok_or_else(|| {
                    format!("replay: {other} is not installed (Debian: apt install {package})")
                })?,
            )
        }
    })
}

pub fn replay(cfg: ReplayConfig) -> Result<i32, String> {
    let names: Vec<&str> = if cfg.compare {
        if cfg.kernel == Kernel::Sim {
            return Err(
                "replay: --compare runs the allocators on Linux; the simulated kernel runs ptalloc".into()
            );
        }
        ALLOCATORS.iter().copied().filter(|a| library(a, &cfg.lib).is_ok()).collect()
    } else {
        // An unknown or missing allocator is refused before any work. The simulated kernel
        // runs ptalloc inside the worker, so it needs no library file.
        if cfg.kernel == Kernel::Sim {
            if cfg.allocator != "ptalloc" {
                if !ALLOCATORS.contains(&cfg.allocator.as_str()) {
                    return Err(unknown_allocator(&cfg.allocator));
                }
                return Err(format!("replay: the simulated kernel runs ptalloc, not {}", cfg.allocator));
            }
        } else {
            library(&cfg.allocator, &cfg.lib)?;
        }
        vec![cfg.allocator.as_str()]
    };
    let trace = tracefile::read(&cfg.file).map_err(|e| format!("replay: {e}"))?;
    let h = history::history(&trace);
    let mut w = workload::build(&trace, &h);
    if cfg.one_thread {
        w = workload::serialize(&w);
    }
    let expected = expect(&w);
    let wl = std::env::temp_dir().join(format!("ptalloc-replay-{}.wl", std::process::id()));
    workload::write(&w, &wl)?;
    let _cleanup = Remove(wl.clone());

    let runs = if cfg.kernel == Kernel::Sim { 1 } else { cfg.runs.max(1) };
    let bar = indicatif::ProgressBar::new((runs * names.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_prefix("replay");
    let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); names.len()];
    // Alternating: every allocator once, then again, so a slow spell of the machine falls on all.
    for _ in 0..runs {
        for (i, name) in names.iter().enumerate() {
            bar.set_message(name.to_string());
            let r = run_worker(&wl, name, cfg.kernel, &cfg.lib)?;
            check(&expected, &r, &w, name)?;
            results[i].push(r);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    print!("{}", table(&cfg, &trace, &h, &w, &names, &results));
    if let Some(svg) = &cfg.svg {
        let picture = crate::pictures::replay_chart(&trace, &h, &names, &results);
        std::fs::write(svg, picture).map_err(|e| format!("replay: cannot write {}: {e}", svg.display()))?;
        eprintln!("ptalloc: replay: picture in {}", svg.display());
    }
    Ok(0)
}

struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a faithful replay calls: by kind, and the bytes of the calls with a block.
struct Expected {
    calls: BTreeMap<String, u64>,
    cross: BTreeMap<(u32, u32), u64>,
}

fn expect(w: &Workload) -> Expected {
    let mut calls = BTreeMap::new();
    for (_, ops) in &w.threads {
        for op in ops {
            *calls.entry(kind_name(op.kind).to_string()).or_insert(0) += 1;
        }
    }
    // Frees of a block another thread gave its slot, each slot's operations in order.
    let mut by_slot: Vec<(u32, u64, u32, u32)> = Vec::new();
    for (t, ops) in &w.threads {
        for op in ops.iter().filter(|o| o.slot != NO_SLOT) {
            by_slot.push((op.slot, op.wait, *t, op.kind));
        }
    }
    by_slot.sort_unstable();
    let mut cross = BTreeMap::new();
    // (slot, the thread that last set its pointer, whether it holds a block)
    let mut state: Option<(u32, u32, bool)> = None;
    for (slot, _, t, kind) in by_slot {
        let (owner, holds) = match state {
            Some((s, o, h)) if s == slot => (o, h),
            _ => (t, false),
        };
        let failed = kind & FAILED != 0;
        let kind = Kind::from_u8(kind as u8).unwrap_or(Kind::Free);
        if kind == Kind::Free && holds && owner != t {
            *cross.entry((owner, t)).or_insert(0) += 1;
        }
        state = Some(if kind == Kind::Free {
            (slot, t, false)
        } else if failed {
            (slot, owner, holds)
        } else {
            (slot, t, true)
        });
    }
    Expected { calls, cross }
}

fn kind_name(k: u32) -> &'static str {
    Kind::from_u8(k as u8).map_or("?", Kind::name)
}

/// A run that did not make the trace's calls is an error of ours: say so rather than report it.
fn check(e: &Expected, r: &RunResult, w: &Workload, name: &str) -> Result<(), String> {
    if r.calls != e.calls {
        return Err(format!(
            "replay on {name} made other calls than the workload's: {:?} against {:?}",
            r.calls, e.calls
        ));
    }
    if w.threads.len() > 1 && r.cross != e.cross {
        return Err(format!("replay on {name}: cross-thread frees {:?}, the trace's {:?}", r.cross, e.cross));
    }
    Ok(())
}

fn run_worker(wl: &Path, name: &str, kernel: Kernel, lib: &Option<PathBuf>) -> Result<RunResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("replay: cannot find own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("replay-worker").arg(wl).arg("--kernel").arg(if kernel == Kernel::Sim { "sim" } else { "linux" });
    cmd.env_remove("LD_PRELOAD").env_remove("PTALLOC_RECORD").env_remove("PTALLOC_STATS");
    if kernel == Kernel::Linux {
        if let Some(l) = library(name, lib)? {
            cmd.env("LD_PRELOAD", l);
        }
    }
    let out = cmd.output().map_err(|e| format!("replay: cannot run the replay worker: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "replay on {name} failed ({}): {}",
            out.status,
            err.lines().last().unwrap_or("no message")
        ));
    }
    parse_result(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("replay on {name}: unreadable report"))
}

fn parse_result(text: &str) -> Option<RunResult> {
    let mut r = RunResult::default();
    let mut maps = String::new();
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("map ") {
            maps.push_str(m);
            maps.push('\n');
            continue;
        }
        let mut w = line.split_whitespace();
        let key = w.next()?;
        let vals: Vec<u64> = w.map(|v| v.parse().ok()).collect::<Option<Vec<u64>>>()?;
        let v = |i: usize| vals.get(i).copied();
        match key {
            "time_ns" => r.time_ns = v(0)?,
            "rss_start" => r.rss_start = v(0)?,
            "rss_peak" => r.rss_peak = v(0)?,
            "requested" => r.requested = v(0)?,
            "peak_live" => r.peak_live = Some(v(0)?),
            "sim_faults" => r.sim_faults = Some(v(0)?),
            "cross" => {
                r.cross.insert((v(0)? as u32, v(1)? as u32), v(2)?);
            }
            "rss" => r.rss_series.push((v(0)?, v(1)?)),
            k if k.starts_with("calls.") => {
                r.calls.insert(k["calls.".len()..].to_string(), v(0)?);
            }
            _ => return None,
        }
    }
    if !maps.is_empty() {
        r.sim_maps = Some(maps);
    }
    Some(r)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn table(
    cfg: &ReplayConfig,
    trace: &tracefile::Trace,
    h: &history::History,
    w: &Workload,
    names: &[&str],
    results: &[Vec<RunResult>],
) -> String {
    let mut o = String::new();
    let calls: u64 = w.threads.iter().map(|t| t.1.len() as u64).sum();
    let _ = writeln!(
        o,
        "replay of {} ({}): {} calls on {} thread{}{}, peak live {} in the trace",
        trace.path.display(),
        trace.cmdline.first().map_or("?", |c| c.as_str()),
        calls,
        w.threads.len(),
        if w.threads.len() == 1 { "" } else { "s" },
        if w.skipped > 0 {
            format!(" ({} frees of blocks from before the recording left out)", w.skipped)
        } else {
            String::new()
        },
        bytes(h.peak_live),
    );
    let runs = results.first().map_or(0, Vec::len);
    let _ = writeln!(
        o,
        "kernel: {}; {} run{} each{}, median (min-max)\n",
        if cfg.kernel == Kernel::Sim { "simulated (kernel-sim)" } else { "Linux" },
        runs,
        if runs == 1 { "" } else { "s" },
        if names.len() > 1 { ", alternating" } else { "" }
    );
    let _ = writeln!(
        o,
        "{:<10} {:>26} {:>12} {:>14} {:>14}",
        "allocator", "time", "peak RSS", "RSS it added", "added / live"
    );
    let glibc_time = names.iter().position(|n| *n == "glibc").map(|i| {
        let mut t: Vec<f64> = results[i].iter().map(|r| r.time_ns as f64).collect();
        median(&mut t)
    });
    for (name, rs) in names.iter().zip(results) {
        let mut t: Vec<f64> = rs.iter().map(|r| r.time_ns as f64).collect();
        let mut peak: Vec<f64> = rs.iter().map(|r| r.rss_peak as f64).collect();
        let mut added: Vec<f64> = rs.iter().map(|r| r.rss_peak.saturating_sub(r.rss_start) as f64).collect();
        let (tmin, tmax) =
            (t.iter().copied().fold(f64::MAX, f64::min), t.iter().copied().fold(0.0, f64::max));
        let tm = median(&mut t);
        let ratio =
            glibc_time.filter(|_| names.len() > 1).map_or(String::new(), |g| format!(" x{:.2}", tm / g));
        let time =
            format!("{} ({}-{}){ratio}", duration(tm as u64), duration(tmin as u64), duration(tmax as u64));
        let am = median(&mut added);
        let frag = if h.peak_live > 0 { format!("{:.2}", am / h.peak_live as f64) } else { "-".into() };
        let _ = writeln!(
            o,
            "{name:<10} {time:>26} {:>12} {:>14} {frag:>14}",
            bytes(median(&mut peak) as u64),
            bytes(am as u64)
        );
    }
    if names.len() > 1 {
        let _ = writeln!(o, "(x: time against glibc's; RSS it added: peak resident memory above the worker's own at the start)");
    }
    if let Some(r) = results.first().and_then(|r| r.first()) {
        let _ = writeln!(
            o,
            "\ncalls replayed, as in the trace: {}",
            r.calls.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        );
        let _ = writeln!(o, "bytes requested: {} ({} bytes)", bytes(r.requested), r.requested);
        let cross: u64 = r.cross.values().sum();
        if w.threads.len() > 1 {
            let _ = writeln!(o, "cross-thread frees: {cross}, the same pairs of threads as in the trace");
        }
        if let Some(p) = r.peak_live {
            let _ = writeln!(o, "peak live bytes: {p} (the trace's: {})", h.peak_live);
        }
        if let Some(f) = r.sim_faults {
            let _ = writeln!(o, "simulated page faults: {f}; peak RSS {}", bytes(r.rss_peak));
        }
        if let Some(m) = &r.sim_maps {
            let _ = writeln!(o, "\n/proc/PID/maps at the end (simulated):\n{m}");
        }
    }
    o
}

// ------------------------------------------------------------------ the worker

/// The calls a replay makes, on one allocator.
trait Calls: Sync {
    fn malloc(&self, size: usize) -> *mut u8;
    fn calloc(&self, n: usize, size: usize) -> *mut u8;
    /// # Safety
    /// `p` is null or a live block of this allocator.
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8;
    /// # Safety
    /// As `realloc`.
    unsafe fn reallocarray(&self, p: *mut u8, n: usize, size: usize) -> *mut u8;
    fn memalign(&self, align: usize, size: usize) -> *mut u8;
    fn posix_memalign(&self, align: usize, size: usize) -> (*mut u8, i32);
    fn aligned_alloc(&self, align: usize, size: usize) -> *mut u8;
    fn valloc(&self, size: usize) -> *mut u8;
    fn pvalloc(&self, size: usize) -> *mut u8;
    /// # Safety
    /// `p` is null or a live block of this allocator.
    unsafe fn free(&self, p: *mut u8);
    fn malloc_trim(&self, pad: usize);
}

/// Whatever allocator is preloaded, through the C functions. valloc, pvalloc and
/// reallocarray are made of memalign and realloc: not every allocator has its own, and the
/// system's would then allocate from glibc's heap.
struct CFunctions {
    page: usize,
}

extern "C" {
    fn memalign(align: usize, size: usize) -> *mut libc::c_void;
    fn aligned_alloc(align: usize, size: usize) -> *mut libc::c_void;
    fn malloc_trim(pad: usize) -> libc::c_int;
}

impl Calls for CFunctions {
    fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain C calls.
        unsafe { libc::malloc(size).cast() }
    }
    fn calloc(&self, n: usize, size: usize) -> *mut u8 {
        // SAFETY: plain C calls.
        unsafe { libc::calloc(n, size).cast() }
    }
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: the caller's promise.
        unsafe { libc::realloc(p.cast(), size).cast() }
    }
    unsafe fn reallocarray(&self, p: *mut u8, n: usize, size: usize) -> *mut u8 {
        match n.checked_mul(size) {
            // SAFETY: the caller's promise.
            Some(total) => unsafe { self.realloc(p, total) },
            None => std::ptr::null_mut(),
        }
    }
    fn memalign(&self, align: usize, size: usize) -> *mut u8 {
        // SAFETY: plain C calls.
        unsafe { memalign(align, size).cast() }
    }
    fn posix_memalign(&self, align: usize, size: usize) -> (*mut u8, i32) {
        let mut p = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        let r = unsafe { libc::posix_memalign(&mut p, align, size) };
        (p.cast(), r)
    }
    fn aligned_alloc(&self, align: usize, size: usize) -> *mut u8 {
        // SAFETY: plain C calls.
        unsafe { aligned_alloc(align, size).cast() }
    }
    fn valloc(&self, size: usize) -> *mut u8 {
        self.memalign(self.page, size)
    }
    fn pvalloc(&self, size: usize) -> *mut u8 {
        match size.checked_add(self.page - 1) {
            Some(s) => self.memalign(self.page, s.max(1) / self.page * self.page),
            None => std::ptr::null_mut(),
        }
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: the caller's promise.
        unsafe { libc::free(p.cast()) }
    }
    fn malloc_trim(&self, pad: usize) {
        // SAFETY: plain C call (glibc's, or the preloaded allocator's).
        unsafe { malloc_trim(pad) };
    }
}

// SAFETY: the only Malloc<SimKernel> in this program.
static SIM: ptalloc::Malloc<kernel_sim::SimKernel> =
    unsafe { ptalloc::Malloc::new(kernel_sim::SimKernel::new()) };

/// ptalloc on the simulated kernel.
struct Sim;

impl Calls for Sim {
    fn malloc(&self, size: usize) -> *mut u8 {
        SIM.malloc(size)
    }
    fn calloc(&self, n: usize, size: usize) -> *mut u8 {
        SIM.calloc(n, size)
    }
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: the caller's promise.
        unsafe { SIM.realloc(p, size) }
    }
    unsafe fn reallocarray(&self, p: *mut u8, n: usize, size: usize) -> *mut u8 {
        // SAFETY: the caller's promise.
        unsafe { SIM.reallocarray(p, n, size) }
    }
    fn memalign(&self, align: usize, size: usize) -> *mut u8 {
        SIM.memalign(align, size)
    }
    fn posix_memalign(&self, align: usize, size: usize) -> (*mut u8, i32) {
        let mut p = std::ptr::null_mut();
        let r = SIM.posix_memalign(&mut p, align, size);
        (p, r)
    }
    fn aligned_alloc(&self, align: usize, size: usize) -> *mut u8 {
        SIM.aligned_alloc(align, size)
    }
    fn valloc(&self, size: usize) -> *mut u8 {
        SIM.valloc(size)
    }
    fn pvalloc(&self, size: usize) -> *mut u8 {
        SIM.pvalloc(size)
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: the caller's promise.
        unsafe { SIM.free(p) }
    }
    fn malloc_trim(&self, pad: usize) {
        SIM.malloc_trim(pad);
    }
}

/// One block's place: its pointer, the operations it has seen, its size, its thread.
#[repr(C)]
struct Slot {
    ptr: AtomicUsize,
    count: AtomicU64,
    size: AtomicU64,
    thread: AtomicU64,
}

/// Per replay thread: what it called.
#[derive(Default)]
struct ThreadReport {
    calls: [u64; 16],
    requested: u64,
    /// frees of blocks last given out by thread index i
    cross: Vec<u64>,
    peak_live: u64,
}

/// The program calls, in `Kind::ALL`'s order: a replay thread counts its calls by index.
fn program_kinds() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().filter(|k| !k.is_kernel() && *k != Kind::Rss)
}

/// Write one byte in each page of a fresh block, as the program would have used it.
///
/// # Safety
/// `p` is a live block of at least `size` bytes (or null).
unsafe fn touch(p: *mut u8, size: u64) {
    if p.is_null() || size == 0 {
        return;
    }
    let mut at = 0;
    while at < size as usize {
        // SAFETY: inside the block.
        unsafe { p.add(at).write_volatile(1) };
        at += 4096;
    }
    // SAFETY: the block's last byte.
    unsafe { p.add(size as usize - 1).write_volatile(1) };
}

fn run_ops(calls: &dyn Calls, m: &Mapped, t: usize, slots: &[Slot], serial: bool) -> ThreadReport {
    let ops = m.ops(t);
    let mut rep = ThreadReport { cross: vec![0; m.threads.len()], ..Default::default() };
    let mut live = 0u64;
    let me = t as u64;
    for (i, op) in ops.iter().enumerate() {
        if i % 32768 == 32767 {
            m.release(t, i);
        }
        let Op { kind, slot, a, b, wait } = *op;
        let kind = Kind::from_u8(kind as u8).unwrap_or(Kind::Free);
        let s = (slot != NO_SLOT).then(|| &slots[slot as usize]);
        if let Some(s) = s {
            let mut spins = 0u32;
            while s.count.load(Ordering::Acquire) < wait {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        let idx = program_kinds().position(|k| k == kind).unwrap_or(0);
        rep.calls[idx] += 1;
        let old = s.map_or(std::ptr::null_mut(), |s| s.ptr.load(Ordering::Relaxed) as *mut u8);
        let old_size = s.map_or(0, |s| s.size.load(Ordering::Relaxed));
        let (a, b) = (a as usize, b as usize);
        let (p, size) = match kind {
            Kind::Malloc => (calls.malloc(a), a),
            Kind::Calloc => (calls.calloc(a, b), a.saturating_mul(b)),
            Kind::Realloc => {
                // SAFETY: the slot holds null or its block, live.
                (unsafe { calls.realloc(old, a) }, a)
            }
            Kind::Reallocarray => {
                // SAFETY: as above.
                (unsafe { calls.reallocarray(old, a, b) }, a.saturating_mul(b))
            }
            Kind::Memalign => (calls.memalign(a, b), b),
            Kind::PosixMemalign => (calls.posix_memalign(a, b).0, b),
            Kind::AlignedAlloc => (calls.aligned_alloc(a, b), b),
            Kind::Valloc => (calls.valloc(a), a),
            Kind::Pvalloc => (calls.pvalloc(a), a),
            Kind::MallocTrim => {
                calls.malloc_trim(a);
                (std::ptr::null_mut(), 0)
            }
            _ => {
                // SAFETY: the slot's block (or null), freed once: the workload frees each
                // block once, after every other operation on it.
                unsafe { calls.free(old) };
                (std::ptr::null_mut(), 0)
            }
        };
        if let Some(s) = s {
            let owner = s.thread.load(Ordering::Relaxed);
            if kind == Kind::Free && !old.is_null() && owner != me {
                rep.cross[owner as usize] += 1;
            }
            let keep_old = matches!(kind, Kind::Realloc | Kind::Reallocarray) && p.is_null() && size != 0;
            if !keep_old {
                if !p.is_null() {
                    rep.requested += size as u64;
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { touch(p, size as u64) };
                }
                if serial {
                    live = live - old_size + if p.is_null() { 0 } else { size as u64 };
                    rep.peak_live = rep.peak_live.max(live);
                }
                s.ptr.store(p as usize, Ordering::Relaxed);
                s.size.store(if p.is_null() { 0 } else { size as u64 }, Ordering::Relaxed);
                s.thread.store(me, Ordering::Relaxed);
            }
            s.count.store(wait + 1, Ordering::Release);
        } else if !p.is_null() {
            // The trace's call failed, this one did not: give it back.
            rep.requested += size as u64;
            // SAFETY: a fresh block of ours.
            unsafe { calls.free(p) };
        }
    }
    rep
}

/// `ptalloc replay-worker WORKLOAD --kernel K`: run a workload, print what happened.
pub fn worker(wl: &Path, kernel: Kernel) -> Result<i32, String> {
    let m = Mapped::open(wl)?;
    // The slots come from the kernel, not from the allocator under test.
    let bytes = (m.slots.max(1) * std::mem::size_of::<Slot>()).div_ceil(4096) * 4096;
    // SAFETY: a fresh anonymous mapping, zero-filled: every Slot starts null, 0, 0, 0.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err("replay: cannot map the slot table".into());
    }
    // SAFETY: the mapping holds m.slots zeroed Slots (atomics of integers: zero is valid).
    let slots: &[Slot] = unsafe { std::slice::from_raw_parts(base as *const Slot, m.slots) };
    let sim = Sim;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let c = CFunctions { page };
    let calls: &dyn Calls = if kernel == Kernel::Sim { &sim } else { &c };
    let serial = m.threads.len() == 1;
    let barrier = Barrier::new(m.threads.len() + 2);
    let done = AtomicBool::new(false);
    let (reports, time_ns, rss_start, samples) = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..m.threads.len())
            .map(|t| {
                let (m, barrier) = (&m, &barrier);
                sc.spawn(move || {
                    barrier.wait();
                    run_ops(calls, m, t, slots, serial)
                })
            })
            .collect();
        // Resident memory about every millisecond, into room reserved before the start.
        let sampler = sc.spawn(|| {
            let mut samples: Vec<(u64, u64)> = Vec::with_capacity(4096);
            let mut every = std::time::Duration::from_millis(1);
            barrier.wait();
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if samples.len() == samples.capacity() {
                    // Keep every other sample, and sample half as often.
                    let kept: Vec<(u64, u64)> = samples.iter().step_by(2).copied().collect();
                    samples.clear();
                    samples.extend(kept);
                    every *= 2;
                }
                samples.push((start.elapsed().as_nanos() as u64, crate::trace::resident_bytes()));
                std::thread::sleep(every);
            }
            samples
        });
        let rss_start = crate::trace::resident_bytes();
        let start = Instant::now();
        barrier.wait();
        let reports: Vec<ThreadReport> =
            handles.into_iter().map(|h| h.join().expect("replay thread")).collect();
        let time = start.elapsed().as_nanos() as u64;
        done.store(true, Ordering::Relaxed);
        let samples = sampler.join().expect("sampler thread");
        (reports, time, rss_start, samples)
    });
    let mut out = String::new();
    let _ = writeln!(out, "time_ns {time_ns}");
    let _ = writeln!(out, "rss_start {rss_start}");
    // VmHWM, not getrusage's ru_maxrss: that one keeps the peak of the process image before
    // exec, here the command's own while it read the trace.
    let mut peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        })
        .flatten()
        .unwrap_or(0)
        * 1024;
    if kernel == Kernel::Sim {
        let mach = SIM.kernel().machine();
        let c = mach.counters();
        let _ = writeln!(out, "sim_faults {}", c.faults);
        peak = c.hiwater_rss as u64 * page as u64;
        let _ = writeln!(out, "rss_start 0");
        let mut maps = String::new();
        let _ = mach.write_maps(&mut maps);
        for l in maps.lines() {
            let _ = writeln!(out, "map {l}");
        }
    }
    let _ = writeln!(out, "rss_peak {peak}");
    let mut totals = [0u64; 16];
    for r in &reports {
        for (t, v) in totals.iter_mut().zip(r.calls) {
            *t += v;
        }
    }
    for (k, n) in program_kinds().zip(totals) {
        if n > 0 {
            let _ = writeln!(out, "calls.{} {n}", k.name());
        }
    }
    let _ = writeln!(out, "requested {}", reports.iter().map(|r| r.requested).sum::<u64>());
    for (t, r) in reports.iter().enumerate() {
        for (owner, n) in r.cross.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = writeln!(out, "cross {} {} {n}", m.threads[owner].0, m.threads[t].0);
        }
    }
    if serial {
        let _ = writeln!(out, "peak_live {}", reports[0].peak_live);
    }
    if kernel == Kernel::Linux {
        for (t, b) in samples {
            let _ = writeln!(out, "rss {t} {b}");
        }
    }
    print!("{out}");
    Ok(0)
}
