//! Files and the page cache: mappings of host files filled from them on faults, private
//! writes copied, shared writes dirtying the cache and written back by `msync`, `fsync`,
//! the flusher's pass and the last reference; `pread`/`pwrite` through the same cache;
//! truncation; `posix_fadvise`; and the errors of every call on a bad descriptor or mode.
//! The comparison with the real kernel is `differential_files.rs`.

use std::ffi::CString;
use std::path::PathBuf;

use kernel_sim::{Config, Counters, Machine, MachineBox};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

fn machine() -> MachineBox {
    Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap()
}

/// A file of this test binary's own, with `bytes` in it.
fn host_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("files-{}-{tag}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn cpath(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// Bytes that differ from page to page and within a page.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / PAGE) as u8).collect()
}

/// # Safety
/// `addr` lies in a readable mapping of the test's own machine.
unsafe fn peek(addr: usize) -> u8 {
    // SAFETY: the caller's promise.
    unsafe { (addr as *const u8).read_volatile() }
}

/// # Safety
/// `addr` lies in a writable mapping of the test's own machine that nothing else uses.
unsafe fn poke(addr: usize, v: u8) {
    // SAFETY: the caller's promise.
    unsafe { (addr as *mut u8).write_volatile(v) }
}

fn resident(m: &Machine, addr: usize, pages: usize) -> Vec<u8> {
    let mut v = vec![0u8; pages];
    m.mincore(addr, pages * PAGE, &mut v).unwrap();
    v
}

fn meminfo_kb(m: &Machine, label: &str) -> usize {
    let mut s = String::new();
    m.write_meminfo(&mut s).unwrap();
    let line = s.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("{label} in {s}"));
    line[label.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn delta(a: &Counters, b: &Counters) -> (u64, u64, u64) {
    (b.maj_flt - a.maj_flt, b.pgmajfault - a.pgmajfault, b.pgpgin - a.pgpgin)
}

#[test]
fn a_read_fault_reads_its_window_from_the_file_and_fault_around_maps_what_is_cached() {
    let data = pattern(64 * PAGE);
    let path = host_file("read", &data);
    let m = machine();
    let fd = m.open(&cpath(&path), libc::O_RDONLY, 0).unwrap();
    assert_eq!(fd, 3, "the first descriptor");
    // SAFETY: without MAP_FIXED nothing is replaced; the file is this test's own.
    let p = unsafe { m.mmap(0, 64 * PAGE, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) }.unwrap();
    let c0 = m.counters();
    // SAFETY: in the mapping just made.
    assert_eq!(unsafe { peek(p + 20 * PAGE + 5) }, data[20 * PAGE + 5]);
    let c1 = m.counters();
    // Read-around: 32 pages centred on page 20, read at once; only page 20 is mapped.
    assert_eq!(delta(&c0, &c1), (1, 1, 32 * 4), "one major fault reading 128 kB");
    assert_eq!(c1.nr_file_pages - c0.nr_file_pages, 32);
    assert_eq!(c1.rss_file - c0.rss_file, 1);
    let want: Vec<u8> = (0..64).map(|i| u8::from((4..36).contains(&i))).collect();
    assert_eq!(resident(&m, p, 64), want, "mincore shows the page cache");
    // Page 21 is cached: a minor fault, and fault-around maps the cached pages of its
    // 16-page window.
    // SAFETY: as above.
    assert_eq!(unsafe { peek(p + 21 * PAGE) }, data[21 * PAGE]);
    let c2 = m.counters();
    assert_eq!(delta(&c1, &c2), (0, 0, 0));
    assert_eq!(c2.faults - c1.faults, 1);
    assert_eq!(c2.rss_file, c0.rss_file + 16);
    // Every byte is the file's.
    for (i, &b) in data.iter().enumerate().step_by(509) {
        // SAFETY: as above.
        assert_eq!(unsafe { peek(p + i) }, b, "byte {i}");
    }
    assert_eq!(meminfo_kb(&m, "Cached:"), m.counters().nr_file_pages * 4);
    m.check().unwrap();
    let mut maps = String::new();
    m.write_maps(&mut maps).unwrap();
    let line = maps.lines().find(|l| l.ends_with(path.to_str().unwrap())).expect("the file's VMA");
    assert!(line.contains(" r--p 00000000 "), "{line}");
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    assert!(line.contains(&format!(" {ino} ")), "{line}");
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 64 * PAGE) }.unwrap();
    m.close(fd).unwrap();
    assert_eq!(m.counters().nr_file_pages, c0.nr_file_pages, "the last reference drops the cache");
    m.check().unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn private_writes_copy_and_never_reach_the_file() {
    let data = pattern(8 * PAGE);
    let path = host_file("private", &data);
    {
        let m = machine();
        let fd = m.open(&cpath(&path), libc::O_RDWR, 0).unwrap();
        // SAFETY: as in the first test.
        let p = unsafe { m.mmap(0, 8 * PAGE, RW, libc::MAP_PRIVATE, fd, 0) }.unwrap();
        let c0 = m.counters();
        // SAFETY: in the mapping just made.
        unsafe {
            assert_eq!(peek(p + 3 * PAGE + 1), data[3 * PAGE + 1]);
            poke(p + 3 * PAGE + 1, 0xEE);
            poke(p + 6 * PAGE, 0xEE);
        }
        let c1 = m.counters();
        assert_eq!(c1.cow_faults - c0.cow_faults, 2, "a read then a write, and a write: two copies");
        assert_eq!(c1.rss_anon - c0.rss_anon, 2);
        assert_eq!(c1.nr_dirty, 0, "the cache stays clean");
        // SAFETY: as above.
        assert_eq!(unsafe { peek(p + 3 * PAGE + 1) }, 0xEE);
        m.msync(p, 8 * PAGE, libc::MS_SYNC).unwrap();
        m.sync().unwrap();
        m.check().unwrap();
        let mut buf = [0u8; 2];
        m.pread(fd, &mut buf, (3 * PAGE) as i64).unwrap();
        assert_eq!(buf, [data[3 * PAGE], data[3 * PAGE + 1]], "pread sees the file, not the copy");
    }
    assert_eq!(std::fs::read(&path).unwrap(), data, "the file is unchanged");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn shared_writes_dirty_the_cache_until_msync_fsync_or_the_last_reference_writes_them() {
    let data = pattern(8 * PAGE);
    let path = host_file("shared", &data);
    let m = machine();
    let fd = m.open(&cpath(&path), libc::O_RDWR, 0).unwrap();
    // SAFETY: as in the first test.
    let p = unsafe { m.mmap(0, 8 * PAGE, RW, libc::MAP_SHARED, fd, 0) }.unwrap();
    // A read maps the page clean and read-only; the first write faults again and dirties it.
    // SAFETY: in the mapping just made (and so below).
    assert_eq!(unsafe { peek(p) }, data[0]);
    let c0 = m.counters();
    // SAFETY: in a mapping of the test's own machine, as the access allows.
    unsafe { poke(p, 0xA1) };
    let c1 = m.counters();
    assert_eq!(c1.faults - c0.faults, 1, "write-notify fault");
    assert_eq!((c1.nr_dirty, meminfo_kb(&m, "Dirty:")), (1, 4));
    assert_eq!(c1.cow_faults, c0.cow_faults, "a shared page is not copied");
    // A write where nothing is mapped dirties at once.
    // SAFETY: in the mapping.
    unsafe { poke(p + 5 * PAGE + 7, 0xA5) };
    assert_eq!(m.counters().nr_dirty, 2);
    m.check().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data, "nothing written back yet");

    m.msync(p, 8 * PAGE, libc::MS_SYNC).unwrap();
    let c2 = m.counters();
    assert_eq!((c2.nr_dirty, c2.pgpgout - c1.pgpgout), (0, 8));
    let mut want = data.clone();
    want[0] = 0xA1;
    want[5 * PAGE + 7] = 0xA5;
    assert_eq!(std::fs::read(&path).unwrap(), want, "msync wrote both pages");
    m.check().unwrap();

    // Written back, the pages are clean and read-only again: the next write faults.
    // SAFETY: in the mapping.
    unsafe { poke(p + 1, 0xB1) };
    let c3 = m.counters();
    assert_eq!((c3.faults - c2.faults, c3.nr_dirty), (1, 1));
    m.msync(p, PAGE, libc::MS_ASYNC).unwrap();
    assert_eq!(m.counters().nr_dirty, 1, "MS_ASYNC leaves it to the flusher");
    m.fsync(fd).unwrap();
    want[1] = 0xB1;
    assert_eq!(std::fs::read(&path).unwrap(), want, "fsync wrote it");

    // SAFETY: in a mapping of the test's own machine, as the access allows.
    unsafe { poke(p + 2 * PAGE, 0xC2) };
    m.sync().unwrap();
    want[2 * PAGE] = 0xC2;
    assert_eq!(std::fs::read(&path).unwrap(), want, "the flusher's pass wrote it");

    // SAFETY: in a mapping of the test's own machine, as the access allows.
    unsafe { poke(p + 7 * PAGE + 9, 0xD7) };
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 8 * PAGE) }.unwrap();
    assert_eq!(m.counters().nr_dirty, 1, "munmap leaves the dirty page in the cache");
    m.close(fd).unwrap();
    want[7 * PAGE + 9] = 0xD7;
    assert_eq!(std::fs::read(&path).unwrap(), want, "the last reference wrote it");
    assert_eq!(m.counters().nr_dirty, 0);
    m.check().unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn pread_pwrite_and_mappings_see_one_cache() {
    let data = pattern(8 * PAGE);
    let path = host_file("rw", &data);
    let m = machine();
    let fd = m.open(&cpath(&path), libc::O_RDWR, 0).unwrap();
    let fd2 = m.open(&cpath(&path), libc::O_RDONLY, 0).unwrap();
    assert_eq!(fd2, 4);
    // SAFETY: as in the first test.
    let p = unsafe { m.mmap(0, 12 * PAGE, libc::PROT_READ, libc::MAP_SHARED, fd2, 0) }.unwrap();
    assert_eq!(m.pwrite(fd, b"hello", (2 * PAGE + 10) as i64), Ok(5));
    // SAFETY: in the mapping just made (and so below).
    assert_eq!(unsafe { peek(p + 2 * PAGE + 10) }, b'h', "the mapping sees pwrite");
    let mut buf = [0u8; 5];
    assert_eq!(m.pread(fd2, &mut buf, (2 * PAGE + 10) as i64), Ok(5));
    assert_eq!(&buf, b"hello", "another descriptor sees it");
    assert_eq!(m.counters().nr_dirty, 1);
    // Growing the file: the mapping reaches the new pages.
    assert_eq!(m.pwrite(fd, b"tail", (9 * PAGE + 100) as i64), Ok(4));
    // SAFETY: in a mapping of the test's own machine, as the access allows.
    assert_eq!(unsafe { peek(p + 9 * PAGE + 101) }, b'a');
    // SAFETY: in a mapping of the test's own machine, as the access allows.
    assert_eq!(unsafe { peek(p + 8 * PAGE) }, 0, "the hole reads zero");
    assert_eq!(m.pread(fd2, &mut buf, (9 * PAGE + 102) as i64), Ok(2), "pread stops at the end");
    assert_eq!(m.pread(fd2, &mut buf, (20 * PAGE) as i64), Ok(0));
    m.check().unwrap();
    m.fsync(fd).unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), 9 * PAGE + 104);
    assert_eq!(&on_disk[2 * PAGE + 10..2 * PAGE + 15], b"hello");
    assert_eq!(&on_disk[9 * PAGE + 100..], b"tail");
    // O_APPEND writes at the end whatever the offset.
    let fa = m.open(&cpath(&path), libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
    assert_eq!(m.pwrite(fa, b"!", 0), Ok(1));
    assert_eq!(m.pread(fd2, &mut buf[..1], (9 * PAGE + 104) as i64), Ok(1));
    assert_eq!(buf[0], b'!');
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 12 * PAGE) }.unwrap();
    for f in [fd, fd2, fa] {
        m.close(f).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap().len(), 9 * PAGE + 105);
    m.check().unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn two_mappings_of_a_file_share_its_frames() {
    let data = pattern(16 * PAGE);
    let path = host_file("twice", &data);
    let m = machine();
    let fd = m.open(&cpath(&path), libc::O_RDWR, 0).unwrap();
    // SAFETY: as in the first test.
    let (a, b) = unsafe {
        (
            m.mmap(0, 16 * PAGE, RW, libc::MAP_SHARED, fd, 0).unwrap(),
            m.mmap(0, 16 * PAGE, libc::PROT_READ, libc::MAP_SHARED, fd, 0).unwrap(),
        )
    };
    let before = m.counters().nr_file_pages;
    for i in 0..4 {
        // SAFETY: in the mappings just made.
        unsafe {
            peek(a + i * PAGE);
            peek(b + i * PAGE);
        }
    }
    // SAFETY: as above.
    unsafe { poke(a + 3 * PAGE, 1) };
    let (va, vb) = (m.vma_at(a).unwrap(), m.vma_at(b).unwrap());
    // Fault-around mapped the 16 cached pages in each; page 3 is dirty.
    assert_eq!(va.stats.resident, 16 * PAGE as u64);
    assert_eq!((va.stats.shared_clean, va.stats.shared_dirty), (15 * PAGE as u64, PAGE as u64));
    assert_eq!((vb.stats.shared_clean, vb.stats.shared_dirty), (15 * PAGE as u64, PAGE as u64));
    assert_eq!(va.stats.pss, (8 * PAGE as u64) << 12, "each mapping counts half of each page");
    assert_eq!(m.counters().nr_file_pages - before, 16, "each page read once, for both");
    assert_eq!(m.counters().rss_file, 32);
    m.check().unwrap();
    // SAFETY: nothing refers into the mappings.
    unsafe {
        m.munmap(a, 16 * PAGE).unwrap();
        m.munmap(b, 16 * PAGE).unwrap();
    }
    m.close(fd).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn truncation_takes_pages_from_mappings_and_zeroes_the_tail() {
    let data = pattern(4 * PAGE);
    let path = host_file("trunc", &data);
    let m = machine();
    let fd = m.open(&cpath(&path), libc::O_RDWR, 0).unwrap();
    // SAFETY: as in the first test.
    let (s, q) = unsafe {
        (
            m.mmap(0, 4 * PAGE, RW, libc::MAP_SHARED, fd, 0).unwrap(),
            m.mmap(0, 4 * PAGE, RW, libc::MAP_PRIVATE, fd, 0).unwrap(),
        )
    };
    for i in 0..4 {
        // SAFETY: in the mappings just made.
        unsafe {
            poke(s + i * PAGE, 0x55);
            poke(q + i * PAGE + 1, 0x66);
        }
    }
    let c0 = m.counters();
    assert_eq!(c0.rss_file, 4);
    assert!(c0.rss_anon >= 4);
    m.ftruncate(fd, (PAGE + PAGE / 2) as i64).unwrap();
    let c1 = m.counters();
    assert_eq!(c1.rss_file, 2, "the shared pages beyond the end are unmapped");
    assert_eq!(c0.rss_anon - c1.rss_anon, 2, "so are the private copies");
    assert_eq!(c1.nr_file_pages, c0.nr_file_pages - 2);
    // SAFETY: page 1 is still inside the file.
    assert_eq!(unsafe { peek(s + PAGE + PAGE / 2 + 3) }, 0, "the tail reads zero");
    // SAFETY: in a mapping of the test's own machine, as the access allows.
    assert_eq!(unsafe { peek(s + PAGE + 5) }, data[PAGE + 5]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), (PAGE + PAGE / 2) as u64);
    assert_eq!(resident(&m, s, 4), vec![1, 1, 0, 0]);
    m.check().unwrap();
    // SAFETY: nothing refers into the mappings.
    unsafe {
        m.munmap(s, 4 * PAGE).unwrap();
        m.munmap(q, 4 * PAGE).unwrap();
    }
    m.close(fd).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn fadvise_dontneed_drops_clean_unmapped_pages() {
    let data = pattern(16 * PAGE);
    let path = host_file("fadvise", &data);
    let m = machine();
    let fd = m.open(&cpath(&path), libc::O_RDWR, 0).unwrap();
    let base = m.counters().nr_file_pages;
    m.posix_fadvise(fd, 0, 0, libc::POSIX_FADV_WILLNEED).unwrap();
    assert_eq!(m.counters().nr_file_pages - base, 16, "WILLNEED reads the file in");
    // SAFETY: as in the first test.
    let p = unsafe { m.mmap(0, 16 * PAGE, RW, libc::MAP_SHARED, fd, 0) }.unwrap();
    // SAFETY: in the mapping just made.
    unsafe { poke(p + 2 * PAGE, 9) };
    assert_eq!(m.pwrite(fd, b"x", (5 * PAGE) as i64), Ok(1));
    // SAFETY: nothing refers into the rest of the mapping.
    unsafe { m.munmap(p + 8 * PAGE, 8 * PAGE) }.unwrap();
    let c0 = m.counters();
    m.posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED).unwrap();
    let c1 = m.counters();
    assert_eq!(c1.nr_dirty, 0, "dirty pages were written first");
    // Page 2 stays (mapped); the other 15 were clean or cleaned, and unmapped.
    assert_eq!(c0.nr_file_pages - c1.nr_file_pages, 15);
    let mut buf = [0u8; 1];
    m.pread(fd, &mut buf, (5 * PAGE) as i64).unwrap();
    assert_eq!(buf[0], b'x', "read back from the file");
    assert_eq!(m.counters().pgpgin - c1.pgpgin, 4);
    assert_eq!(m.posix_fadvise(fd, 0, 0, 99), Err(kernel_sim::Errno::EINVAL));
    m.check().unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 8 * PAGE) }.unwrap();
    m.close(fd).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn bad_file_calls_get_linuxs_errors_and_change_nothing() {
    use kernel_sim::Errno;
    let data = pattern(2 * PAGE);
    let path = host_file("errors", &data);
    let m = machine();
    let ro = m.open(&cpath(&path), libc::O_RDONLY, 0).unwrap();
    let wo = m.open(&cpath(&path), libc::O_WRONLY, 0).unwrap();
    let dir = m.open(c"/", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
    // SAFETY: as in the first test.
    let p = unsafe { m.mmap(0, 2 * PAGE, libc::PROT_READ, libc::MAP_SHARED, ro, 0) }.unwrap();
    let snapshot = |m: &Machine| {
        let mut maps = String::new();
        m.write_maps(&mut maps).unwrap();
        let c = m.counters();
        (maps, c.nr_file_pages, c.rss, c.nr_dirty, c.committed_as)
    };
    let before = snapshot(&m);
    let shared = libc::MAP_SHARED;
    // SAFETY: none of these succeeds, so nothing is mapped or replaced.
    unsafe {
        assert_eq!(m.mmap(0, PAGE, libc::PROT_READ, shared, 77, 0), Err(Errno::EBADF));
        assert_eq!(
            m.mmap(0, PAGE, libc::PROT_READ, shared, 1, 0),
            Err(Errno::EBADF),
            "host fds are not ours"
        );
        assert_eq!(m.mmap(0, PAGE, RW, shared, ro, 0), Err(Errno::EACCES));
        assert_eq!(m.mmap(0, PAGE, libc::PROT_READ, libc::MAP_PRIVATE, wo, 0), Err(Errno::EACCES));
        assert_eq!(m.mmap(0, PAGE, libc::PROT_READ, libc::MAP_PRIVATE, dir, 0), Err(Errno::ENODEV));
        assert_eq!(
            m.mmap(0, PAGE, libc::PROT_READ, libc::MAP_SHARED_VALIDATE | 0x0800_0000, ro, 0),
            Err(Errno(libc::EOPNOTSUPP))
        );
        assert_eq!(m.mmap(0, PAGE, libc::PROT_READ, libc::MAP_PRIVATE, ro, 100), Err(Errno::EINVAL));
        assert_eq!(m.mmap(0, 0, libc::PROT_READ, libc::MAP_PRIVATE, ro, 0), Err(Errno::EINVAL));
        assert_eq!(
            m.mmap(0, PAGE, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_GROWSDOWN, ro, 0),
            Err(Errno::EINVAL)
        );
        // A read-only file's shared mapping may never become writable.
        assert_eq!(m.mprotect(p, PAGE, RW), Err(Errno::EACCES));
    }
    assert_eq!(m.msync(p + 1, PAGE, libc::MS_SYNC), Err(Errno::EINVAL));
    assert_eq!(m.msync(p, PAGE, libc::MS_SYNC | libc::MS_ASYNC), Err(Errno::EINVAL));
    assert_eq!(m.msync(p, PAGE, 0x40), Err(Errno::EINVAL));
    assert_eq!(m.msync(p, 4 * PAGE, libc::MS_SYNC), Err(Errno::ENOMEM), "beyond the mapping");
    assert_eq!(m.msync(p + 2 * PAGE, PAGE, libc::MS_ASYNC), Err(Errno::ENOMEM));
    assert_eq!(m.msync(p, 0, libc::MS_SYNC), Ok(()));
    let mut buf = [0u8; 4];
    assert_eq!(m.pread(wo, &mut buf, 0), Err(Errno::EBADF));
    assert_eq!(m.pwrite(ro, b"x", 0), Err(Errno::EBADF));
    assert_eq!(m.pread(dir, &mut buf, 0), Err(Errno(libc::EISDIR)));
    assert_eq!(m.pread(ro, &mut buf, -1), Err(Errno::EINVAL));
    assert_eq!(m.ftruncate(ro, 0), Err(Errno::EINVAL));
    assert_eq!(m.ftruncate(wo, -1), Err(Errno::EINVAL));
    assert_eq!(m.ftruncate(dir, 0), Err(Errno::EINVAL));
    assert_eq!(m.fsync(99), Err(Errno::EBADF));
    assert_eq!(m.close(99), Err(Errno::EBADF));
    assert_eq!(m.close(2), Err(Errno::EBADF));
    assert_eq!(m.open(c"/nonexistent/file", libc::O_RDONLY, 0), Err(Errno(libc::ENOENT)));
    assert_eq!(m.open(c"/", libc::O_RDWR, 0), Err(Errno(libc::EISDIR)));
    assert_eq!(snapshot(&m), before, "nothing changed");
    m.check().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, 2 * PAGE) }.unwrap();
    for f in [ro, wo, dir] {
        m.close(f).unwrap();
    }
    assert_eq!(m.close(ro), Err(Errno::EBADF), "closed twice");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_machine_going_away_writes_back_what_is_still_mapped() {
    let data = pattern(2 * PAGE);
    let path = host_file("shutdown", &data);
    {
        let m = machine();
        let fd = m.open(&cpath(&path), libc::O_RDWR, 0).unwrap();
        // SAFETY: as in the first test.
        let p = unsafe { m.mmap(0, 2 * PAGE, RW, libc::MAP_SHARED, fd, 0) }.unwrap();
        // SAFETY: in the mapping just made; the machine goes before anything reads it.
        unsafe { poke(p + PAGE, 0x42) };
    }
    let mut want = data;
    want[PAGE] = 0x42;
    assert_eq!(std::fs::read(&path).unwrap(), want);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_write_only_file_takes_partial_page_writes() {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("files-{}-wronly", std::process::id()));
    let m = machine();
    let fd = m.open(&cpath(&path), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o600).unwrap();
    assert_eq!(m.pwrite(fd, b"hi", 0), Ok(2), "nothing beyond the end needs reading");
    assert_eq!(m.pwrite(fd, b"there", (PAGE + 3) as i64), Ok(5));
    assert_eq!(m.pwrite(fd, b"H", 0), Ok(1), "a cached page is written in place");
    m.fsync(fd).unwrap();
    let mut want = vec![0u8; PAGE + 8];
    want[..2].copy_from_slice(b"Hi");
    want[PAGE + 3..].copy_from_slice(b"there");
    assert_eq!(std::fs::read(&path).unwrap(), want);
    m.close(fd).unwrap();
    m.check().unwrap();
    std::fs::remove_file(path).unwrap();
}
