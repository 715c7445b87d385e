//! Processes: `fork` with copy-on-write on one machine, checked from both processes and
//! against the real kernel, exit and reaping with every frame back, and ptalloc's model test
//! running on in a forked child.
//!
//! The children only make raw system calls and use the machine (they are forks of a
//! multi-threaded test program); parent and child talk through pipes.

use std::ffi::CString;

use kernel_sim::{Config, Machine, MachineBox, MemStats, SimKernel};

mod common;
use common::{pipe, recv, send};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
const TWO_MB: usize = 2 << 20;

fn machine() -> MachineBox {
    Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap()
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

fn stats_at(m: &Machine, addr: usize) -> MemStats {
    m.vma_at(addr).unwrap().stats
}

#[test]
fn fork_copies_on_write_and_shares_what_is_shared() {
    let m = machine();
    let base_anon = m.counters().nr_anon_pages;
    let free0 = m.counters().free_pages;
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let (p, s) = unsafe {
        (
            m.mmap(0, 16 * PAGE, RW, ANON, -1, 0).unwrap(),
            m.mmap(0, 4 * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0).unwrap(),
        )
    };
    for i in 0..16 {
        // SAFETY: pages of the mappings just made, touched only through raw addresses.
        unsafe { poke(p + i * PAGE, i as u64) };
    }
    // SAFETY: as above.
    unsafe { poke(s, 1) };
    let parent_pid = m.getpid();
    let cow0 = m.counters().cow_faults;
    let (to_child, from_parent) = pipe();
    let (to_parent, from_child) = pipe();
    // SAFETY: the child makes raw system calls and uses the machine only, then _exits.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        // SAFETY: the child's own copy-on-write pages and the shared page.
        unsafe {
            for i in 0..4 {
                poke(p + i * PAGE, 100 + i as u64);
            }
            let ok = peek(p + 8 * PAGE) == 8 && peek(p) == 100;
            poke(s + 8, 42);
            send(to_parent, u8::from(ok));
        }
        recv(from_parent);
        m.exit_process();
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(recv(from_child), 1, "the child saw its own writes and the parent's pages");
    assert!(child != parent_pid && child > 0);
    let (pids, n) = m.pids();
    assert_eq!(&pids[..n], &[parent_pid, child]);
    // SAFETY: as above.
    unsafe {
        assert_eq!(peek(p), 0, "the parent's page is its own");
        assert_eq!(peek(s + 8), 42, "the shared page is shared");
    }
    assert_eq!(m.counters().cow_faults - cow0, 4, "four copies, taken by the child");
    let kb = 1024u64;
    let parent = stats_at(&m, p);
    assert_eq!((parent.private_dirty / kb, parent.shared_dirty / kb), (16, 48), "parent: 4 own, 12 shared");
    let child_stats = m.as_process(child, || stats_at(&m, p)).unwrap();
    assert_eq!(
        (child_stats.private_dirty / kb, child_stats.shared_dirty / kb),
        (16, 48),
        "child: 4 own, 12 shared"
    );
    assert_eq!(child_stats.pss, (4 * PAGE as u64 + 6 * PAGE as u64) << 12, "PSS splits what is shared");
    let child_counters = m.as_process(child, || m.counters()).unwrap();
    assert_eq!(child_counters.rss_anon, 16);
    assert_eq!(m.counters().nr_anon_pages - base_anon, 16 + 4, "20 anonymous pages in all");
    m.check().unwrap();
    m.as_process(child, || m.check_mm()).unwrap().unwrap();
    let mut rollup = String::new();
    m.as_process(child, || m.write_smaps_rollup(&mut rollup)).unwrap().unwrap();
    assert!(rollup.contains("Shared_Dirty:         52 kB"), "{rollup}");
    // The picture has a row per process and marks the frames they share.
    let mut svg = String::new();
    m.write_svg(&mut svg).unwrap();
    assert!(svg.contains(&format!("process {parent_pid}:")) && svg.contains(&format!("process {child}:")));
    let vmas = m.counters().map_count + child_counters.map_count;
    assert_eq!(svg.matches("<title>").count(), vmas);
    assert!(svg.contains("(64 KiB resident, 48 KiB shared)"), "the private region's box");
    assert!(svg.contains(r##"fill="#8e44ad" fill-opacity"##), "shared frames marked in their zone");

    // Now the parent writes a shared page: it copies too, and the child keeps its own.
    // SAFETY: as above.
    unsafe { poke(p + 10 * PAGE, 7) };
    assert_eq!(m.counters().cow_faults - cow0, 5);
    send(to_child, 1);
    let status = m.waitpid(child).unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{status:#x}");
    let (_, n) = m.pids();
    assert_eq!(n, 1, "the child is gone");
    // Its pages are: the 11 pages it still shared are the parent's alone again.
    let parent = stats_at(&m, p);
    assert_eq!((parent.private_dirty / kb, parent.shared_dirty / kb), (64, 0));
    // SAFETY: as above.
    unsafe { poke(p + 12 * PAGE, 9) };
    assert_eq!(m.counters().cow_faults - cow0, 5, "a page mapped once is written in place");
    // SAFETY: nothing refers into the mappings.
    unsafe {
        m.munmap(p, 16 * PAGE).unwrap();
        m.munmap(s, 4 * PAGE).unwrap();
    }
    let c = m.counters();
    assert_eq!(c.nr_anon_pages, base_anon, "every anonymous page is back");
    assert!(free0 - c.free_pages < 8, "frames back but for a few slab pages: {} {}", free0, c.free_pages);
    m.check().unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn fork_errors_and_a_child_that_never_exits_on_the_machine() {
    let m = machine();
    let free0 = m.counters().free_pages;
    // SAFETY: as in the first test.
    let p = unsafe { m.mmap(0, 8 * PAGE, RW, ANON, -1, 0) }.unwrap();
    for i in 0..8 {
        // SAFETY: pages of the mapping just made.
        unsafe { poke(p + i * PAGE, i as u64) };
    }
    // SAFETY: the child only writes a page and _exits without exit_process.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        // SAFETY: a copy-on-write page of the child's.
        unsafe {
            poke(p, 5);
            libc::_exit(3)
        };
    }
    let status = m.waitpid(child).unwrap();
    assert_eq!(libc::WEXITSTATUS(status), 3);
    assert_eq!(m.waitpid(child), Err(kernel_sim::Errno(libc::ECHILD)), "reaped once");
    assert_eq!(m.as_process(child, || ()), Err(kernel_sim::Errno(libc::ESRCH)));
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 8 * PAGE) }.unwrap();
    assert!(free0 - m.counters().free_pages < 8);
    m.check().unwrap();
    // The machine's process table is finite.
    let mut kids = Vec::new();
    let (to_parent, from_child) = pipe();
    let (to_child, from_parent) = pipe();
    loop {
        // SAFETY: each child waits for one byte, then exits on the machine and _exits.
        match unsafe { m.fork() } {
            Ok(0) => {
                send(to_parent, 1);
                recv(from_parent);
                m.exit_process();
                // SAFETY: leaving the child.
                unsafe { libc::_exit(0) };
            }
            Ok(pid) => {
                recv(from_child);
                kids.push(pid);
            }
            Err(e) => {
                assert_eq!(e, kernel_sim::Errno::EAGAIN);
                break;
            }
        }
    }
    assert_eq!(kids.len(), kernel_sim::MAX_TASKS - 1);
    for _ in &kids {
        send(to_child, 1);
    }
    for pid in kids {
        m.waitpid(pid).unwrap();
    }
    m.check().unwrap();
}

/// One real or simulated side of the fork differential: the same regions at the same
/// offsets within 2 MiB, written and read the same way.
struct Regions {
    /// Private anonymous, all written; private anonymous, only read (zero page); shared
    /// anonymous, written; a private file mapping, read.
    bases: [usize; 4],
}

const REGION_PAGES: [usize; 4] = [24, 8, 8, 16];

fn touch_before_fork(r: &Regions) {
    for i in 0..REGION_PAGES[0] {
        // SAFETY: the side's own writable mapping.
        unsafe { poke(r.bases[0] + i * PAGE, i as u64 + 1) };
    }
    for i in 0..REGION_PAGES[1] {
        // SAFETY: the side's own readable mapping.
        unsafe { peek(r.bases[1] + i * PAGE) };
    }
    for i in 0..REGION_PAGES[2] {
        // SAFETY: as above.
        unsafe { poke(r.bases[2] + i * PAGE, 3) };
    }
    // SAFETY: as above.
    unsafe { peek(r.bases[3] + 5 * PAGE) };
}

fn touch_in_child(r: &Regions) {
    for i in (0..REGION_PAGES[0]).step_by(3) {
        // SAFETY: the child's copy-on-write pages.
        unsafe { poke(r.bases[0] + i * PAGE, 77) };
    }
    for i in 0..3 {
        // SAFETY: as above, read.
        unsafe {
            peek(r.bases[1] + i * PAGE);
            peek(r.bases[2] + i * PAGE);
        }
    }
    // SAFETY: a private file page, written: a copy.
    unsafe { poke(r.bases[3] + 2 * PAGE, 1) };
}

/// smaps fields of interest, per region, from smaps text.
fn smaps_rows(smaps: &str, r: &Regions) -> Vec<[u64; 6]> {
    r.bases
        .iter()
        .map(|&b| {
            let head = format!("{b:x}-");
            let mut out = [0u64; 6];
            let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
            assert!(lines.next().is_some(), "no VMA at {b:x} in\n{smaps}");
            for l in lines {
                if l.starts_with("VmFlags:") {
                    break;
                }
                let names = [
                    "Rss:",
                    "Shared_Clean:",
                    "Shared_Dirty:",
                    "Private_Clean:",
                    "Private_Dirty:",
                    "Anonymous:",
                ];
                if let Some(i) = names.iter().position(|n| l.starts_with(n)) {
                    out[i] = l.split_whitespace().nth(1).unwrap().parse().unwrap();
                }
            }
            out
        })
        .collect()
}

/// Read `/proc/self/smaps` without allocating, into `buf`; its length.
fn raw_smaps(buf: &mut [u8]) -> usize {
    // SAFETY: raw system calls into a caller's buffer.
    unsafe {
        let fd = libc::open(c"/proc/self/smaps".as_ptr(), libc::O_RDONLY);
        let mut n = 0;
        loop {
            let r = libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::close(fd);
        n
    }
}

fn write_all(fd: i32, b: &[u8]) {
    let mut done = 0;
    while done < b.len() {
        // SAFETY: writing from a live slice.
        let n = unsafe { libc::write(fd, b[done..].as_ptr().cast(), b.len() - done) };
        assert!(n > 0);
        done += n as usize;
    }
}

fn read_all(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

#[test]
fn after_fork_both_processes_smaps_match_the_real_kernels() {
    let file =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fork-{}", std::process::id()));
    let content: Vec<u8> = (0..REGION_PAGES[3] * PAGE).map(|i| i as u8).collect();
    // Written a page at a time and synced, so both page caches hold it clean, in pages.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        for c in content.chunks(PAGE) {
            f.write_all(c).unwrap();
        }
        f.sync_all().unwrap();
    }
    let cfile = CString::new(file.to_str().unwrap()).unwrap();

    // The real kernel, in a child of the test (so that its own address space is simple):
    // it maps, touches, forks a grandchild that writes, and both report their smaps.
    let (wr, rd) = pipe();
    let mut big = vec![0u8; 1 << 20];
    // SAFETY: the child makes raw system calls only, into buffers made before the fork.
    let real = unsafe { libc::fork() };
    if real == 0 {
        // SAFETY: raw system calls on the child's own memory.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
            let res = libc::mmap(
                core::ptr::null_mut(),
                5 * TWO_MB,
                libc::PROT_NONE,
                ANON | libc::MAP_NORESERVE,
                -1,
                0,
            );
            let top = (res as usize).next_multiple_of(TWO_MB);
            let fd = libc::open(cfile.as_ptr(), libc::O_RDONLY);
            let mut r = Regions { bases: [0; 4] };
            for (k, pages) in REGION_PAGES.into_iter().enumerate() {
                let at = top + k * TWO_MB;
                let len = pages * PAGE;
                let (flags, fd) = match k {
                    2 => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
                    3 => (libc::MAP_PRIVATE, fd),
                    _ => (ANON, -1),
                };
                let p = libc::mmap(at as *mut _, len, RW, flags | libc::MAP_FIXED, fd, 0);
                r.bases[k] = p as usize;
            }
            touch_before_fork(&r);
            let (cwr, crd) = pipe();
            let (gwr, grd) = pipe();
            let g = libc::fork();
            if g == 0 {
                touch_in_child(&r);
                let n = raw_smaps(&mut big);
                write_all(cwr, &(n as u64).to_le_bytes());
                write_all(cwr, &big[..n]);
                recv(grd);
                libc::_exit(0);
            }
            let mut len = [0u8; 8];
            // Not forever: a grandchild that failed would leave us waiting.
            let mut pfd = libc::pollfd { fd: crd, events: libc::POLLIN, revents: 0 };
            if libc::poll(&mut pfd, 1, 30_000) != 1 {
                libc::_exit(97);
            }
            libc::read(crd, len.as_mut_ptr().cast(), 8);
            let n = u64::from_le_bytes(len) as usize;
            let mut got = 0;
            while got < n {
                let r = libc::read(crd, big[got..].as_mut_ptr().cast(), n - got);
                if r <= 0 {
                    libc::_exit(96);
                }
                got += r as usize;
            }
            write_all(wr, &(r.bases[0] as u64).to_le_bytes());
            for b in r.bases {
                write_all(wr, &(b as u64).to_le_bytes());
            }
            write_all(wr, &(n as u64).to_le_bytes());
            write_all(wr, &big[..n]);
            let pn = raw_smaps(&mut big);
            write_all(wr, &big[..pn]);
            send(gwr, 1);
            libc::_exit(0);
        }
    }
    // SAFETY: our copy of the write end.
    unsafe { libc::close(wr) };
    let all = read_all(rd);
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(real, core::ptr::null_mut(), 0) };
    let word = |i: usize| u64::from_le_bytes(all[8 * i..8 * i + 8].try_into().unwrap()) as usize;
    let real_r = Regions { bases: [word(1), word(2), word(3), word(4)] };
    let n = word(5);
    let real_child = String::from_utf8_lossy(&all[48..48 + n]).into_owned();
    let real_parent = String::from_utf8_lossy(&all[48 + n..]).into_owned();

    // The simulation.
    let m = machine();
    let fd = m.open(&cfile, libc::O_RDONLY, 0).unwrap();
    // SAFETY: the machine is this test's own; MAP_FIXED replaces only the reservation.
    let sim_r = unsafe {
        let res = m.mmap(0, 5 * TWO_MB, libc::PROT_NONE, ANON | libc::MAP_NORESERVE, -1, 0).unwrap();
        let top = res.next_multiple_of(TWO_MB);
        let mut r = Regions { bases: [0; 4] };
        for (k, pages) in REGION_PAGES.into_iter().enumerate() {
            let at = top + k * TWO_MB;
            let (flags, f) = match k {
                2 => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
                3 => (libc::MAP_PRIVATE, fd),
                _ => (ANON, -1),
            };
            r.bases[k] = m.mmap(at, pages * PAGE, RW, flags | libc::MAP_FIXED, f, 0).unwrap();
        }
        r
    };
    // The file is cached on the simulation too before the mapping is touched, as it is on
    // the real kernel (which wrote it).
    m.posix_fadvise(fd, 0, 0, libc::POSIX_FADV_WILLNEED).unwrap();
    touch_before_fork(&sim_r);
    let (to_parent, from_child) = pipe();
    let (to_child, from_parent) = pipe();
    // SAFETY: the child touches its pages, reports, then exits on the machine and _exits.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        touch_in_child(&sim_r);
        send(to_parent, 1);
        recv(from_parent);
        m.exit_process();
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) };
    }
    recv(from_child);
    let mut sim_parent = String::new();
    m.write_smaps(&mut sim_parent).unwrap();
    let mut sim_child = String::new();
    m.as_process(child, || m.write_smaps(&mut sim_child)).unwrap().unwrap();
    m.as_process(child, || m.check_mm()).unwrap().unwrap();
    send(to_child, 1);
    m.waitpid(child).unwrap();
    assert_eq!(smaps_rows(&sim_parent, &sim_r), smaps_rows(&real_parent, &real_r), "the parent's regions");
    assert_eq!(smaps_rows(&sim_child, &sim_r), smaps_rows(&real_child, &real_r), "the child's regions");
    m.check().unwrap();
    std::fs::remove_file(file).unwrap();
}

/// ptalloc's model test on the default machine, in a parent and then in a forked child
/// that goes on from the parent's heap. Run in a fresh single-threaded copy of this test
/// program (the child allocates from the host heap for its model, which is only safe in a
/// process that had one thread at the fork).
#[test]
fn ptalloc_runs_on_in_a_forked_child() {
    if std::env::var_os("KSIM_FORK_MODEL").is_some() {
        return model_scenario();
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "ptalloc_runs_on_in_a_forked_child", "--test-threads=1", "--nocapture"])
        .env("KSIM_FORK_MODEL", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("child model ok"), "{text}");
}

fn model_scenario() {
    use ptalloc::Malloc;
    use ptalloc_testkit::model::{Mix, Model};
    // SAFETY: the only Malloc<SimKernel> of this process.
    static SIM: Malloc<SimKernel> = unsafe { Malloc::new(SimKernel::new()) };
    let m = SIM.kernel().machine();
    // The process's threads share its address space (mm_users).
    let users = m.mm_users();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let _ = rx.lock().unwrap().recv();
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(m.mm_users(), users + 2, "two more threads share the mm");
    let mut status = String::new();
    m.write_status(&mut status).unwrap();
    assert!(status.contains(&format!("Threads:\t{}", users + 2)), "{status}");
    drop(tx);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let model = Model::new(&SIM, 1000);
    let mix = Mix { max_size: 1 << 20, ..Mix::default() };
    model.run_random(&mix, 7, 20_000, 1000).unwrap();
    SIM.check_heap().unwrap();
    m.check().unwrap();
    // SAFETY: this process has one thread (see the caller), so the child may allocate.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        let r = model.run_random(&mix, 8, 20_000, 1000).and_then(|_| model.drain(&mut Default::default()));
        let ok = r.is_ok() && SIM.check_heap().is_ok() && m.check_mm().is_ok() && m.mm_users() == 1;
        if ok {
            println!("child model ok");
        }
        m.exit_process();
        // SAFETY: leaving the child.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let status = m.waitpid(child).unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child's model run failed");
    // The parent's heap is untouched by what the child did.
    model.run_random(&mix, 9, 10_000, 1000).unwrap();
    model.drain(&mut Default::default()).unwrap();
    SIM.check_heap().unwrap();
    m.check().unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn two_processes_mapping_a_file_share_its_cache_frames() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fork-shared-{}", std::process::id()));
    std::fs::write(&path, vec![b'a'; 4 * PAGE]).unwrap();
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let m = machine();
    let fd = m.open(&cpath, libc::O_RDWR, 0).unwrap();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 4 * PAGE, RW, libc::MAP_SHARED, fd, 0) }.unwrap();
    // SAFETY: the shared mapping just made, read.
    unsafe { peek(p) };
    let cached = m.counters().nr_file_pages;
    let (to_parent, from_child) = pipe();
    let (to_child, from_parent) = pipe();
    // SAFETY: the child reads and writes its mapping, uses the machine, then _exits.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        // SAFETY: the child's shared mapping of the file.
        unsafe {
            peek(p + 2 * PAGE);
            ((p + PAGE) as *mut u8).write_volatile(b'c');
        }
        send(to_parent, 1);
        recv(from_parent);
        m.exit_process();
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) };
    }
    recv(from_child);
    // SAFETY: the parent's mapping: it sees the child's write through the shared frame.
    assert_eq!(unsafe { ((p + PAGE) as *const u8).read_volatile() }, b'c');
    let kb = 1024u64;
    for pid in [m.getpid(), child] {
        let v = m.as_process(pid, || stats_at(&m, p)).unwrap();
        assert_eq!(
            (v.shared_clean / kb, v.shared_dirty / kb),
            (12, 4),
            "process {pid} shares all four pages"
        );
    }
    assert_eq!(m.counters().nr_file_pages, cached, "one page cache for both");
    assert_eq!(m.counters().nr_dirty, 1);
    m.fsync(fd).unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[PAGE..PAGE + 2], b"ca", "the child's byte is in the file");
    // The child still maps the page writable, which the parent cannot take away: it stays
    // dirty for the next write-back.
    assert_eq!(m.counters().nr_dirty, 1);
    m.check().unwrap();
    m.as_process(child, || m.check_mm()).unwrap().unwrap();
    send(to_child, 1);
    m.waitpid(child).unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 4 * PAGE) }.unwrap();
    m.close(fd).unwrap();
    assert_eq!(m.counters().nr_dirty, 0, "written back with the last reference");
    m.check().unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn each_process_uses_its_own_host_descriptors_for_a_shared_file() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fork-fds-{}", std::process::id()));
    std::fs::write(&path, vec![b'.'; 64]).unwrap();
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let m = machine();
    let (to_parent, from_child) = pipe();
    let (to_child, from_parent) = pipe();
    // SAFETY: the child uses the machine and raw system calls only, then _exits.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        // The child opens the file first: its host descriptor is its own.
        let ok = m
            .open(&cpath, libc::O_RDWR, 0)
            .is_ok_and(|fd| m.pwrite(fd, b"child", 0) == Ok(5) && m.fsync(fd).is_ok());
        send(to_parent, u8::from(ok));
        recv(from_parent);
        m.exit_process();
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(recv(from_child), 1);
    // The parent opens the same file (the machine's inode is the child's) and a second one
    // whose host descriptor could take the number the child's has.
    let other = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fork-fds-other-{}", std::process::id()));
    std::fs::write(&other, b"other").unwrap();
    let fd = m.open(&cpath, libc::O_RDWR, 0).unwrap();
    let fo = m.open(&CString::new(other.to_str().unwrap()).unwrap(), libc::O_RDWR, 0).unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(m.pread(fd, &mut buf, 0), Ok(5));
    assert_eq!(&buf, b"child", "one page cache for both processes");
    assert_eq!(m.pwrite(fd, b"parent", 10), Ok(6));
    m.fsync(fd).unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[..5], b"child");
    assert_eq!(&on_disk[10..16], b"parent", "written through the parent's own descriptor");
    assert_eq!(std::fs::read(&other).unwrap(), b"other", "and not into another file");
    send(to_child, 1);
    m.waitpid(child).unwrap();
    m.close(fd).unwrap();
    m.close(fo).unwrap();
    m.check().unwrap();
    std::fs::remove_file(path).unwrap();
    std::fs::remove_file(other).unwrap();
}
