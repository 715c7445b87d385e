//! Whole-process behaviour on the real kernel, each case in a fresh child process (this
//! binary re-executed with `--child NAME`): where memory comes from (brk below the mmap
//! threshold, mmap above), glibc's dynamic threshold, memory going back to the kernel,
//! resource limits, corruption reports, fork, thread exit, and the glibc environment knobs.
//!
//! testkit's harness (`harness = false`) runs them: cases must not share a process, since
//! each one looks at process-wide state (the break, RSS, limits) or dies on purpose.

#[global_allocator]
static GLOBAL: ptalloc::PtAlloc = ptalloc::PtAlloc;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptalloc::{linux, M_MMAP_THRESHOLD, M_MXFAST, M_TOP_PAD, M_TRIM_THRESHOLD};
use ptalloc_testkit::harness::{self, Test};

type CaseFn = fn() -> Result<(), String>;

enum Expect {
    Success,
    /// The child aborts (SIGABRT) after printing exactly this line on stderr.
    Abort(&'static str),
}

struct Case {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    expect: Expect,
    run: CaseFn,
}

const CASES: &[Case] = &[
    Case {
        name: "brk_below_threshold_mmap_above",
        env: &[],
        expect: Expect::Success,
        run: brk_below_threshold_mmap_above,
    },
    Case { name: "dynamic_threshold", env: &[], expect: Expect::Success, run: dynamic_threshold },
    Case {
        name: "large_free_returns_memory",
        env: &[],
        expect: Expect::Success,
        run: large_free_returns_memory,
    },
    Case {
        name: "malloc_trim_releases_free_pages",
        env: &[],
        expect: Expect::Success,
        run: malloc_trim_releases_free_pages,
    },
    Case {
        name: "calloc_leaves_fresh_pages_untouched",
        env: &[],
        expect: Expect::Success,
        run: calloc_leaves_fresh_pages_untouched,
    },
    Case {
        name: "rlimit_as_fails_then_recovers",
        env: &[],
        expect: Expect::Success,
        run: rlimit_as_fails_then_recovers,
    },
    Case {
        name: "rlimit_data_falls_back_to_mmap",
        env: &[],
        expect: Expect::Success,
        run: rlimit_data_falls_back_to_mmap,
    },
    Case { name: "foreign_sbrk", env: &[], expect: Expect::Success, run: foreign_sbrk },
    Case {
        name: "fork_while_threads_allocate",
        env: &[],
        expect: Expect::Success,
        run: fork_while_threads_allocate,
    },
    Case {
        name: "fork_from_signal_handler",
        env: &[],
        expect: Expect::Success,
        run: fork_from_signal_handler,
    },
    Case {
        name: "thread_exit_returns_caches",
        env: &[],
        expect: Expect::Success,
        run: thread_exit_returns_caches,
    },
    Case {
        name: "remote_free_is_cached_then_returns_to_its_arena",
        env: &[],
        expect: Expect::Success,
        run: remote_free_is_cached_then_returns_to_its_arena,
    },
    Case { name: "introspection", env: &[], expect: Expect::Success, run: introspection },
    Case {
        name: "glibc_tunables",
        env: &[(
            "GLIBC_TUNABLES",
            "glibc.malloc.mmap_threshold=4096:glibc.malloc.tcache_count=0:glibc.malloc.perturb=170",
        )],
        expect: Expect::Success,
        run: glibc_tunables,
    },
    Case {
        name: "malloc_env_aliases",
        env: &[("MALLOC_MMAP_THRESHOLD_", "0x2000"), ("MALLOC_TOP_PAD_", "0")],
        expect: Expect::Success,
        run: malloc_env_aliases,
    },
    Case {
        name: "arena_max_limits_arenas",
        env: &[("MALLOC_ARENA_MAX", "2")],
        expect: Expect::Success,
        run: arena_max_limits_arenas,
    },
    Case {
        name: "checker_sees_bad_boundary_tag",
        env: &[],
        expect: Expect::Success,
        run: checker_sees_bad_boundary_tag,
    },
    Case {
        name: "checker_sees_binned_chunk_in_use",
        env: &[],
        expect: Expect::Success,
        run: checker_sees_binned_chunk_in_use,
    },
    Case {
        name: "double_free_tcache",
        env: &[],
        expect: Expect::Abort("free(): double free detected in tcache 2"),
        run: double_free_small,
    },
    Case {
        name: "double_free_tcache_largest_bin",
        env: &[],
        expect: Expect::Abort("free(): double free detected in tcache 2"),
        run: double_free_largest_bin,
    },
    Case {
        name: "double_free_fasttop",
        env: &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")],
        expect: Expect::Abort("double free or corruption (fasttop)"),
        run: double_free_small,
    },
    Case {
        name: "double_free_normal",
        env: &[],
        expect: Expect::Abort("double free or corruption (!prev)"),
        run: double_free_normal,
    },
    Case {
        name: "double_free_larger_block_next_to_top",
        env: &[],
        expect: Expect::Abort("double free or corruption (top)"),
        run: double_free_larger_next_to_top,
    },
    Case {
        name: "larger_blocks_come_back_to_their_thread",
        env: &[],
        expect: Expect::Success,
        run: larger_blocks_come_back_to_their_thread,
    },
    Case {
        name: "small_block_runs_grow_the_cache_until_the_heap_grows",
        env: &[],
        expect: Expect::Success,
        run: small_block_runs_grow_the_cache_until_the_heap_grows,
    },
    Case {
        name: "cached_blocks_serve_a_request_before_the_heap_grows",
        env: &[],
        expect: Expect::Success,
        run: cached_blocks_serve_a_request_before_the_heap_grows,
    },
    Case {
        name: "cached_blocks_stay_cached_when_the_program_sets_counts",
        env: &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=100")],
        expect: Expect::Success,
        run: cached_blocks_stay_cached_when_the_program_sets_counts,
    },
    Case {
        name: "a_run_of_larger_requests_carves_the_last_remainder",
        env: &[],
        expect: Expect::Success,
        run: a_run_of_larger_requests_carves_the_last_remainder,
    },
    Case {
        name: "blocks_another_thread_freed_come_back_to_the_owners_cache",
        env: &[],
        expect: Expect::Success,
        run: blocks_another_thread_freed_come_back_to_the_owners_cache,
    },
    Case {
        name: "double_free_of_a_block_another_thread_freed",
        env: &[],
        expect: Expect::Abort("free(): double free detected in tcache 2"),
        run: double_free_of_a_block_another_thread_freed,
    },
    Case {
        name: "small_block_runs_do_not_grow_the_cache_when_the_program_sets_counts",
        env: &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7")],
        expect: Expect::Success,
        run: small_block_runs_do_not_grow_the_cache_when_the_program_sets_counts,
    },
    Case {
        name: "larger_blocks_are_not_kept_when_the_program_sets_counts",
        env: &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7")],
        expect: Expect::Success,
        run: larger_blocks_are_not_kept_when_the_program_sets_counts,
    },
    Case {
        name: "invalid_pointer",
        env: &[],
        expect: Expect::Abort("free(): invalid pointer"),
        run: invalid_pointer,
    },
    Case { name: "invalid_size", env: &[], expect: Expect::Abort("free(): invalid size"), run: invalid_size },
    Case {
        name: "realloc_invalid_pointer",
        env: &[],
        expect: Expect::Abort("realloc(): invalid pointer"),
        run: realloc_invalid_pointer,
    },
    Case {
        name: "corrupted_top_size",
        env: &[],
        expect: Expect::Abort("malloc(): corrupted top size"),
        run: corrupted_top_size,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 3 && args[1] == "--child" {
        let case = CASES.iter().find(|c| c.name == args[2]).expect("unknown case");
        match (case.run)() {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("{}: {e}", case.name);
                std::process::exit(1);
            }
        }
    }
    let exe = std::env::current_exe().unwrap();
    let tests = CASES.iter().map(|case| {
        let exe = exe.clone();
        Test::new(case.name, move || {
            let mut cmd = Command::new(&exe);
            cmd.arg("--child").arg(case.name).stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.envs(case.env.iter().copied());
            run_child(&mut cmd, &case.expect)
        })
    });
    // One case at a time: they measure their process's RSS and race deadlines.
    harness::run_one_at_a_time(tests.collect());
}

fn run_child(cmd: &mut Command, expect: &Expect) -> Result<(), String> {
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("timed out (deadlock?)".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    match expect {
        Expect::Success if status.success() => Ok(()),
        Expect::Success => Err(format!("child failed ({status}):\n{stdout}{stderr}")),
        Expect::Abort(line) => {
            if status.signal() != Some(libc::SIGABRT) {
                return Err(format!("expected SIGABRT, got {status}:\n{stdout}{stderr}"));
            }
            if stderr != format!("{line}\n") {
                return Err(format!("expected stderr {line:?}, got {stderr:?}"));
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------------- helpers

/// The heap checker's verdict on every arena.
fn heap_ok() -> Result<(), String> {
    linux().check_heap().map(|_| ()).map_err(|e| e.to_string())
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// The kernel's `start_brk` (field 47 of /proc/self/stat): where the brk heap begins.
fn start_brk() -> usize {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    // Fields from 3 on; start_brk is field 47.
    after_comm.split_whitespace().nth(47 - 3).unwrap().parse().unwrap()
}

fn current_brk() -> usize {
    // SAFETY: sbrk(0) only reads the break.
    unsafe { libc::sbrk(0) as usize }
}

fn in_brk_heap(p: *mut u8) -> bool {
    let a = p as usize;
    a >= start_brk() && a < current_brk()
}

fn page_size() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Resident set size in bytes (second field of /proc/self/statm), read without allocating
/// so that measuring does not put a small chunk at the top of the heap.
fn rss() -> usize {
    let mut buf = [0u8; 128];
    // SAFETY: reading a procfs file into a stack buffer.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY);
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = &buf[..n.max(0) as usize];
    let field = text.split(|&b| b == b' ').nth(1).unwrap();
    let pages = field.iter().fold(0usize, |acc, &d| acc * 10 + (d - b'0') as usize);
    pages * page_size()
}

/// Leave the main arena's top chunk nearly empty (by allocating most of it), so that the
/// next request that top cannot serve shows where it really comes from.
fn exhaust_top() -> *mut u8 {
    let m = linux();
    let k = m.mallinfo2().keepcost;
    m.malloc(k.saturating_sub(64))
}

fn touch(p: *mut u8, len: usize) {
    let mut off = 0;
    while off < len {
        // SAFETY: inside a block of `len` bytes.
        unsafe { p.add(off).write_volatile(1) };
        off += 4096;
    }
}

const MIB: usize = 1 << 20;

// ------------------------------------------------------------------------- cases

fn brk_below_threshold_mmap_above() -> Result<(), String> {
    let m = linux();
    let small: Vec<*mut u8> = (1..200).map(|i| m.malloc(i * 97)).collect();
    for &p in &small {
        check(in_brk_heap(p), || format!("small block {p:?} outside the brk heap"))?;
    }
    // With top too small for them: just below the threshold grows the heap, at the
    // threshold gets its own mapping.
    exhaust_top();
    let below = m.malloc(128 * 1024 - 100);
    check(in_brk_heap(below), || "a request just below 128 KiB must come from the heap".into())?;
    exhaust_top();
    let above = m.malloc(128 * 1024);
    check(!in_brk_heap(above), || "a request of 128 KiB must be mmapped".into())?;
    // An mmapped chunk is whole pages, with 16 bytes of header.
    // SAFETY: live block.
    let usable = unsafe { m.usable_size(above) };
    check(usable == 33 * 4096 - 16, || format!("mmapped usable size {usable}"))?;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let a = above as usize;
    let in_anon_mapping = maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap();
        let (s, e) = range.split_once('-').unwrap();
        let (s, e) = (usize::from_str_radix(s, 16).unwrap(), usize::from_str_radix(e, 16).unwrap());
        s <= a && a < e && !l.contains("[heap]")
    });
    check(in_anon_mapping, || "the large block is not in its own anonymous mapping".into())?;
    for p in small {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    // SAFETY: live blocks.
    unsafe {
        m.free(below);
        m.free(above);
    }
    heap_ok()
}

fn dynamic_threshold() -> Result<(), String> {
    let m = linux();
    check(m.stats().mmap_threshold == 128 * 1024, || "default threshold".into())?;
    let p = m.malloc(200 * 1024);
    check(!in_brk_heap(p), || "200 KiB starts out mmapped".into())?;
    // SAFETY: live block.
    unsafe { m.free(p) };
    // Freeing it raises the threshold to its chunk size (page-rounded) ...
    let t = m.stats().mmap_threshold;
    check(t == 200 * 1024 + 4096, || format!("threshold after free: {t}"))?;
    // ... so the same request now comes from the heap.
    let q = m.malloc(200 * 1024);
    check(in_brk_heap(q), || "200 KiB should now come from the brk heap".into())?;
    // Blocks above 32 MiB never move the threshold.
    let big = m.malloc(40 * MIB);
    // SAFETY: live blocks.
    unsafe {
        m.free(big);
        m.free(q);
    }
    check(m.stats().mmap_threshold == t, || "a 40 MiB free must not raise the threshold".into())?;
    // Setting the threshold by hand turns the dynamic rule off.
    check(m.mallopt(M_MMAP_THRESHOLD, 256 * 1024) == 1, || "mallopt".into())?;
    let r = m.malloc(1024 * 1024);
    // SAFETY: live block.
    unsafe { m.free(r) };
    check(m.stats().mmap_threshold == 256 * 1024, || "threshold moved after mallopt".into())
}

fn large_free_returns_memory() -> Result<(), String> {
    let m = linux();
    // Nothing below allocates between the blocks and the free: a small chunk left at the
    // top of the heap would keep the top from being trimmed (as with glibc).
    let heap_start = start_brk();
    let mut blocks = Vec::with_capacity(640);
    let base = rss();
    // 64 MiB in 100 KB blocks: all from the brk heap, all touched.
    for _ in 0..640 {
        let b = m.malloc(100_000);
        check(b as usize >= heap_start && (b as usize) < current_brk(), || {
            "blocks below the threshold come from brk".into()
        })?;
        touch(b, 100_000);
        blocks.push(b);
    }
    let grown = rss();
    check(grown > base + 60 * MIB, || format!("RSS {grown} did not grow from {base}"))?;
    let brk_grown = current_brk();
    for &b in blocks.iter().rev() {
        // SAFETY: live blocks.
        unsafe { m.free(b) };
    }
    let after = rss();
    check(after < base + 8 * MIB, || format!("RSS {after} did not drop back towards {base}"))?;
    check(current_brk() < brk_grown - 60 * MIB, || "the break did not move down".into())?;
    // Mmapped blocks are unmapped on free.
    let big: Vec<*mut u8> = (0..16).map(|_| m.malloc(4 * MIB)).collect();
    for &b in &big {
        touch(b, 4 * MIB);
    }
    let with_big = rss();
    for b in big {
        // SAFETY: live blocks.
        unsafe { m.free(b) };
    }
    check(rss() + 60 * MIB < with_big, || "freeing mmapped blocks did not lower RSS".into())
}

fn malloc_trim_releases_free_pages() -> Result<(), String> {
    let m = linux();
    check(m.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1, || "mallopt".into())?;
    let blocks: Vec<*mut u8> = (0..512).map(|_| m.malloc(64 * 1024)).collect();
    let guard = m.malloc(100);
    for &b in &blocks {
        touch(b, 64 * 1024);
    }
    // Free all but every 64th block: large free chunks stay inside the heap.
    for (i, &b) in blocks.iter().enumerate() {
        if i % 64 != 0 {
            // SAFETY: live blocks.
            unsafe { m.free(b) };
        }
    }
    let before = rss();
    check(m.malloc_trim(0) == 1, || "malloc_trim reported nothing released".into())?;
    let after = rss();
    check(after + 24 * MIB < before, || format!("RSS {before} -> {after}: pages not returned"))?;
    // The memory is still usable afterwards, and reads as zero where it was dropped.
    let again = m.malloc(64 * 1024);
    touch(again, 64 * 1024);
    // SAFETY: live blocks.
    unsafe {
        m.free(again);
        m.free(guard);
    }
    heap_ok()
}

fn calloc_leaves_fresh_pages_untouched() -> Result<(), String> {
    let m = linux();
    check(m.mallopt(M_MMAP_THRESHOLD, 512 * MIB as i32) == 1, || "mallopt".into())?;
    let before = rss();
    // Served from a freshly grown brk heap: the kernel's zero pages need no clearing.
    let p = m.calloc(1, 256 * MIB);
    check(!p.is_null() && in_brk_heap(p), || "calloc from the heap".into())?;
    let after = rss();
    check(after < before + 16 * MIB, || format!("calloc touched fresh memory: RSS {before} -> {after}"))?;
    // SAFETY: inside the block.
    let zero = (0..256 * MIB).step_by(4096 * 97).all(|i| unsafe { *p.add(i) } == 0);
    check(zero, || "calloc memory not zero".into())?;
    // Reused memory is cleared: dirty a block, free it, calloc it back.
    let d = m.malloc(5000);
    // SAFETY: inside the block.
    unsafe { core::ptr::write_bytes(d, 0xff, 5000) };
    // SAFETY: live block.
    unsafe { m.free(d) };
    let z = m.calloc(5000, 1);
    // SAFETY: inside the block.
    let zero = (0..5000).all(|i| unsafe { *z.add(i) } == 0);
    check(zero, || "calloc returned dirty memory".into())
}

fn rlimit_as_fails_then_recovers() -> Result<(), String> {
    let m = linux();
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let vm = statm.split_whitespace().next().unwrap().parse::<usize>().unwrap() * page_size();
    let lim = libc::rlimit { rlim_cur: (vm + 256 * MIB) as u64, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setting our own limit.
    check(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) } == 0, || "setrlimit".into())?;
    let huge = m.malloc(1 << 30);
    check(huge.is_null() && ptalloc::errno() == libc::ENOMEM, || {
        format!("1 GiB under RLIMIT_AS: {huge:?} errno {}", ptalloc::errno())
    })?;
    let c = m.calloc(1 << 20, 1 << 10);
    check(c.is_null() && ptalloc::errno() == libc::ENOMEM, || "calloc under RLIMIT_AS".into())?;
    // Fill the address space with mid-size blocks until malloc says no.
    let mut held = Vec::new();
    loop {
        let p = m.malloc(1 << 20);
        if p.is_null() {
            check(ptalloc::errno() == libc::ENOMEM, || "errno after exhaustion".into())?;
            break;
        }
        held.push(p);
        check(held.len() < 10_000, || "RLIMIT_AS never hit".into())?;
    }
    check(held.len() > 100, || "too few blocks before exhaustion".into())?;
    // A failed realloc leaves the block intact.
    let keep = m.malloc(64);
    // SAFETY: live block.
    unsafe { core::ptr::write_bytes(keep, 0x5a, 64) };
    // SAFETY: live block.
    let r = unsafe { m.realloc(keep, 512 * MIB) };
    check(r.is_null(), || "realloc beyond the limit succeeded".into())?;
    // SAFETY: the untouched old block.
    check((0..64).all(|i| unsafe { *keep.add(i) } == 0x5a), || "failed realloc damaged the block".into())?;
    for p in held.drain(..) {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    // Memory is back: allocation works again.
    let again: Vec<*mut u8> = (0..50).map(|_| m.malloc(1 << 20)).collect();
    check(again.iter().all(|p| !p.is_null()), || "no recovery after freeing".into())?;
    heap_ok()
}

fn rlimit_data_falls_back_to_mmap() -> Result<(), String> {
    let m = linux();
    let first = m.malloc(100);
    check(in_brk_heap(first), || "heap starts on brk".into())?;
    // A soft RLIMIT_DATA of 0 stops brk from growing; anonymous mmap still works (Linux lets
    // it through when the soft limit is 0, for Valgrind's sake).
    let lim = libc::rlimit { rlim_cur: 0, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setting our own limit.
    check(unsafe { libc::setrlimit(libc::RLIMIT_DATA, &lim) } == 0, || "setrlimit".into())?;
    let before = m.stats();
    let blocks: Vec<*mut u8> = (0..20_000).map(|i| m.malloc(16 + i % 1000)).collect();
    check(blocks.iter().all(|p| !p.is_null()), || "allocation failed instead of falling back".into())?;
    let outside = blocks.iter().filter(|&&p| !in_brk_heap(p)).count();
    check(outside > 10_000, || format!("only {outside} blocks outside the brk heap"))?;
    let after = m.stats();
    check(after.failed_calls > before.failed_calls, || "brk never failed?".into())?;
    check(after.mmap_calls > before.mmap_calls, || "no mmap fallback".into())?;
    for p in blocks {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    heap_ok()
}

fn foreign_sbrk() -> Result<(), String> {
    let m = linux();
    let mut blocks = Vec::new();
    for round in 0..20 {
        for i in 0..500 {
            blocks.push(m.malloc(64 + (i * 13) % 3000));
        }
        // Someone else moves the break: the allocator must not merge across the gap.
        // SAFETY: growing the break by a page we never give back.
        let gap = unsafe { libc::sbrk(4096 * (1 + round % 3)) };
        check(gap as isize != -1, || "sbrk".into())?;
    }
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: live blocks of at least 64 bytes.
        unsafe { core::ptr::write_bytes(p, i as u8, 64) };
    }
    heap_ok()?;
    for p in blocks {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    heap_ok()
}

fn fork_while_threads_allocate() -> Result<(), String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let m = linux();
                let mut held: Vec<*mut u8> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let p = m.malloc(16 + (i * 7 + t) % 5000);
                    held.push(p);
                    if held.len() > 200 {
                        let q = held.swap_remove((i * 31) % held.len());
                        // SAFETY: live block.
                        unsafe { m.free(q) };
                    }
                    i += 1;
                }
                for p in held {
                    // SAFETY: live blocks.
                    unsafe { m.free(p) };
                }
            })
        })
        .collect();
    for _ in 0..200 {
        // SAFETY: the child only uses the allocator and _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let m = linux();
            let ok = (0..1000).all(|i| {
                let p = m.malloc(i % 3000);
                // SAFETY: live block.
                unsafe { m.free(p) };
                !p.is_null()
            }) && m.check_heap().is_ok();
            // SAFETY: leaving the child without running the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        check(pid > 0, || "fork failed".into())?;
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        check(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, || {
            format!("child status {status:#x}")
        })?;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().map_err(|_| "worker panicked".to_string())?;
    }
    heap_ok()
}

static FORKS_DONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn fork_in_handler(_: libc::c_int) {
    // SAFETY: fork and _exit are async-signal-safe; the child touches nothing else.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(0);
        }
        if pid > 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            FORKS_DONE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn fork_from_signal_handler() -> Result<(), String> {
    // Single-threaded: the handler's fork may interrupt malloc anywhere, and must not wait
    // for a lock its own thread holds.
    let m = linux();
    // SAFETY: installing a handler and an interval timer for this process.
    unsafe {
        libc::signal(libc::SIGALRM, fork_in_handler as *const () as libc::sighandler_t);
        let t = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 2000 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 2000 },
        };
        libc::setitimer(libc::ITIMER_REAL, &t, core::ptr::null_mut());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held: Vec<*mut u8> = Vec::with_capacity(1000);
    let mut i = 0usize;
    while FORKS_DONE.load(std::sync::atomic::Ordering::Relaxed) < 100 && Instant::now() < deadline {
        held.push(m.malloc(16 + i % 2000));
        if held.len() == 1000 {
            for p in held.drain(..) {
                // SAFETY: live blocks.
                unsafe { m.free(p) };
            }
        }
        i += 1;
    }
    // SAFETY: stopping the timer.
    unsafe {
        let zero = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 0 },
        };
        libc::setitimer(libc::ITIMER_REAL, &zero, core::ptr::null_mut());
    }
    check(FORKS_DONE.load(std::sync::atomic::Ordering::Relaxed) >= 100, || {
        "forks from the handler stalled".into()
    })?;
    heap_ok()
}

fn thread_exit_returns_caches() -> Result<(), String> {
    let m = linux();
    let churn = |n: usize| {
        for _ in 0..n / 8 {
            let ts: Vec<_> = (0..8)
                .map(|t| {
                    std::thread::spawn(move || {
                        let m = linux();
                        // Fill the thread cache in many size classes, keep nothing.
                        let ps: Vec<*mut u8> = (0..200).map(|i| m.malloc(16 * (1 + (i + t) % 60))).collect();
                        for p in ps {
                            // SAFETY: live blocks.
                            unsafe { m.free(p) };
                        }
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
        }
    };
    churn(400);
    let base = m.mallinfo2();
    let base_rss = rss();
    churn(4000);
    let after = m.mallinfo2();
    let grew = after.uordblks as isize - base.uordblks as isize;
    // Without the thread-exit hook each thread would strand a cache of ~400 chunks (tens
    // of KiB); with it, in-use bytes stay where they were.
    check(grew < 256 * 1024, || format!("in-use bytes grew by {grew} over 4000 threads"))?;
    check(rss() < base_rss + 32 * MIB, || format!("RSS grew from {base_rss} to {}", rss()))?;
    let arenas = m.stats().arenas;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    check(arenas <= 8 * cores.max(2) + 1, || format!("{arenas} arenas for {cores} cores"))?;
    heap_ok()
}

/// A block the main thread allocated and another thread (on its own arena) freed is cached
/// by that thread, as glibc's thread cache does, so its next malloc of the size gets it; at
/// the thread's exit its cache goes back to the arenas, and the main thread gets the block
/// again.
fn remote_free_is_cached_then_returns_to_its_arena() -> Result<(), String> {
    let m = linux();
    let given = m.malloc(24) as usize;
    check(in_brk_heap(given as *mut u8), || "the main thread's block is not in the brk heap".into())?;
    let (reused, own_heap) = std::thread::spawn(move || {
        let m = linux();
        // The thread's first allocation gives it a cache and an arena of its own.
        let own = m.malloc(200);
        let own_heap = !in_brk_heap(own);
        let mut got = vec![own];
        // SAFETY: the main thread handed this block over and no longer uses it.
        unsafe { m.free(given as *mut u8) };
        got.push(m.malloc(24));
        let reused = got.iter().any(|&p| p as usize == given);
        for p in got {
            // SAFETY: live blocks of this thread.
            unsafe { m.free(p) };
        }
        (reused, own_heap)
    })
    .join()
    .map_err(|_| "thread panicked".to_string())?;
    check(own_heap, || "the second thread was not given an arena of its own".into())?;
    check(reused, || "the thread did not reuse the block it freed".into())?;
    let mut got = Vec::new();
    let mut back = false;
    for _ in 0..200 {
        let p = m.malloc(24);
        got.push(p);
        if p as usize == given {
            back = true;
            break;
        }
    }
    for p in got {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    check(back, || "the block never came back to the main thread".into())?;
    heap_ok()
}

fn introspection() -> Result<(), String> {
    let m = linux();
    let before = m.mallinfo2();
    let blocks: Vec<*mut u8> = (0..100).map(|_| m.malloc(1000)).collect();
    let big = m.malloc(MIB);
    let mid = m.mallinfo2();
    check(mid.uordblks >= before.uordblks + 100 * 1000, || format!("uordblks {before:?} -> {mid:?}"))?;
    check(mid.hblks == before.hblks + 1 && mid.hblkhd >= before.hblkhd + MIB, || "hblks/hblkhd".into())?;
    check(mid.arena == mid.uordblks + mid.fordblks, || "arena = in use + free".into())?;
    for p in blocks {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    // SAFETY: live block.
    unsafe { m.free(big) };
    let after = m.mallinfo2();
    check(after.hblks == before.hblks && after.fordblks > mid.fordblks, || format!("after free: {after:?}"))?;
    check(after.keepcost > 0 && after.ordblks >= 1, || "keepcost/ordblks".into())?;

    // In-use accounting: 1000 blocks of 10 KiB come and go; the peak remembers them.
    let s0 = m.stats();
    let held: Vec<*mut u8> = (0..1000).map(|_| m.malloc(10 * 1024)).collect();
    let s1 = m.stats();
    check(s1.in_use >= s0.in_use + 1000 * 10 * 1024, || format!("in_use {} -> {}", s0.in_use, s1.in_use))?;
    for p in held {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    let s2 = m.stats();
    // Less what the thread keeps for its next mallocs of the size (at most 256 KiB).
    check(s2.in_use + 1000 * 10 * 1024 <= s1.in_use + 256 * 1024, || {
        format!("in_use after free {}", s2.in_use)
    })?;
    check(s2.peak_in_use + 64 * 1024 >= s1.in_use, || {
        format!("peak {} below {}", s2.peak_in_use, s1.in_use)
    })?;
    check(s2.threads_seen >= 1, || "threads_seen".into())?;

    let mut text = String::new();
    m.write_malloc_stats(&mut text);
    let lines: Vec<&str> = text.lines().collect();
    check(lines[0] == "Arena 0:", || format!("malloc_stats: {text}"))?;
    check(lines[1].starts_with("system bytes     = ") && lines[1].len() == 29, || {
        format!("malloc_stats: {text}")
    })?;
    check(text.contains("Total (incl. mmap):\nsystem bytes     = "), || text.clone())?;
    check(text.contains("\nmax mmap regions = ") && text.contains("\nmax mmap bytes   = "), || text.clone())?;

    let mut xml = String::new();
    check(m.malloc_info(1, &mut xml) == Err(libc::EINVAL), || "malloc_info options".into())?;
    m.malloc_info(0, &mut xml).map_err(|e| format!("malloc_info: {e}"))?;
    check(xml.starts_with("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n"), || xml.clone())?;
    check(xml.ends_with("</malloc>\n") && xml.contains("<total type=\"mmap\" count=\""), || xml.clone())?;
    check(xml.matches("<heap nr=").count() == xml.matches("</heap>").count(), || xml.clone())?;

    check(m.mallopt(M_MXFAST, 161) == 0 && m.mallopt(M_MXFAST, 64) == 1, || "mallopt M_MXFAST".into())?;
    check(m.mallopt(M_TOP_PAD, 0) == 1, || "mallopt M_TOP_PAD".into())?;
    // SAFETY: null is allowed.
    check(unsafe { m.usable_size(core::ptr::null_mut()) } == 0, || "usable_size(NULL)".into())?;
    let z = m.malloc(0);
    // SAFETY: live block.
    check(!z.is_null() && unsafe { m.usable_size(z) } == 24, || "malloc(0)".into())?;
    let mut out = core::ptr::null_mut();
    check(m.posix_memalign(&mut out, 3, 10) == libc::EINVAL, || "posix_memalign(3)".into())?;
    check(m.posix_memalign(&mut out, 4096, 10) == 0 && (out as usize).is_multiple_of(4096), || {
        "posix_memalign".into()
    })?;
    let v = m.valloc(10);
    let pv = m.pvalloc(4097);
    check((v as usize).is_multiple_of(page_size()) && (pv as usize).is_multiple_of(page_size()), || {
        "valloc/pvalloc alignment".into()
    })?;
    // SAFETY: live block.
    check(unsafe { m.usable_size(pv) } >= 8192, || "pvalloc rounds up to pages".into())?;
    let ma = m.memalign(48, 100);
    check((ma as usize).is_multiple_of(64), || "memalign rounds 48 up to 64".into())?;
    check(m.memalign(usize::MAX / 2 + 2, 1).is_null() && ptalloc::errno() == libc::EINVAL, || {
        "memalign EINVAL".into()
    })?;
    Ok(())
}

fn glibc_tunables() -> Result<(), String> {
    let m = linux();
    exhaust_top();
    let p = m.malloc(5000);
    check(!in_brk_heap(p), || "mmap_threshold=4096 should mmap 5000 bytes".into())?;
    check(m.stats().mmap_threshold == 4096, || format!("threshold {}", m.stats().mmap_threshold))?;
    // perturb=170: fresh blocks are filled with 170 ^ 0xff = 0x55.
    let q = m.malloc(200);
    // SAFETY: inside the block.
    check((0..200).all(|i| unsafe { *q.add(i) } == 0x55), || "perturb fill on malloc".into())?;
    // SAFETY: live block.
    unsafe { m.free(q) };
    // tcache_count=0: the chunk went to a fastbin or bin, filled with the perturb byte past its links.
    // SAFETY: reading freed memory that the allocator still owns (test of perturb).
    check((32..184).all(|i| unsafe { *q.add(i) } == 170), || "perturb fill on free".into())?;
    Ok(())
}

fn malloc_env_aliases() -> Result<(), String> {
    let m = linux();
    exhaust_top();
    let p = m.malloc(9000);
    check(!in_brk_heap(p), || "MALLOC_MMAP_THRESHOLD_=0x2000 should mmap 9000 bytes".into())?;
    let small = m.malloc(100);
    check(in_brk_heap(small), || "small still from brk".into())?;
    // MALLOC_TOP_PAD_=0: the first heap is just what the first request needed, a page or two.
    let heap = m.stats().brk_grown;
    check(heap <= 3 * 4096, || format!("brk grew by {heap} with top_pad 0"))?;
    Ok(())
}

fn arena_max_limits_arenas() -> Result<(), String> {
    // MALLOC_ARENA_MAX=2: eight threads share two arenas.
    let ts: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                let ps: Vec<*mut u8> = (0..100).map(|i| linux().malloc(2000 + i)).collect();
                std::thread::sleep(Duration::from_millis(50));
                for p in ps {
                    // SAFETY: live blocks.
                    unsafe { linux().free(p) };
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let arenas = linux().stats().arenas;
    check(arenas == 2, || format!("{arenas} arenas with MALLOC_ARENA_MAX=2"))
}

/// A free chunk too big for the thread cache and the fastbins, with an in-use guard after
/// it so it stays a free chunk of its own (in the unsorted bin).
fn free_chunk_in_bin() -> Result<(*mut u8, *mut u8), String> {
    let m = linux();
    let p = m.malloc(2000);
    let guard = m.malloc(100);
    // SAFETY: live block.
    unsafe { m.free(p) };
    // The thread keeps a freed block of this size for its next malloc; malloc_trim hands it
    // to the arena's bins.
    m.malloc_trim(0);
    m.check_heap().map_err(|e| format!("heap broken before the test: {e}"))?;
    Ok((p, guard))
}

fn checker_sees_bad_boundary_tag() -> Result<(), String> {
    let (p, _guard) = free_chunk_in_bin()?;
    // The chunk is 2016 bytes from p - 16; its size is repeated in the next chunk's
    // prev_size, at p + 2000.
    // SAFETY: deliberately corrupting the boundary tag of a free chunk.
    unsafe { (p.add(2000) as *mut usize).write(1234) };
    match linux().check_heap() {
        Err(e) if e.what.contains("boundary tag") => Ok(()),
        other => Err(format!("the checker did not see the bad boundary tag: {other:?}")),
    }
}

fn checker_sees_binned_chunk_in_use() -> Result<(), String> {
    let (_p, guard) = free_chunk_in_bin()?;
    // Set PREV_INUSE in the guard's header: the binned chunk now looks in use.
    // SAFETY: deliberately corrupting the guard's header.
    unsafe { *(guard.sub(8) as *mut usize) |= 1 };
    match linux().check_heap() {
        Err(e) if e.what.contains("not free") || e.what.contains("differ") => Ok(()),
        other => Err(format!("the checker did not see an in-use chunk in a bin: {other:?}")),
    }
}

/// Both `double_free_tcache` and `double_free_fasttop`: the thread cache's key catches the
/// second free, or, with no thread cache (the latter's environment), the fastbin's check
/// of its top chunk does.
fn double_free_small() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(40);
    // SAFETY: deliberately freeing twice.
    unsafe {
        m.free(p);
        m.free(p);
    }
    Err("survived a double free".into())
}

/// The cache's largest bins (1,024- and 1,040-byte chunks) are on the fast paths: a block
/// of each size comes back from the cache, and freeing one twice is still caught there.
fn double_free_largest_bin() -> Result<(), String> {
    let m = linux();
    for size in [1001, 1016, 1024, 1032] {
        let p = m.malloc(size);
        // SAFETY: a block just allocated, freed once.
        unsafe { m.free(p) };
        let q = m.malloc(size);
        check(q == p, || format!("a {size}-byte block did not come back from the cache"))?;
        // SAFETY: freed once more, to be taken again below.
        unsafe { m.free(q) };
    }
    let p = m.malloc(1032);
    // SAFETY: deliberately freeing twice.
    unsafe {
        m.free(p);
        m.free(p);
    }
    Err("survived a double free".into())
}

fn double_free_normal() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(2000);
    let _guard = m.malloc(100);
    // SAFETY: deliberately freeing twice a chunk too big for the cache and the fastbins.
    unsafe {
        m.free(p);
        m.free(p);
    }
    Err("survived a double free".into())
}

fn double_free_larger_next_to_top() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(5000);
    // SAFETY: deliberately freeing twice a block above the cache's bins, next to top: the
    // thread keeps it at the first free, and the second must still be caught in the arena.
    unsafe {
        m.free(p);
        m.free(p);
    }
    Err("survived a double free".into())
}

/// Blocks of 1 KiB to 64 KiB a thread frees come back to its next malloc of about that size
/// without the arena, up to eight of them; the rest go to the arena; at thread exit and on
/// `malloc_trim` they go back to their arenas.
fn larger_blocks_come_back_to_their_thread() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(5000);
    let guard = m.malloc(100);
    // SAFETY: live blocks of ours, each freed once.
    unsafe { m.free(p) };
    check(m.malloc(5000) == p, || "the block freed was not given back".into())?;
    // SAFETY: as above.
    unsafe { m.free(p) };
    // A little smaller a request takes it too; one an eighth smaller or more does not.
    check(m.malloc(4800) == p, || "a close fit was not given back".into())?;
    // SAFETY: as above.
    unsafe { m.free(p) };
    let q = m.malloc(4000);
    check(q != p, || "a block much larger than asked for was given".into())?;
    // calloc takes it too, cleared in full.
    let r = m.malloc(6000);
    // SAFETY: writing the whole usable size of a live block, then freeing it once.
    unsafe {
        r.write_bytes(0xff, m.usable_size(r));
        m.free(r);
    }
    let z = m.calloc(1, 5990);
    check(z == r, || "calloc did not take the block freed".into())?;
    // SAFETY: reading the usable size of a live block.
    let dirty = unsafe { std::slice::from_raw_parts(z, m.usable_size(z)) }.iter().any(|&b| b != 0);
    check(!dirty, || "calloc gave back a block not cleared".into())?;
    // SAFETY: a live block.
    unsafe { m.free(z) };
    // Twelve blocks freed: the first four went on to the arena.
    let blocks: Vec<*mut u8> = (0..12).map(|i| m.malloc(8192 + 16 * i)).collect();
    for &b in &blocks {
        // SAFETY: as above.
        unsafe { m.free(b) };
    }
    let before = m.stats().info.uordblks;
    heap_ok()?;
    // From another thread, which exits: what it kept returns to the arena.
    let handed = m.malloc(20000) as usize;
    let in_use = std::thread::spawn(move || {
        let m = linux();
        // SAFETY: the main thread handed the block over.
        unsafe { m.free(handed as *mut u8) };
        // Kept: still counted in use, as cached blocks are.
        m.stats().info.uordblks
    })
    .join()
    .map_err(|_| "thread panicked".to_string())?;
    check(in_use >= before + 20000, || format!("in use {in_use}, before {before}: the block was not kept"))?;
    let after_exit = m.stats().info.uordblks;
    check(after_exit < before + 20000, || {
        format!("in use {after_exit} after the thread's exit: not returned")
    })?;
    // malloc_trim gives back what the calling thread keeps.
    m.malloc_trim(0);
    let trimmed = m.stats().info.uordblks;
    check(trimmed + 7 * 8192 <= before, || format!("in use {trimmed} after malloc_trim, {before} before"))?;
    // SAFETY: live blocks.
    unsafe {
        m.free(q);
        m.free(guard);
    }
    heap_ok()
}

/// Runs of `RUN` mallocs of 40 bytes then `RUN` frees, `rounds` times; returns the bytes the
/// main arena's fastbins hold after the last frees.
fn small_block_runs(rounds: usize) -> usize {
    const RUN: usize = 2000;
    let m = linux();
    let mut blocks = vec![core::ptr::null_mut(); RUN];
    for _ in 0..rounds {
        for b in blocks.iter_mut() {
            *b = m.malloc(40);
        }
        for &b in &blocks {
            // SAFETY: live blocks, each freed once.
            unsafe { m.free(b) };
        }
    }
    m.mallinfo2().fsmblks
}

/// A bin of small chunks that a run of frees overflows after a run of mallocs emptied it
/// doubles, until it holds the whole run: 2,000 chunks of 48 bytes end up in the thread's
/// cache rather than in the arena's fastbins. When top next cannot serve a request, before
/// the heap grows, the bins go back to their base room and what they held beyond it goes to
/// the arena, consolidated, to serve that request (as glibc's fastbins are); `malloc_trim`
/// and thread exit give it back too.
fn small_block_runs_grow_the_cache_until_the_heap_grows() -> Result<(), String> {
    let m = linux();
    // Base room for 48-byte chunks: 85; five doublings hold 2,000.
    let fast = small_block_runs(8);
    check(fast < 100 * 48, || format!("{fast} bytes in fastbins: the cache did not grow"))?;
    // Another size's run with top empty (800 chunks of 96 bytes): served from the run the
    // cache held (1,915 chunks beyond its base room, 91,920 bytes, next to each other),
    // without growing the heap.
    let other_size = |alloc: &dyn Fn() -> *mut u8, what: &str| -> Result<(), String> {
        let mut blocks = Vec::with_capacity(800);
        let top = exhaust_top();
        let before = m.mallinfo2();
        blocks.extend((0..800).map(|_| alloc()));
        let after = m.mallinfo2();
        check(after.arena == before.arena, || {
            format!("{what}: the heap grew from {} to {} bytes", before.arena, after.arena)
        })?;
        check(after.fsmblks < 100 * 48, || {
            format!("{what}: {} bytes left in fastbins, not consolidated", after.fsmblks)
        })?;
        for p in blocks.into_iter().chain([top]) {
            // SAFETY: live blocks.
            unsafe { m.free(p) };
        }
        Ok(())
    };
    other_size(&|| m.malloc(88), "malloc")?;
    // Grown again, then calloc with top empty: the same.
    small_block_runs(8);
    other_size(&|| m.calloc(1, 88), "calloc")?;
    // Grown again, then trimmed.
    small_block_runs(8);
    let before = m.mallinfo2().uordblks;
    m.malloc_trim(0);
    let after = m.mallinfo2().uordblks;
    check(after + (2000 - 85) * 48 <= before, || {
        format!("in use {before} before malloc_trim, {after} after")
    })?;
    // A thread that grew its bins gives everything back when it exits.
    let before = m.mallinfo2().uordblks;
    let grown =
        std::thread::spawn(|| small_block_runs(8) < 100 * 48).join().map_err(|_| "thread panicked")?;
    check(grown, || "the thread's cache did not grow".into())?;
    let after = m.mallinfo2().uordblks;
    check(after < before + 16 * 1024, || {
        format!("in use {before} before the thread, {after} after it exited")
    })?;
    heap_ok()
}

/// What the default cache holds of the arena within its bins' base room (bins that never
/// grew) goes back to the arena too, consolidated, before the heap grows: 80 blocks of 40
/// bytes side by side, all cached once freed (a bin of 48-byte chunks holds 85), serve a
/// request of 3,000 bytes when top is empty.
fn cached_blocks_serve_a_request_before_the_heap_grows() -> Result<(), String> {
    let (grew, inside) = request_after_a_cached_run()?;
    check(!grew, || "the heap grew".into())?;
    check(inside, || "the block is not where the cached blocks were".into())?;
    heap_ok()
}

/// With the program's own counts (100 a bin) the cache keeps what it holds when the heap
/// grows, as glibc's does.
fn cached_blocks_stay_cached_when_the_program_sets_counts() -> Result<(), String> {
    let (grew, inside) = request_after_a_cached_run()?;
    check(grew && !inside, || "the cached blocks served the request".into())?;
    heap_ok()
}

/// 80 blocks of 40 bytes from a fresh heap, freed into the cache, then a request of 3,000
/// bytes with top empty: whether the heap grew, and whether the block lies where the 80 were.
fn request_after_a_cached_run() -> Result<(bool, bool), String> {
    let m = linux();
    let blocks: Vec<*mut u8> = (0..80).map(|_| m.malloc(40)).collect();
    for w in blocks.windows(2) {
        check(w[1] as usize == w[0] as usize + 48, || {
            format!("blocks {:?} and {:?} are not neighbours: the test needs a fresh heap", w[0], w[1])
        })?;
    }
    for &p in &blocks {
        // SAFETY: live blocks, each freed once.
        unsafe { m.free(p) };
    }
    let cached = m.mallinfo2();
    check(cached.fsmblks == 0, || format!("{} bytes in fastbins: not all cached", cached.fsmblks))?;
    let top = exhaust_top();
    let before = m.mallinfo2();
    let big = m.malloc(3000);
    let after = m.mallinfo2();
    let span = blocks[0] as usize..blocks[79] as usize + 48;
    let result = (after.arena != before.arena, span.contains(&(big as usize)));
    for p in [big, top] {
        // SAFETY: live blocks.
        unsafe { m.free(p) };
    }
    Ok(result)
}

/// Requests of 4,000 bytes (largebin sizes, which glibc never carves from the last
/// remainder) after a 100,000-byte block was freed between two guards: each is carved from
/// the rest of that block, right after the one before, the heap checker content at every
/// step, until the rest is too small; then the request is served elsewhere and the checker
/// is still content.
fn a_run_of_larger_requests_carves_the_last_remainder() -> Result<(), String> {
    let m = linux();
    let _below = m.malloc(100);
    let big = m.malloc(100_000);
    let _above = m.malloc(100);
    // Made first: a small request in between would be carved from the same remainder.
    let mut blocks = Vec::with_capacity(32);
    // SAFETY: a live block, freed once: too large for the thread's ring, it goes to the
    // arena's unsorted bin, kept off top by the guard above.
    unsafe { m.free(big) };
    heap_ok()?;
    // 100,016 bytes of chunk hold 24 chunks of 4,016 and leave 3,632: too small for a 25th.
    for i in 0..24 {
        let p = m.malloc(4000);
        check(p as usize == big as usize + i * 4016, || {
            format!("request {i} got {p:?}, not the next 4,016 bytes of the freed block at {big:?}")
        })?;
        heap_ok()?;
        blocks.push(p);
    }
    let elsewhere = m.malloc(4000);
    check(!(big as usize..big as usize + 100_016).contains(&(elsewhere as usize)), || {
        "the 25th request fitted in the freed block's last 3,632 bytes".into()
    })?;
    heap_ok()?;
    for p in blocks.into_iter().chain([elsewhere]) {
        // SAFETY: live blocks, each freed once.
        unsafe { m.free(p) };
    }
    heap_ok()
}

/// Free the main thread's `blocks` in a thread of its own arena, which then exits: they
/// are cached, flushed in runs and, at its exit, deferred to the main arena (fewer than the
/// 128 at which the freeing thread would take the lock and free them itself).
fn free_in_another_thread(blocks: Vec<usize>) -> Result<(), String> {
    std::thread::spawn(move || {
        let m = linux();
        // The thread's own arena and cache first.
        let own = m.malloc(200);
        for b in blocks {
            // SAFETY: the main thread handed the blocks over and no longer uses them.
            unsafe { m.free(b as *mut u8) };
        }
        // SAFETY: this thread's block.
        unsafe { m.free(own) };
    })
    .join()
    .map_err(|_| "thread panicked".to_string())
}

/// Blocks the main thread allocated and another thread freed wait on the main arena's
/// deferred stack; the main thread's next malloc that misses its cache takes them into the
/// cache (growing the bin) rather than into the fastbins, and is served from them.
fn blocks_another_thread_freed_come_back_to_the_owners_cache() -> Result<(), String> {
    const N: usize = 100;
    let m = linux();
    let blocks: Vec<usize> = (0..N).map(|_| m.malloc(40) as usize).collect();
    check(blocks.iter().all(|&b| in_brk_heap(b as *mut u8)), || "a block is not in the main arena".into())?;
    // Before the thread: nothing deferred yet (mallinfo2 drains what is).
    let before = m.mallinfo2().fsmblks;
    free_in_another_thread(blocks.clone())?;
    // The first malloc drains the deferred stack; then see where the blocks went.
    let mut got: Vec<usize> = Vec::with_capacity(N);
    got.push(m.malloc(40) as usize);
    let after = m.mallinfo2().fsmblks;
    check(after <= before, || format!("fastbins held {before} bytes, then {after}: the blocks went there"))?;
    got.extend((1..N).map(|_| m.malloc(40) as usize));
    let back = got.iter().filter(|g| blocks.contains(g)).count();
    check(back == N, || format!("{back} of the {N} blocks came back to the main thread"))?;
    for &g in &got {
        // SAFETY: live blocks.
        unsafe { m.free(g as *mut u8) };
    }
    heap_ok()
}

/// A block another thread freed, taken into the owner's cache from the deferred stack, and
/// freed again by the owner: glibc's tcache check sees it.
fn double_free_of_a_block_another_thread_freed() -> Result<(), String> {
    let m = linux();
    let blocks: Vec<usize> = (0..4).map(|_| m.malloc(40) as usize).collect();
    free_in_another_thread(blocks.clone())?;
    // Drains the deferred stack into the cache and takes one block; the others stay cached.
    let got = m.malloc(40) as usize;
    let stale = *blocks.iter().find(|&&b| b != got).unwrap();
    // SAFETY: deliberately freeing a block that is already free (in the cache).
    unsafe { m.free(stale as *mut u8) };
    Err("survived freeing a block twice".into())
}

/// With the counts the program set, a bin is glibc's: 7 entries, never more.
fn small_block_runs_do_not_grow_the_cache_when_the_program_sets_counts() -> Result<(), String> {
    let fast = small_block_runs(8);
    check(fast >= (2000 - 7) * 48, || format!("only {fast} bytes in fastbins: the cache grew"))?;
    heap_ok()
}

/// A program that chose its own thread-cache counts gets glibc's cache, without the ring.
fn larger_blocks_are_not_kept_when_the_program_sets_counts() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(5000);
    let guard = m.malloc(100);
    let before = m.stats().info.uordblks;
    // SAFETY: a live block, freed once.
    unsafe { m.free(p) };
    let after = m.stats().info.uordblks;
    check(after + 5000 <= before, || format!("in use {before} -> {after}: the block was kept"))?;
    // SAFETY: as above.
    unsafe { m.free(guard) };
    heap_ok()
}

fn invalid_pointer() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(100);
    // SAFETY: deliberately freeing a pointer that was never returned.
    unsafe { m.free(p.add(8)) };
    Err("survived freeing a misaligned pointer".into())
}

fn invalid_size() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(64) as *mut usize;
    // A fake chunk inside the block whose size field says 16 bytes.
    // SAFETY: writing inside our block, then freeing the fake chunk's user pointer.
    unsafe {
        p.add(1).write(0x11);
        m.free(p.add(2) as *mut u8);
    }
    Err("survived freeing a chunk of size 16".into())
}

fn realloc_invalid_pointer() -> Result<(), String> {
    let m = linux();
    let p = m.malloc(100);
    // SAFETY: deliberately passing a misaligned pointer.
    unsafe { m.realloc(p.add(4), 200) };
    Err("survived reallocating a misaligned pointer".into())
}

fn corrupted_top_size() -> Result<(), String> {
    let m = linux();
    check(m.mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1, || "mallopt".into())?;
    // Get a chunk carved from the top, then overflow it into the top's size field (the
    // "House of Force" attack): the next split of top must notice.
    let p = m.malloc(100_000);
    // The chunk is 100_016 bytes from p - 16, so top starts at p + 100_000 and its size word
    // is the one after.
    let top_size_word = (p as usize + 100_008) as *mut usize;
    // SAFETY: deliberately corrupting the heap just past our block.
    unsafe { top_size_word.write(usize::MAX & !7) };
    let _ = m.malloc(200_000);
    Err("survived a corrupted top size".into())
}
