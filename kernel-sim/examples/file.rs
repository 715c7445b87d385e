//! `cargo run --release -p kernel-sim --example file`
//!
//! A file mapped shared in two processes of one simulated machine: the parent maps it and
//! forks, the child writes through its mapping and syncs it, the parent sees the bytes at
//! once (the two share the page-cache frames), writes a line of its own and syncs too.
//! Prints both processes' view of the mapping, the page cache's counters, and the file's
//! new bytes as the host sees them.

use std::ffi::CString;

use kernel_sim::{Config, Machine};

const PAGE: usize = 4096;

fn meminfo(m: &Machine) -> String {
    let mut s = String::new();
    m.write_meminfo(&mut s).expect("formatting");
    s.lines()
        .filter(|l| ["Cached:", "Dirty:", "Writeback:"].iter().any(|k| l.starts_with(k)))
        .collect::<Vec<_>>()
        .join("  ")
}

fn smaps_line(m: &Machine, pid: u32, addr: usize) -> String {
    m.as_process(pid, || {
        let v = m.vma_at(addr).expect("the mapping");
        let kb = |b: u64| b >> 10;
        format!(
            "Rss {} kB, Shared_Clean {} kB, Shared_Dirty {} kB, Private_Dirty {} kB",
            kb(v.stats.resident),
            kb(v.stats.shared_clean),
            kb(v.stats.shared_dirty),
            kb(v.stats.private_dirty)
        )
    })
    .expect("a process of the machine")
}

fn fail(what: &str, e: kernel_sim::Errno) -> ! {
    eprintln!("file: {what}: {}", std::io::Error::from_raw_os_error(e.0));
    std::process::exit(1)
}

fn main() {
    let path = std::env::temp_dir().join(format!("kernel-sim-file-example-{}", std::process::id()));
    let mut bytes = b"the file as it was\n".to_vec();
    bytes.resize(2 * PAGE, b'.');
    if let Err(e) = std::fs::write(&path, &bytes) {
        eprintln!("file: {}: {e}", path.display());
        std::process::exit(1);
    }
    let cpath =
        CString::new(path.to_str().expect("a UTF-8 temporary directory")).expect("no NUL in the path");
    let m = Machine::boot(&Config::DEFAULT).unwrap_or_else(|e| fail("boot", e));
    let fd = m.open(&cpath, libc::O_RDWR, 0).unwrap_or_else(|e| fail("open", e));
    // SAFETY: without MAP_FIXED nothing is replaced; the mapping is reached only through
    // raw addresses below.
    let p = unsafe { m.mmap(0, 2 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) }
        .unwrap_or_else(|e| fail("mmap", e));
    let mut fds = [0i32; 4];
    // SAFETY: two pipes into a local array.
    unsafe {
        libc::pipe(fds.as_mut_ptr());
        libc::pipe(fds.as_mut_ptr().add(2));
    }
    let (from_child, to_parent, from_parent, to_child) = (fds[0], fds[1], fds[2], fds[3]);
    let parent = m.getpid();
    // SAFETY: this program has one thread; the child writes the mapping, syncs, makes raw
    // system calls, then exits on the machine and _exits.
    let child = unsafe { m.fork() }.unwrap_or_else(|e| fail("fork", e));
    let mut byte = 0u8;
    if child == 0 {
        let line = b"written by the child\n";
        for (i, &b) in line.iter().enumerate() {
            // SAFETY: the child's shared mapping of the file.
            unsafe { ((p + i) as *mut u8).write_volatile(b) };
        }
        let _ = m.msync(p, PAGE, libc::MS_SYNC);
        // SAFETY: raw pipe I/O, then leaving the child.
        unsafe {
            libc::write(to_parent, (&byte as *const u8).cast(), 1);
            libc::read(from_parent, (&mut byte as *mut u8).cast(), 1);
        }
        m.exit_process();
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: raw pipe I/O.
    unsafe { libc::read(from_child, (&mut byte as *mut u8).cast(), 1) };
    // SAFETY: the parent's shared mapping of the file, read.
    let seen: Vec<u8> = (0..21).map(|i| unsafe { ((p + i) as *const u8).read_volatile() }).collect();
    println!("parent (pid {parent}) reads through its mapping: {:?}", String::from_utf8_lossy(&seen));
    println!("parent's mapping: {}", smaps_line(&m, parent, p));
    println!("child's mapping:  {}", smaps_line(&m, child, p));
    println!("page cache: {}", meminfo(&m));
    let line = b"and by the parent\n";
    for (i, &b) in line.iter().enumerate() {
        // SAFETY: the parent's shared mapping, written.
        unsafe { ((p + PAGE + i) as *mut u8).write_volatile(b) };
    }
    println!("after the parent's write: {}", meminfo(&m));
    m.msync(p, 2 * PAGE, libc::MS_SYNC).unwrap_or_else(|e| fail("msync", e));
    println!("after msync:             {}", meminfo(&m));
    let c = m.counters();
    println!("pgpgin {} kB, pgpgout {} kB, major faults {}", c.pgpgin, c.pgpgout, c.pgmajfault);
    let on_disk = std::fs::read(&path).unwrap_or_default();
    let show = |b: &[u8]| {
        String::from_utf8_lossy(&b[..b.iter().position(|&c| c == b'.').unwrap_or(b.len())]).into_owned()
    };
    println!("the file's first page on the host:  {:?}", show(&on_disk[..PAGE]));
    println!("the file's second page on the host: {:?}", show(&on_disk[PAGE..]));
    // SAFETY: raw pipe I/O, then the child is reaped.
    unsafe { libc::write(to_child, (&byte as *const u8).cast(), 1) };
    m.waitpid(child).unwrap_or_else(|e| fail("waitpid", e));
    // SAFETY: nothing refers into the mapping.
    let _ = unsafe { m.munmap(p, 2 * PAGE) };
    let _ = m.close(fd);
    let _ = std::fs::remove_file(&path);
}
