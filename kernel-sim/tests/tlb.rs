//! The TLB: flush counts (`/proc/vmstat`'s `nr_tlb_local_flush_one`, `_all`,
//! `nr_tlb_remote_flush` and `_received`) for scripted sequences, each expected count
//! derived from the path Linux 6.18 takes on x86-64; hits and misses where the machine sees
//! accesses; ASIDs kept across switches with PCID. For a single-threaded process one CPU
//! runs its mm, so every flush is local: `flush_tlb_mm_range` flushes one page at a time
//! (counting each) up to `tlb_single_page_flush_ceiling` = 33 pages, and the whole TLB
//! (counting one) beyond. The mappings are at a 1 GiB-aligned address with no other VMA
//! within 1 GiB of them, so which page tables `free_pgtables` frees, and so the gather's
//! range, is known. `Machine::check` holds every cached translation to its PTE after each
//! sequence.

use kernel_sim::{Config, Machine};

mod common;
use common::{pipe, recv, send};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const FIXED: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;

fn counts(m: &Machine) -> (u64, u64) {
    let mut v = String::new();
    m.write_vmstat(&mut v).unwrap();
    let f = |name: &str| {
        v.lines().find_map(|l| l.strip_prefix(name).map(|r| r.trim().parse::<u64>().unwrap())).unwrap()
    };
    (f("nr_tlb_local_flush_one "), f("nr_tlb_local_flush_all "))
}

/// The change in (one, all) that `f` makes.
fn delta(m: &Machine, f: impl FnOnce()) -> (u64, u64) {
    let (a, b) = counts(m);
    f();
    let (c, d) = counts(m);
    (c - a, d - b)
}

/// # Safety
/// `addr` is a writable page of this process on its machine that nothing else uses.
unsafe fn touch(addr: usize, pages: usize) {
    for i in 0..pages {
        // SAFETY: the caller's promise.
        unsafe { ((addr + i * PAGE) as *mut u64).write_volatile(i as u64 + 1) };
    }
}

#[test]
fn flush_counts_follow_linux_paths() {
    let m = Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap();
    let x = m.user_base() + (8 << 30);
    let map = |addr: usize, pages: usize| {
        // SAFETY: MAP_FIXED_NOREPLACE replaces nothing; the range is this test's.
        unsafe { m.mmap(addr, pages * PAGE, RW, FIXED, -1, 0) }.unwrap();
    };
    // Faults on empty PTEs flush nothing (nothing was cached).
    map(x, 8);
    // SAFETY: the mapping just made.
    assert_eq!(delta(&m, || unsafe { touch(x, 8) }), (0, 0));
    // munmap of 8 touched pages: unmap_region's gather holds the 8 PTEs cleared, and the
    // PTE table and the PMD table freed under them, which free_pgtables adds at the starts
    // of what they mapped (x itself: 1 GiB aligned) — 8 pages, flushed one by one.
    // SAFETY: nothing refers into the mapping.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 8 * PAGE) }.unwrap()), (8, 0));
    // The same 8 pages, 16 pages above the PMD boundary: the freed PTE table adds x, so the
    // range is [x, x + 24 pages): 24 single flushes.
    map(x + 16 * PAGE, 8);
    // SAFETY: as above.
    unsafe { touch(x + 16 * PAGE, 8) };
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x + 16 * PAGE, 8 * PAGE) }.unwrap()), (24, 0));
    // 64 pages: beyond the ceiling, one full flush.
    map(x, 64);
    // SAFETY: as above.
    unsafe { touch(x, 64) };
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 64 * PAGE) }.unwrap()), (0, 1));
    // Untouched pages: no PTE cleared and no table freed (none was made): no flush
    // (tlb_flush_mmu_tlbonly returns early).
    map(x, 8);
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 8 * PAGE) }.unwrap()), (0, 0));
    // mprotect: change_protection gathers each PTE whose change pte_needs_flush — write
    // permission taken away, and given back too (any change of RW), and PROT_NONE (present
    // goes).
    map(x, 8);
    // SAFETY: as above.
    unsafe { touch(x, 8) };
    // SAFETY: the protection changes of a mapping nothing else uses.
    unsafe {
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, libc::PROT_READ).unwrap()), (8, 0));
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, RW).unwrap()), (8, 0));
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, libc::PROT_NONE).unwrap()), (8, 0));
        // From PROT_NONE nothing present was cached: no flush.
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, RW).unwrap()), (0, 0));
    }
    // MADV_DONTNEED of 4 pages: zap_page_range_single's gather, 4 pages.
    // SAFETY: advice that discards the contents of pages nothing refers to.
    assert_eq!(delta(&m, || unsafe { m.madvise(x, 4 * PAGE, libc::MADV_DONTNEED) }.unwrap()), (4, 0));
    // Copy-on-write of the zero page: a read maps it, the write copies
    // (wp_page_copy → ptep_clear_flush: one page).
    // SAFETY: the mapping's page, read then written.
    unsafe {
        assert_eq!(
            delta(&m, || {
                let _ = ((x + 5 * PAGE) as *const u64).read_volatile();
            }),
            (0, 0),
            "resident already"
        );
        assert_eq!(
            delta(&m, || {
                let _ = (x as *const u64).read_volatile();
            }),
            (0, 0),
            "the zero page mapped"
        );
        assert_eq!(delta(&m, || ((x) as *mut u64).write_volatile(7)), (1, 0), "its copy");
    }
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(x, 8 * PAGE) }.unwrap();
    // Freed tables alone (the pages went with MADV_DONTNEED): the gather's step is a PMD
    // (`cleared_pmds` without `cleared_ptes`), and one page's range holds no PMD: 0 counted.
    map(x, 8);
    // SAFETY: as above.
    unsafe { touch(x, 8) };
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.madvise(x, 8 * PAGE, libc::MADV_DONTNEED) }.unwrap()), (8, 0));
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 8 * PAGE) }.unwrap()), (0, 0));
    m.check().unwrap();
}

/// (local one, local all, remote, received) from `/proc/vmstat`.
fn all_counts(m: &Machine) -> [u64; 4] {
    let mut v = String::new();
    m.write_vmstat(&mut v).unwrap();
    let f = |name: &str| {
        v.lines().find_map(|l| l.strip_prefix(name).map(|r| r.trim().parse::<u64>().unwrap())).unwrap()
    };
    [
        f("nr_tlb_local_flush_one "),
        f("nr_tlb_local_flush_all "),
        f("nr_tlb_remote_flush "),
        f("nr_tlb_remote_flush_received "),
    ]
}

fn all_delta(m: &Machine, f: impl FnOnce()) -> [u64; 4] {
    let a = all_counts(m);
    f();
    let b = all_counts(m);
    [b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3]]
}

/// A second thread of the process, busy in user space on CPU 1 (so its CPU keeps the mm
/// loaded and is not lazy), makes every flush of the mm a shootdown: `flush_tlb_mm_range`
/// finds a CPU besides its own in `mm_cpumask` and calls `flush_tlb_multi` (one
/// `nr_tlb_remote_flush`); CPU 1 runs the mm, so `should_flush_tlb` sends it the IPI and
/// its `flush_tlb_func` counts one `nr_tlb_remote_flush_received`; the initiator's own
/// `flush_tlb_func` counts as before, one per page up to 33.
#[test]
fn flushes_reach_the_other_cpus_running_the_mm() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let m = Machine::boot(&Config { phys_bytes: 128 << 20, nr_cpus: 2, ..Config::DEFAULT }).unwrap();
    let x = m.user_base() + (8 << 30);
    // SAFETY: MAP_FIXED_NOREPLACE replaces nothing; the range is this test's.
    unsafe { m.mmap(x, 9 * PAGE, RW, FIXED, -1, 0) }.unwrap();
    // SAFETY: the mapping just made.
    unsafe { touch(x, 8) };
    assert_eq!(m.this_cpu(), 0, "the first thread to enter gets CPU 0");
    let (started, stop) = (AtomicUsize::new(usize::MAX), AtomicBool::new(false));
    std::thread::scope(|s| {
        s.spawn(|| {
            // A fault enters the machine: this thread's CPU loads the mm.
            // SAFETY: the ninth page of the mapping, this thread's alone.
            unsafe { touch(x + 8 * PAGE, 1) };
            started.store(m.this_cpu(), Ordering::Release);
            while !stop.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
        });
        while started.load(Ordering::Acquire) == usize::MAX {
            std::thread::yield_now();
        }
        assert_eq!(started.load(Ordering::Relaxed), 1);
        // mprotect of 8 pages: 8 local single-page flushes, one IPI round, received once.
        let read_only = || {
            // SAFETY: the protection change of pages nothing else uses.
            unsafe { m.mprotect(x, 8 * PAGE, libc::PROT_READ) }.unwrap()
        };
        assert_eq!(all_delta(&m, read_only), [8, 0, 1, 1]);
        // SAFETY: as above.
        assert_eq!(all_delta(&m, || unsafe { m.mprotect(x, 8 * PAGE, RW) }.unwrap()), [8, 0, 1, 1]);
        m.check().unwrap();
        // munmap frees the page tables too (`freed_tables`: every CPU of the mask gets the
        // IPI, here the same one), the range as in `flush_counts_follow_linux_paths`.
        // SAFETY: nothing refers into the first eight pages.
        assert_eq!(all_delta(&m, || unsafe { m.munmap(x, 8 * PAGE) }.unwrap()), [8, 0, 1, 1]);
        stop.store(true, Ordering::Release);
    });
    let (a, b) = (m.tlb_stats(0).unwrap(), m.tlb_stats(1).unwrap());
    assert_eq!((a.flushes_received, b.flushes_received), (0, 3), "only CPU 1 received: {a:?} {b:?}");
    assert!(m.tlb_stats(2).is_none());
    m.check().unwrap();
    // SAFETY: nothing refers into the last page.
    unsafe { m.munmap(x + 8 * PAGE, PAGE) }.unwrap();
}

/// The ninth touch of an empty PTE is a TLB miss, as is every first touch; a write to the
/// zero page a read mapped is a hit: the CPU cached the read-only translation and the write
/// faults on it (x86 drops the entry). The TLB keeps 1536 translations (128 sets of 12):
/// 2048 consecutive pages leave 4 in each set evicted.
#[test]
fn faults_are_tlb_hits_or_misses() {
    let m = Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap();
    let cpu = m.this_cpu();
    let stats = || m.tlb_stats(cpu).unwrap();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 2048 * PAGE, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) }.unwrap();
    let s0 = stats();
    // SAFETY: the mapping just made.
    unsafe { touch(p, 64) };
    let s1 = stats();
    assert_eq!((s1.fault_misses - s0.fault_misses, s1.fault_hits - s0.fault_hits), (64, 0));
    // SAFETY: a page of the mapping, read (the zero page) then written (its copy).
    unsafe {
        let _ = ((p + 100 * PAGE) as *const u64).read_volatile();
        ((p + 100 * PAGE) as *mut u64).write_volatile(1);
    }
    let s2 = stats();
    assert_eq!((s2.fault_misses - s1.fault_misses, s2.fault_hits - s1.fault_hits), (1, 1));
    // The whole mapping: 2048 pages over 128 sets, 16 to a set of 12 ways.
    // SAFETY: as above.
    unsafe { touch(p, 2048) };
    let s3 = stats();
    assert!(s3.evicted - s2.evicted >= 512, "{s3:?}");
    m.check().unwrap();
    let mut info = String::new();
    m.write_tlbinfo(&mut info).unwrap();
    assert!(info.starts_with("cpus 4 pcid on asids 6 entries 1536"), "{info}");
    assert!(info.contains(&format!("asid0 pid {}", m.getpid())), "{info}");
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 2048 * PAGE) }.unwrap();
    m.check().unwrap();
}

/// Reclaim's look at the accessed bits clears them without a flush (x86's
/// `ptep_clear_flush_young`): every page it finds referenced is still cached (`scan_cached`).
/// The pages it swaps out go in one batched flush (`arch_tlbbatch_flush`: the whole TLB of
/// each CPU that ran the mm, `nr_tlb_local_flush_all` here), after which nothing of the
/// mapping is cached: the next touches miss.
#[test]
fn reclaim_sees_cached_translations_and_flushes_them() {
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, swap_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    m.set_swappiness(200).unwrap();
    let cpu = m.this_cpu();
    let n = 1040;
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, n * PAGE, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) }.unwrap();
    // SAFETY: the mapping just made.
    unsafe { touch(p, n) };
    let s0 = m.tlb_stats(cpu).unwrap();
    let all0 = all_counts(&m);
    m.reclaim();
    let s1 = m.tlb_stats(cpu).unwrap();
    let all1 = all_counts(&m);
    let mut v = String::new();
    m.write_vmstat(&mut v).unwrap();
    assert!(v.contains("pswpout ") && !v.contains("pswpout 0\n"), "reclaim swapped: {v}");
    assert!(s1.scan_cached - s0.scan_cached >= n as u64 / 2, "{s0:?} {s1:?}");
    assert!(all1[1] > all0[1], "a batched full flush: {all0:?} {all1:?}");
    assert_eq!(all1[2], all0[2], "no other CPU ran the mm");
    m.check().unwrap();
    // Every touch that faults now misses.
    let f0 = m.counters().faults;
    // SAFETY: as above.
    unsafe { touch(p, n) };
    let s2 = m.tlb_stats(cpu).unwrap();
    let faults = m.counters().faults - f0;
    assert!(faults > 0);
    assert_eq!((s2.fault_misses - s1.fault_misses, s2.fault_hits - s1.fault_hits), (faults, 0));
    m.check().unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, n * PAGE) }.unwrap();
}

/// One CPU, two processes taking turns on it. With PCID each keeps its ASID and its
/// translations: `switch_mm` finds the ASID that holds the mm (`choose_new_asid`) and
/// flushes only if the mm's `tlb_gen` moved on while it was switched out — as a
/// truncation by the other process does to the child's mm here (the zap's
/// `flush_tlb_mm_range` finds the mm on no CPU: it counts nothing and only bumps the
/// generation). Without PCID every switch flushes. Switch flushes are not in vmstat
/// (Linux traces them as `TLB_FLUSH_ON_TASK_SWITCH`); the machine's per-CPU counts hold them.
#[test]
fn pcid_keeps_translations_across_switches() {
    for pcid in [true, false] {
        switches(pcid);
    }
}

fn switches(pcid: bool) {
    use std::io::Write;
    let m = Machine::boot(&Config { phys_bytes: 128 << 20, nr_cpus: 1, pcid, ..Config::DEFAULT }).unwrap();
    let path = std::env::temp_dir().join(format!("ksim-tlb-{}-{pcid}", std::process::id()));
    std::fs::File::create(&path).unwrap().write_all(&[7u8; 4 * PAGE]).unwrap();
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let fd = m.open(&cpath, libc::O_RDWR, 0).unwrap();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let f = unsafe { m.mmap(0, 4 * PAGE, RW, libc::MAP_SHARED, fd, 0) }.unwrap();
    let (to_child, from_parent) = pipe();
    let (to_parent, from_child) = pipe();
    let stats = || m.tlb_stats(0).unwrap();
    // SAFETY: the child makes raw system calls and uses the machine only, then _exits.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        // SAFETY: the shared file pages, read.
        let ok = (0..4).all(|i| unsafe { ((f + i * PAGE) as *const u8).read_volatile() } == 7);
        send(to_parent, u8::from(ok));
        loop {
            let c = recv(from_parent);
            if c == 0 {
                break;
            }
            // Any use of the machine switches this CPU to the child's mm.
            let _ = m.getpid();
            send(to_parent, 1);
        }
        m.exit_process();
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(recv(from_child), 1);
    let rounds = 10;
    let s0 = stats();
    for _ in 0..rounds {
        send(to_child, 1);
        assert_eq!(recv(from_child), 1);
        let _ = m.getpid();
    }
    let s1 = stats();
    assert_eq!(s1.switches - s0.switches, 2 * rounds, "{s0:?} {s1:?}");
    let flushes = s1.switch_flushes - s0.switch_flushes;
    assert_eq!(flushes, if pcid { 0 } else { 2 * rounds }, "pcid {pcid}: {s1:?}");
    // The truncation zaps the child's PTEs of the file while this process runs the CPU.
    let d = all_delta(&m, || m.ftruncate(fd, 0).unwrap());
    assert_eq!(d, [0, 0, 0, 0], "the child's mm is on no CPU, and the parent never touched the file");
    send(to_child, 1);
    assert_eq!(recv(from_child), 1);
    // To the child (its ASID is behind its mm: flushed either way) and back (this one's
    // ASID is current: flushed only without PCID).
    let s2 = stats();
    let d = (s2.switches - s1.switches, s2.switch_flushes - s1.switch_flushes);
    assert_eq!(d, (2, if pcid { 1 } else { 2 }), "pcid {pcid}");
    send(to_child, 0);
    let status = m.waitpid(child).unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    m.check().unwrap();
    m.close(fd).unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn cpus_beyond_what_the_model_holds_are_refused() {
    for nr_cpus in [0, 65] {
        let e = Machine::boot(&Config { nr_cpus, ..Config::DEFAULT }).err();
        assert_eq!(e, Some(kernel_sim::Errno::EINVAL), "{nr_cpus} CPUs");
    }
}
