//! Memory under pressure: reclaim, swap and the swap cache. Machines with little RAM and a
//! swap area run working sets several times their RAM — one process, a forked family, and
//! ptalloc's model test — with every byte checked; the LRU's verdicts follow a scripted
//! access pattern; `swapon` refuses what Linux refuses.

use std::ffi::CString;

use kernel_sim::{Config, Machine, MachineBox};

mod common;
use common::{pipe, recv, send};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

const KPF_REFERENCED: u64 = 1 << 2;
const KPF_LRU: u64 = 1 << 5;
const KPF_ACTIVE: u64 = 1 << 6;
const KPF_SWAPCACHE: u64 = 1 << 13;
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;

fn small_machine(ram_mib: usize, swap_mib: usize) -> MachineBox {
    Machine::boot(&Config { phys_bytes: ram_mib << 20, swap_bytes: swap_mib << 20, ..Config::DEFAULT })
        .unwrap()
}

/// # Safety
/// `addr` is a writable page of the calling process on its machine, which no Rust
/// reference points into.
unsafe fn poke(addr: usize, v: u64) {
    // SAFETY: the caller's promise.
    unsafe { (addr as *mut u64).write_volatile(v) }
}

/// # Safety
/// `addr` is a readable page of the calling process on its machine.
unsafe fn peek(addr: usize) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { (addr as *const u64).read_volatile() }
}

fn pattern(seed: u64, page: usize, word: usize) -> u64 {
    (seed << 40) ^ ((page as u64) << 8) ^ word as u64 ^ 0x5a5a_0000_0000
}

/// Write three words of every page of `[base, base + pages * PAGE)`.
///
/// # Safety
/// A writable mapping of the calling process that nothing else uses.
unsafe fn fill(base: usize, pages: usize, seed: u64) {
    for i in 0..pages {
        for w in [0, 255, 511] {
            // SAFETY: the caller's promise.
            unsafe { poke(base + i * PAGE + w * 8, pattern(seed, i, w)) };
        }
    }
}

/// Check the words `fill` wrote, visiting the pages in a scrambled order.
///
/// # Safety
/// A readable mapping of the calling process.
unsafe fn verify(base: usize, pages: usize, seed: u64) -> Result<(), String> {
    let stride = 7919 % pages.max(1);
    let stride = if stride == 0 { 1 } else { stride };
    let mut i = 0;
    for _ in 0..pages {
        for w in [0, 255, 511] {
            // SAFETY: the caller's promise.
            let v = unsafe { peek(base + i * PAGE + w * 8) };
            if v != pattern(seed, i, w) {
                return Err(format!("page {i} word {w}: {v:#x}, wrote {:#x}", pattern(seed, i, w)));
            }
        }
        i = (i + stride) % pages;
    }
    Ok(())
}

fn text(f: impl FnOnce(&mut String) -> std::fmt::Result) -> String {
    let mut s = String::new();
    f(&mut s).unwrap();
    s
}

fn field(text: &str, label: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(label).map(|r| r.trim().trim_end_matches("kB").trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {label} in {text}"))
}

#[test]
fn anonymous_memory_four_times_ram_survives_swap() {
    let m = small_machine(24, 160);
    let swap_total = field(&text(|w| m.write_meminfo(w)), "SwapTotal:");
    assert_eq!(swap_total, (160 << 10) - 4, "one page is the header");
    let swaps = text(|w| m.write_swaps(w));
    assert!(swaps.starts_with("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"), "{swaps}");
    assert!(swaps.contains(" (deleted)") && swaps.contains("file\t163836\t\t0\t\t-2"), "{swaps}");
    let pages = (96 << 20) / PAGE;
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: the mapping just made, which only this test uses.
    unsafe { fill(p, pages, 1) };
    let v = text(|w| m.write_vmstat(w));
    assert!(field(&v, "pswpout ") > 0 && field(&v, "pgsteal_kswapd ") > 0, "{v}");
    // SAFETY: as above.
    unsafe { verify(p, pages, 1) }.unwrap();
    let c = m.counters();
    let v = text(|w| m.write_vmstat(w));
    assert!(field(&v, "pswpin ") > 0 && c.pgmajfault > 0 && c.maj_flt > 0, "{v}");
    assert!(field(&v, "swap_ra ") > 0, "swap-in reads neighbouring slots: {v}");
    let smaps = text(|w| m.write_smaps_rollup(w));
    let status = text(|w| m.write_status(w));
    let swapped = field(&smaps, "Swap:");
    assert!(swapped > 32 << 10, "{smaps}");
    assert_eq!(field(&status, "VmSwap:"), swapped, "{status}");
    assert_eq!(field(&smaps, "SwapPss:"), swapped, "one process: each slot is all its own");
    assert!(field(&smaps, "Rss:") < 24 << 10);
    m.check().unwrap();
    // Pages read back are in the swap cache, read-only: an mprotect round trip must not
    // make them writable behind the cache's back (the rewrite below would be lost).
    // SAFETY: the protection only goes back to what it was; nothing reads meanwhile.
    unsafe {
        m.mprotect(p, pages * PAGE, libc::PROT_READ).unwrap();
        m.mprotect(p, pages * PAGE, RW).unwrap();
    }
    m.check().unwrap();
    // Rewrite every other page (swapped-in pages give their slot up) and check all again.
    for i in (0..pages).step_by(2) {
        // SAFETY: as above.
        unsafe { poke(p + i * PAGE, pattern(2, i, 0)) };
    }
    for i in 0..pages {
        let want = if i % 2 == 0 { pattern(2, i, 0) } else { pattern(1, i, 0) };
        // SAFETY: as above.
        assert_eq!(unsafe { peek(p + i * PAGE) }, want, "page {i}");
    }
    m.check().unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, pages * PAGE) }.unwrap();
    let mi = text(|w| m.write_meminfo(w));
    assert_eq!(field(&mi, "SwapFree:"), swap_total, "every slot back: {mi}");
    assert_eq!(field(&mi, "SwapCached:"), 0, "{mi}");
    m.check().unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn lru_verdicts_follow_the_accesses() {
    let m = small_machine(64, 64);
    // Anonymous pages only, so the scan is over this test's pages.
    m.set_swappiness(200).unwrap();
    let (cold, hot) = (1024, 16);
    let n = cold + hot;
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, n * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: the mapping just made; the hot pages last, nearest the list's head.
    unsafe { fill(p, n, 3) };
    let flags = |i: usize| {
        let pm = m.pagemap(p + i * PAGE);
        (pm & PM_PRESENT != 0).then(|| m.kpageflags((pm & ((1 << 55) - 1)) as usize))
    };
    let swapped = |r: std::ops::Range<usize>| r.filter(|&i| m.pagemap(p + i * PAGE) & PM_SWAP != 0).count();
    for i in 0..n {
        let f = flags(i).unwrap();
        assert!(
            f & KPF_LRU != 0 && f & (KPF_ACTIVE | KPF_REFERENCED) == 0,
            "a new page starts inactive: {i} {f:#x}"
        );
    }
    // First look at every page: each was touched once since it was mapped, so it is kept
    // on the inactive list, marked referenced, its accessed bit cleared. Looked at a second
    // time untouched, a cold page goes to swap.
    m.reclaim();
    for i in cold..n {
        let f = flags(i).unwrap();
        assert!(f & KPF_REFERENCED != 0 && f & KPF_ACTIVE == 0, "hot page {i} after one look: {f:#x}");
    }
    let first = swapped(0..cold);
    assert!(first >= 32, "{first} cold pages swapped by the first reclaim");
    // From now on the hot pages are used between reclaims; each touch of a page whose bit
    // reclaim cleared faults once, to set it.
    let mut rounds = 0;
    while swapped(0..cold) < cold && rounds < 100 {
        let faults = m.counters().faults;
        for i in cold..n {
            // SAFETY: as above.
            unsafe { peek(p + i * PAGE) };
        }
        assert!(m.counters().faults - faults <= hot as u64);
        m.reclaim();
        if swapped(0..cold) < cold {
            assert_eq!(
                swapped(cold..n),
                0,
                "a hot page went to swap while cold ones were left (round {rounds})"
            );
        }
        rounds += 1;
    }
    // The hot pages reached the tail once the cold ones were gone, used since their first
    // look: activated.
    assert!((cold..n).any(|i| flags(i).is_some_and(|f| f & KPF_ACTIVE != 0)), "no hot page was activated");
    // A swapped page comes back with its bytes, in the swap cache (read back, not written).
    let c = (0..cold).find(|&i| m.pagemap(p + i * PAGE) & PM_SWAP != 0).unwrap();
    let maj = m.counters().maj_flt;
    // SAFETY: as above.
    assert_eq!(unsafe { peek(p + c * PAGE + 255 * 8) }, pattern(3, c, 255));
    assert_eq!(m.counters().maj_flt, maj + 1);
    assert!(flags(c).unwrap() & KPF_SWAPCACHE != 0, "read back, it keeps its slot");
    // SAFETY: as above.
    unsafe { poke(p + c * PAGE, 7) };
    assert!(flags(c).unwrap() & KPF_SWAPCACHE == 0, "written, its slot goes");
    m.check().unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, n * PAGE) }.unwrap();
    m.check().unwrap();
}

#[test]
fn swapon_refuses_what_linux_refuses() {
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = |name: &str| dir.join(format!("{name}-{}", std::process::id()));
    let c = |p: &std::path::Path| CString::new(p.to_str().unwrap()).unwrap();
    let plain = path("swap-plain");
    std::fs::write(&plain, vec![0u8; 64 * PAGE]).unwrap();
    assert_eq!(m.swapon(&c(&plain)), Err(kernel_sim::Errno::EINVAL), "no swap signature");
    assert_eq!(
        m.swapon(&c(&dir)),
        Err(kernel_sim::Errno(libc::EISDIR)),
        "a directory: open(O_RDWR) refuses it"
    );
    assert_eq!(m.swapon(&c(&path("swap-missing"))), Err(kernel_sim::Errno(libc::ENOENT)));
    let tiny = path("swap-tiny");
    std::fs::write(&tiny, vec![0u8; 4 * PAGE]).unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&tiny).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(kernel_sim::mkswap(f.as_raw_fd(), 4 * PAGE), Err(kernel_sim::Errno::EINVAL));
    let mi = text(|w| m.write_meminfo(w));
    assert_eq!(field(&mi, "SwapTotal:"), 0, "nothing changed: {mi}");
    let good = path("swap-good");
    std::fs::write(&good, vec![0u8; 256 * PAGE]).unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&good).unwrap();
    kernel_sim::mkswap(f.as_raw_fd(), 256 * PAGE).unwrap();
    m.swapon(&c(&good)).unwrap();
    assert_eq!(m.swapon(&c(&good)), Err(kernel_sim::Errno(libc::EBUSY)));
    let swaps = text(|w| m.write_swaps(w));
    assert!(swaps.contains(good.to_str().unwrap()) && swaps.contains("file\t1020\t\t0\t\t-2"), "{swaps}");
    assert_eq!(m.set_swappiness(201), Err(kernel_sim::Errno::EINVAL));
    m.set_swappiness(100).unwrap();
    m.check().unwrap();
    for p in [plain, tiny, good] {
        std::fs::remove_file(p).unwrap();
    }
}

/// A pipe: (write end, read end).
#[test]
fn a_forked_family_larger_than_ram_keeps_every_byte() {
    let m = small_machine(32, 256);
    let shared_pages = (16 << 20) / PAGE;
    let own_pages = (24 << 20) / PAGE;
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let a = unsafe { m.mmap(0, shared_pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: the mapping just made.
    unsafe { fill(a, shared_pages, 10) };
    let (to_parent, from_children) = pipe();
    let mut kids = Vec::new();
    for k in 0..3u64 {
        // SAFETY: each child only makes raw system calls and uses the machine, then _exits.
        let child = unsafe { m.fork() }.unwrap();
        if child == 0 {
            // The children run at once: each one's faults reclaim the others' pages.
            // SAFETY: the child's own new mapping, and its copy of `a`.
            let ok = unsafe {
                let own = m.mmap(0, own_pages * PAGE, RW, ANON, -1, 0).unwrap();
                fill(own, own_pages, 20 + k);
                let r1 = verify(a, shared_pages, 10);
                // Copy-on-write of a quarter of the shared pages, possibly from swap.
                for i in (0..shared_pages).step_by(4) {
                    poke(a + i * PAGE + 255 * 8, pattern(30 + k, i, 255));
                }
                let r2 = verify(own, own_pages, 20 + k);
                let mut r3 = Ok(());
                for i in 0..shared_pages {
                    let want = if i % 4 == 0 { pattern(30 + k, i, 255) } else { pattern(10, i, 255) };
                    if peek(a + i * PAGE + 255 * 8) != want {
                        r3 = Err(());
                    }
                }
                r1.is_ok() && r2.is_ok() && r3.is_ok() && m.check_mm().is_ok()
            };
            m.exit_process();
            let v: u8 = if ok { 1 } else { 2 };
            // SAFETY: a byte to the parent, then leaving the child.
            unsafe {
                libc::write(to_parent, (&v as *const u8).cast(), 1);
                libc::_exit(0)
            };
        }
        kids.push(child);
    }
    // The parent works on while its children run.
    // SAFETY: the parent's own mapping.
    unsafe { verify(a, shared_pages, 10) }.unwrap();
    for _ in 0..3 {
        let mut v = 0u8;
        // SAFETY: reading one byte into a local.
        assert_eq!(unsafe { libc::read(from_children, (&mut v as *mut u8).cast(), 1) }, 1);
        assert_eq!(v, 1, "a child found a byte changed");
    }
    for pid in kids {
        let status = m.waitpid(pid).unwrap();
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
    }
    // SAFETY: the parent's own mapping, untouched by the children's writes.
    unsafe { verify(a, shared_pages, 10) }.unwrap();
    // The children are gone: the parent's pages are its own again, some after its view
    // was flushed whole by their reclaim. Writing them reuses them in place.
    // SAFETY: as above.
    unsafe {
        fill(a, shared_pages, 11);
        verify(a, shared_pages, 11).unwrap();
    }
    let v = text(|w| m.write_vmstat(w));
    assert!(field(&v, "pswpout ") > 0 && field(&v, "pswpin ") > 0, "{v}");
    assert!(field(&v, "nr_tlb_remote_flush ") > 0, "reclaim took other processes' pages: {v}");
    // One IPI round per reclaim batch, received by each process it went to.
    assert!(field(&v, "nr_tlb_remote_flush_received ") >= field(&v, "nr_tlb_remote_flush "), "{v}");
    m.check().unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(a, shared_pages * PAGE) }.unwrap();
    let mi = text(|w| m.write_meminfo(w));
    assert_eq!(field(&mi, "SwapFree:"), field(&mi, "SwapTotal:"), "{mi}");
    m.check().unwrap();
}

#[test]
fn ptalloc_runs_on_a_machine_smaller_than_its_heap() {
    use ptalloc::Malloc;
    use ptalloc_testkit::model::{Mix, Model};
    let mb: &'static MachineBox = Box::leak(Box::new(small_machine(24, 256)));
    let m: &'static Machine = mb;
    // SAFETY: this machine's only allocator.
    let sim: &'static Malloc<kernel_sim::SimKernel> =
        Box::leak(Box::new(unsafe { Malloc::new(kernel_sim::SimKernel::on(m)) }));
    let model = Model::new(sim, 3000);
    let mix = Mix { slots: 3000, max_size: 8 << 20, ..Mix::default() };
    model.run_random(&mix, 11, 30_000, 2000).unwrap();
    let peak = m.counters().hiwater_rss;
    let v = text(|w| m.write_vmstat(w));
    assert!(field(&v, "pswpout ") > 0, "the heap outgrew RAM: {v}");
    model.drain(&mut Default::default()).unwrap();
    sim.check_heap().unwrap();
    m.check().unwrap();
    assert!(peak > 0);
}

const KPF_UNEVICTABLE: u64 = 1 << 18;
const KPF_MLOCKED: u64 = 1 << 33;

fn page_flags(m: &Machine, addr: usize) -> Option<u64> {
    let pm = m.pagemap(addr);
    (pm & PM_PRESENT != 0).then(|| m.kpageflags((pm & ((1 << 55) - 1)) as usize))
}

#[test]
fn locked_pages_are_never_reclaimed() {
    let m = small_machine(24, 160);
    m.set_rlimits(kernel_sim::Rlimits { memlock: 4 << 20, ..m.rlimits() });
    let locked = 512;
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let l = unsafe { m.mmap(0, locked * PAGE, RW, ANON, -1, 0) }.unwrap();
    m.mlock(l + 5, locked * PAGE - 5).unwrap();
    let status = text(|w| m.write_status(w));
    assert_eq!(field(&status, "VmLck:"), 2048, "{status}");
    // mlock faulted every page in (written: a private writable mapping), off the LRU.
    for i in 0..locked {
        let f = page_flags(&m, l + i * PAGE).expect("populated");
        assert!(f & KPF_MLOCKED != 0 && f & KPF_UNEVICTABLE != 0 && f & KPF_LRU == 0, "page {i}: {f:#x}");
    }
    assert_eq!(field(&text(|w| m.write_meminfo(w)), "Mlocked:"), 2048);
    // SAFETY: the locked mapping, which only this test uses.
    unsafe { fill(l, locked, 40) };
    // Four times RAM of other memory goes through swap; the locked pages stay.
    let pages = (96 << 20) / PAGE;
    // SAFETY: as above.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: as above.
    unsafe { fill(p, pages, 41) };
    assert!(field(&text(|w| m.write_vmstat(w)), "pswpout ") > 0);
    for i in 0..locked {
        assert!(m.pagemap(l + i * PAGE) & PM_PRESENT != 0, "locked page {i} stayed resident");
    }
    // SAFETY: as above.
    unsafe { verify(l, locked, 40) }.unwrap();
    // SAFETY: as above.
    unsafe { verify(p, pages, 41) }.unwrap();
    // Beyond RLIMIT_MEMLOCK (4 MiB, 2 MiB of it used): ENOMEM; relocking what is locked
    // counts nothing.
    assert_eq!(m.mlock(p, 3 << 20), Err(kernel_sim::Errno::ENOMEM));
    m.mlock(l, locked * PAGE).unwrap();
    assert_eq!(field(&text(|w| m.write_status(w)), "VmLck:"), 2048);
    // munlock gives the pages back to the LRU.
    m.munlock(l, locked * PAGE / 2).unwrap();
    assert_eq!(field(&text(|w| m.write_status(w)), "VmLck:"), 1024);
    let f = page_flags(&m, l).unwrap();
    assert!(f & (KPF_MLOCKED | KPF_UNEVICTABLE) == 0 && f & KPF_LRU != 0, "{f:#x}");
    assert!(page_flags(&m, l + (locked - 1) * PAGE).unwrap() & KPF_MLOCKED != 0);
    m.check().unwrap();
    // Errors: unknown flags, a hole (the part before it is locked), no RLIMIT_MEMLOCK.
    assert_eq!(m.mlock2(l, PAGE, 2), Err(kernel_sim::Errno::EINVAL));
    // SAFETY: nothing refers to the page unmapped to make a hole.
    unsafe { m.munmap(l + 8 * PAGE, PAGE) }.unwrap();
    assert_eq!(m.mlock(l, 16 * PAGE), Err(kernel_sim::Errno::ENOMEM));
    assert!(page_flags(&m, l).unwrap() & KPF_MLOCKED != 0, "locked up to the hole");
    let unlimited = m.rlimits();
    m.set_rlimits(kernel_sim::Rlimits { memlock: 0, ..unlimited });
    assert_eq!(m.mlock(l, PAGE), Err(kernel_sim::Errno(libc::EPERM)));
    assert_eq!(m.mlockall(1), Err(kernel_sim::Errno(libc::EPERM)));
    m.set_rlimits(unlimited);
    assert_eq!(m.mlockall(0), Err(kernel_sim::Errno::EINVAL));
    assert_eq!(m.mlockall(4), Err(kernel_sim::Errno::EINVAL), "MCL_ONFAULT alone");
    // SAFETY: nothing refers into the mappings.
    unsafe {
        m.munmap(l, locked * PAGE).unwrap();
        m.munmap(p, pages * PAGE).unwrap();
    }
    assert_eq!(field(&text(|w| m.write_status(w)), "VmLck:"), 0);
    assert_eq!(field(&text(|w| m.write_meminfo(w)), "Mlocked:"), 0);
    m.check().unwrap();
}

#[test]
fn mlockall_future_locks_and_populates_new_memory_and_brk() {
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    m.set_rlimits(kernel_sim::Rlimits { memlock: u64::MAX, ..m.rlimits() });
    // MLOCK_ONFAULT: nothing faulted in; each page touched later is locked.
    // SAFETY: without MAP_FIXED nothing is replaced.
    let q = unsafe { m.mmap(0, 8 * PAGE, RW, ANON, -1, 0) }.unwrap();
    m.mlock2(q, 8 * PAGE, 1).unwrap();
    assert_eq!(m.pagemap(q) & PM_PRESENT, 0, "on fault: not populated");
    // SAFETY: the mapping just made.
    unsafe { poke(q + PAGE, 1) };
    assert!(page_flags(&m, q + PAGE).unwrap() & KPF_MLOCKED != 0);
    let rss0 = m.counters().rss;
    m.mlockall(1 | 2).unwrap();
    let status = text(|w| m.write_status(w));
    assert_eq!(field(&status, "VmLck:"), field(&status, "VmSize:"), "every VMA locked: {status}");
    // sys_brk's populate branch: the heap's new pages are faulted in by brk itself.
    let b = m.current_break();
    let rss1 = m.counters().rss;
    assert!(rss1 > rss0, "MCL_CURRENT populated what was mapped");
    // SAFETY: growing the break takes nothing away.
    let nb = unsafe { m.brk(b + 64 * PAGE) };
    assert_eq!(nb, b + 64 * PAGE);
    assert_eq!(m.counters().rss - rss1, 64, "brk populated its 64 new pages");
    assert!(page_flags(&m, b).unwrap() & KPF_MLOCKED != 0);
    // A new mapping is locked and populated too (def_flags).
    // SAFETY: without MAP_FIXED nothing is replaced.
    let r = unsafe { m.mmap(0, 16 * PAGE, RW, ANON, -1, 0) }.unwrap();
    assert!(m.vma_at(r).unwrap().flags & 0x2000 != 0, "VM_LOCKED");
    assert!(page_flags(&m, r + 15 * PAGE).unwrap() & KPF_MLOCKED != 0);
    m.check().unwrap();
    m.munlockall().unwrap();
    assert_eq!(field(&text(|w| m.write_status(w)), "VmLck:"), 0);
    assert!(page_flags(&m, r).unwrap() & KPF_LRU != 0);
    // SAFETY: without MAP_FIXED nothing is replaced.
    let s = unsafe { m.mmap(0, 4 * PAGE, RW, ANON, -1, 0) }.unwrap();
    assert_eq!(m.pagemap(s) & PM_PRESENT, 0, "def_flags cleared: not populated");
    // MCL_ONFAULT: new memory is locked but not faulted in, heap growth included.
    m.mlockall(1 | 2 | 4).unwrap();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let t = unsafe { m.mmap(0, 16 * PAGE, RW, ANON, -1, 0) }.unwrap();
    assert!(m.vma_at(t).unwrap().flags & 0x82000 == 0x82000, "VM_LOCKED | VM_LOCKONFAULT");
    assert_eq!(m.pagemap(t) & PM_PRESENT, 0, "locked on fault: not populated");
    let rss = m.counters().rss;
    let b = m.current_break();
    // SAFETY: growing the break takes nothing away.
    unsafe { m.brk(b + 16 * PAGE) };
    assert_eq!(m.counters().rss, rss, "brk does not populate an on-fault heap");
    // SAFETY: the mapping just made.
    unsafe { poke(t, 1) };
    assert!(page_flags(&m, t).unwrap() & KPF_MLOCKED != 0, "touched, it is locked");
    m.munlockall().unwrap();
    m.check().unwrap();
}

#[test]
fn a_page_left_only_in_an_unlocked_mapping_is_reclaimable_again() {
    let m = small_machine(32, 64);
    m.set_rlimits(kernel_sim::Rlimits { memlock: u64::MAX, ..m.rlimits() });
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 4 * PAGE, RW, ANON, -1, 0) }.unwrap();
    m.mlock(p, 4 * PAGE).unwrap();
    let (to_parent, from_child) = pipe();
    let (to_child, from_parent) = pipe();
    // SAFETY: the child only uses the machine and raw system calls, then _exits.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        // The child's copy of the VMA is not locked (fork clears VM_LOCKED).
        send(to_parent, 1);
        recv(from_parent);
        m.exit_process();
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(recv(from_child), 1);
    let pfn = m.pagemap(p) & ((1 << 55) - 1);
    assert!(m.kpageflags(pfn as usize) & KPF_MLOCKED != 0);
    // The parent's locked mapping goes; the child's unlocked one still maps the page.
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 4 * PAGE) }.unwrap();
    let f = m.kpageflags(pfn as usize);
    assert!(f & (KPF_MLOCKED | KPF_UNEVICTABLE) == 0 && f & KPF_LRU != 0, "{f:#x}");
    assert_eq!(field(&text(|w| m.write_meminfo(w)), "Mlocked:"), 0);
    send(to_child, 1);
    m.waitpid(child).unwrap();
    m.check().unwrap();
}

#[test]
fn the_oom_killer_takes_the_process_oom_badness_picks() {
    // No swap: nothing anonymous can be reclaimed.
    let m = Machine::boot(&Config { phys_bytes: 32 << 20, ..Config::DEFAULT }).unwrap();
    let (to_parent, from_children) = pipe();
    let mut kids = Vec::new();
    let mut go = Vec::new();
    for (k, mib) in [(0u64, 6usize), (1, 14)] {
        let (to_child, from_parent) = pipe();
        // SAFETY: the child only makes raw system calls and uses the machine, then _exits.
        let child = unsafe { m.fork() }.unwrap();
        if child == 0 {
            let pages = (mib << 20) / PAGE;
            // SAFETY: the child's own new mapping.
            let ok = unsafe {
                let own = m.mmap(0, pages * PAGE, RW, ANON, -1, 0).unwrap();
                fill(own, pages, 50 + k);
                send(to_parent, 1);
                recv(from_parent);
                verify(own, pages, 50 + k).is_ok()
            };
            m.exit_process();
            send(to_parent, if ok { 1 } else { 2 });
            // SAFETY: leaving the child.
            unsafe { libc::_exit(0) };
        }
        assert_eq!(recv(from_children), 1);
        kids.push(child);
        go.push(to_child);
    }
    let scores: Vec<usize> = kids.iter().map(|&pid| m.as_process(pid, || m.oom_score()).unwrap()).collect();
    assert!(scores[1] > scores[0] && scores[1] > m.oom_score(), "{scores:?}, parent {}", m.oom_score());
    // The parent's 12 MiB do not fit beside the children's 20: at the fault that finds no
    // frame, the 14 MiB child has the highest badness and goes.
    let pages = (12 << 20) / PAGE;
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: the mapping just made.
    unsafe { fill(p, pages, 52) };
    // SAFETY: as above.
    unsafe { verify(p, pages, 52) }.unwrap();
    assert_eq!(field(&text(|w| m.write_vmstat(w)), "oom_kill "), 1);
    let status = m.waitpid(kids[1]).unwrap();
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL, "{status:#x}");
    // The other child lives on, its memory intact.
    send(go[0], 1);
    assert_eq!(recv(from_children), 1, "the small child's bytes");
    assert!(libc::WIFEXITED(m.waitpid(kids[0]).unwrap()));
    m.check().unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, pages * PAGE) }.unwrap();
    m.check().unwrap();
}

#[test]
fn pread_and_pwrite_reach_swapped_buffers() {
    let m = small_machine(24, 160);
    let path =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("swap-io-{}", std::process::id()));
    let len = 6 << 20;
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let fd = m.open(&cpath, libc::O_RDWR, 0).unwrap();
    // A buffer written, then pushed to swap by four times RAM of other memory.
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let buf = unsafe { m.mmap(0, len, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: the mapping just made.
    unsafe { fill(buf, len / PAGE, 60) };
    let pages = (96 << 20) / PAGE;
    // SAFETY: as above.
    let other = unsafe { m.mmap(0, pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: as above.
    unsafe { fill(other, pages, 61) };
    assert!((0..len / PAGE).any(|i| m.pagemap(buf + i * PAGE) & PM_SWAP != 0), "the buffer was swapped");
    // SAFETY: the buffer is this test's simulated memory, which nothing else uses; the
    // slice lives only for the call.
    let n = m.pread(fd, unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, len) }, 0).unwrap();
    assert_eq!(n, len);
    // SAFETY: as above.
    let got = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
    assert!(got == &bytes[..], "pread filled the swapped buffer with the file's bytes");
    // And back: push the buffer out again, then pwrite it at an offset.
    // SAFETY: as above.
    unsafe { fill(other, pages, 62) };
    // SAFETY: as above.
    let n = m.pwrite(fd, unsafe { std::slice::from_raw_parts(buf as *const u8, len) }, len as i64).unwrap();
    assert_eq!(n, len);
    m.fsync(fd).unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert!(on_disk[len..] == bytes[..], "pwrite from the swapped buffer");
    m.close(fd).unwrap();
    m.check().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn madvise_cold_and_pageout_act_at_once() {
    let m = small_machine(64, 64);
    let n = 64;
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let p = unsafe { m.mmap(0, n * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: the mapping just made.
    unsafe { fill(p, n, 70) };
    // Let reclaim look: the pages it kept are marked referenced (it swaps some out).
    m.set_swappiness(200).unwrap();
    m.reclaim();
    let referenced = |i: usize| page_flags(&m, p + i * PAGE).map(|f| f & KPF_REFERENCED != 0);
    let count = |r: std::ops::Range<usize>| r.filter(|&i| referenced(i) == Some(true)).count();
    let (low, high) = (count(0..32), count(32..n));
    assert!(low > 0 && high > 0, "{low} {high}");
    // MADV_COLD: the first half forgets its use; the second keeps it.
    // SAFETY: advice that discards nothing.
    unsafe { m.madvise(p, 32 * PAGE, libc::MADV_COLD) }.unwrap();
    assert_eq!((count(0..32), count(32..n)), (0, high));
    // MADV_PAGEOUT: the resident pages of 32..48 go to swap at once, referenced or not.
    let resident = (32..48).filter(|&i| m.pagemap(p + i * PAGE) & PM_PRESENT != 0).count() as u64;
    assert!(resident > 0);
    let out0 = field(&text(|w| m.write_vmstat(w)), "pswpout ");
    // SAFETY: the contents stay (they go to swap).
    unsafe { m.madvise(p + 32 * PAGE, 16 * PAGE, libc::MADV_PAGEOUT) }.unwrap();
    assert!((32..48).all(|i| m.pagemap(p + i * PAGE) & PM_SWAP != 0), "paged out");
    assert_eq!(field(&text(|w| m.write_vmstat(w)), "pswpout ") - out0, resident);
    // SAFETY: as above.
    unsafe { verify(p, n, 70) }.unwrap();
    // MADV_FREE over swapped-out pages frees their slots: they read as zeros after.
    // SAFETY: as above.
    unsafe { m.madvise(p + 32 * PAGE, 16 * PAGE, libc::MADV_PAGEOUT) }.unwrap();
    let used = |m: &Machine| {
        let mi = text(|w| m.write_meminfo(w));
        field(&mi, "SwapTotal:") - field(&mi, "SwapFree:")
    };
    let before = used(&m);
    // SAFETY: the program gives these contents up.
    unsafe { m.madvise(p + 32 * PAGE, 16 * PAGE, libc::MADV_FREE) }.unwrap();
    assert_eq!(before - used(&m), 64, "sixteen slots back");
    // SAFETY: as above.
    assert!((32..48).all(|i| unsafe { peek(p + i * PAGE) } == 0));
    // A file mapping's clean pages are dropped from the cache and read again.
    let path =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pageout-{}", std::process::id()));
    std::fs::write(&path, vec![b'z'; 8 * PAGE]).unwrap();
    let fd = m.open(&CString::new(path.to_str().unwrap()).unwrap(), libc::O_RDONLY, 0).unwrap();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let f = unsafe { m.mmap(0, 8 * PAGE, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) }.unwrap();
    // SAFETY: the file mapping just made, read.
    unsafe { peek(f + 3 * PAGE) };
    let cached = m.counters().nr_file_pages;
    // SAFETY: as above.
    unsafe { m.madvise(f, 8 * PAGE, libc::MADV_PAGEOUT) }.unwrap();
    // Only the mapped page goes (the advice walks PTEs); read-around cached the others.
    assert_eq!(m.counters().nr_file_pages, cached - 1, "dropped from the page cache");
    let mut vec = [0u8; 8];
    m.mincore(f, 8 * PAGE, &mut vec).unwrap();
    assert_eq!(vec, [1, 1, 1, 0, 1, 1, 1, 1]);
    // SAFETY: as above.
    assert_eq!(unsafe { (f as *const u8).add(3 * PAGE).read_volatile() }, b'z');
    // Locked memory refuses the advice.
    m.set_rlimits(kernel_sim::Rlimits { memlock: u64::MAX, ..m.rlimits() });
    m.mlock(p, PAGE).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { m.madvise(p, PAGE, libc::MADV_PAGEOUT) }, Err(kernel_sim::Errno::EINVAL));
    m.close(fd).unwrap();
    m.check().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn madvise_free_pages_are_dropped_unless_written_again() {
    // No swap: only the lazily freed pages can be reclaimed.
    let m = Machine::boot(&Config { phys_bytes: 32 << 20, ..Config::DEFAULT }).unwrap();
    let a_pages = (16 << 20) / PAGE;
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let a = unsafe { m.mmap(0, a_pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: the mapping just made.
    unsafe { fill(a, a_pages, 80) };
    // SAFETY: the program gives these contents up (MADV_FREE's contract).
    unsafe { m.madvise(a, a_pages * PAGE, libc::MADV_FREE) }.unwrap();
    let lazy = |m: &Machine| field(&text(|w| m.write_smaps_rollup(w)), "LazyFree:");
    assert_eq!(lazy(&m), 16 << 10);
    assert_eq!(field(&text(|w| m.write_vmstat(w)), "pglazyfree "), a_pages as u64);
    // Writing a page takes it back.
    for i in 0..16 {
        // SAFETY: as above.
        unsafe { poke(a + i * PAGE, pattern(81, i, 0)) };
    }
    assert_eq!(lazy(&m), (16 << 10) - 64);
    // 24 MiB more than fits beside it: reclaim drops clean lazily freed pages.
    let b_pages = (24 << 20) / PAGE;
    // SAFETY: as above.
    let b = unsafe { m.mmap(0, b_pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: as above.
    unsafe { fill(b, b_pages, 82) };
    let dropped = field(&text(|w| m.write_vmstat(w)), "pglazyfreed ");
    assert!(dropped > 1000, "{dropped} pages dropped");
    // SAFETY: as above.
    unsafe { verify(b, b_pages, 82) }.unwrap();
    let mut zeros = 0;
    for i in 0..a_pages {
        // SAFETY: as above.
        let v = unsafe { peek(a + i * PAGE) };
        if i < 16 {
            assert_eq!(v, pattern(81, i, 0), "written after MADV_FREE: kept");
        } else if v == 0 {
            zeros += 1;
        } else {
            assert_eq!(v, pattern(80, i, 0), "a lazily freed page keeps its bytes or reads zero");
        }
    }
    assert_eq!(zeros, dropped, "each dropped page reads as zero");
    m.check().unwrap();
}
