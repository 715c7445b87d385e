//! Bad accesses end the process as they would under Linux: SIGSEGV for no VMA or a
//! forbidden access, SIGBUS beyond the end of a shared object or a file (also after a
//! truncation), SIGKILL from the OOM killer.
//! Each case runs in a forked child (the machine it uses is its own), with the child's
//! stderr captured to check the kernel-style report.

use kernel_sim::{Config, Machine, MREMAP_MAYMOVE};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

struct Outcome {
    signal: Option<i32>,
    exit: Option<i32>,
    stderr: String,
}

/// Run `f` in a child process with stderr captured.
///
/// # Safety
/// `f` must not allocate or take a lock another thread may hold at the fork: it may only
/// make raw system calls and use the machine (booted before the fork).
unsafe fn in_child(f: impl FnOnce()) -> Outcome {
    let mut fds = [0i32; 2];
    // SAFETY: creating a pipe into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs `f` (raw system calls, the simulation: the caller's
    // promise) and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: redirecting our own stderr into the pipe.
        unsafe {
            libc::dup2(fds[1], 2);
            libc::close(fds[0]);
        }
        f();
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closing our copy of the write end, then reading the child's output.
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child; closing our descriptor.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(fds[0]);
    }
    Outcome {
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        exit: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stderr: String::from_utf8_lossy(&out).into_owned(),
    }
}

fn small() -> kernel_sim::MachineBox {
    Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap()
}

#[test]
fn touching_outside_any_vma_is_sigsegv_maperr() {
    let m = small();
    // SAFETY: the machine is this test's own; its pages are only reached through raw
    // addresses, and the touch of the page unmapped here is meant to fault.
    let p = unsafe {
        let p = m.mmap(0, 4 * PAGE, RW, ANON, -1, 0).unwrap();
        m.munmap(p + 2 * PAGE, PAGE).unwrap();
        p
    };
    let child = || {
        // SAFETY: deliberately touching the page just unmapped: the child must die.
        unsafe { ((p + PAGE) as *mut u64).write_volatile(1) };
        // SAFETY: as above.
        unsafe { ((p + 2 * PAGE) as *mut u64).write_volatile(1) };
    };
    // SAFETY: the child only touches memory through raw addresses and makes no call
    // that allocates.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGSEGV), "{}", o.stderr);
    assert!(o.stderr.contains(&format!("segfault at {:x}", p + 2 * PAGE)), "{}", o.stderr);
    assert!(o.stderr.contains("(SEGV_MAPERR)"), "{}", o.stderr);
}

#[test]
fn writing_a_read_only_vma_is_sigsegv_accerr() {
    let m = small();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 2 * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: a page just mapped writable.
    unsafe { (p as *mut u64).write(5) };
    // SAFETY: the machine is this test's own; its pages are only reached through raw
    // addresses, and the write after this is meant to fault.
    unsafe { m.mprotect(p, 2 * PAGE, libc::PROT_READ) }.unwrap();
    let child = || {
        // SAFETY: reading is allowed; the write must kill the child.
        let v = unsafe { (p as *const u64).read_volatile() };
        if v != 5 {
            // SAFETY: exiting the child with a distinctive status.
            unsafe { libc::_exit(3) };
        }
        // SAFETY: the child's copy of the mapping, read just above.
        unsafe { (p as *mut u64).write_volatile(6) };
    };
    // SAFETY: the child only touches memory through raw addresses and makes no call
    // that allocates.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGSEGV), "exit {:?}: {}", o.exit, o.stderr);
    assert!(o.stderr.contains("(SEGV_ACCERR)"), "{}", o.stderr);
}

#[test]
fn reading_a_prot_none_vma_is_sigsegv_accerr() {
    let m = small();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, PAGE, libc::PROT_NONE, ANON, -1, 0) }.unwrap();
    let child = || {
        // SAFETY: deliberately reading a PROT_NONE page: the child must die.
        unsafe { (p as *const u64).read_volatile() };
    };
    // SAFETY: the child only touches memory through raw addresses and makes no call
    // that allocates.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGSEGV));
    assert!(o.stderr.contains("(SEGV_ACCERR)"), "{}", o.stderr);
}

#[test]
fn a_shared_mapping_grown_past_its_object_is_sigbus() {
    let m = small();
    // SAFETY: the machine is this test's own, and the mapping is not touched before it moves.
    let q = unsafe {
        let p = m.mmap(0, 2 * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0).unwrap();
        m.mremap(p, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE, 0).unwrap()
    };
    let child = || {
        // SAFETY: within the object: fine. Beyond it: SIGBUS.
        unsafe { ((q + PAGE) as *mut u64).write_volatile(1) };
        // SAFETY: as above.
        unsafe { ((q + 3 * PAGE) as *mut u64).write_volatile(1) };
    };
    // SAFETY: the child only touches memory through raw addresses and makes no call
    // that allocates.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGBUS), "{}", o.stderr);
    assert!(o.stderr.contains("(BUS_ADRERR)"), "{}", o.stderr);
}

/// A file of `pages` pages of 0x11 bytes, opened read-write on `m`.
fn file_on(m: &Machine, tag: &str, len: usize) -> (std::path::PathBuf, i32) {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("segv-{}-{tag}", std::process::id()));
    std::fs::write(&path, vec![0x11u8; len]).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let fd = m.open(&c, libc::O_RDWR, 0).unwrap();
    (path, fd)
}

#[test]
fn touching_a_file_mapping_beyond_the_end_of_the_file_is_sigbus() {
    let m = small();
    let (path, fd) = file_on(&m, "eof", PAGE + PAGE / 2);
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 3 * PAGE, RW, libc::MAP_SHARED, fd, 0) }.unwrap();
    let child = || {
        // SAFETY: the last page of the file: its tail beyond the end reads zero.
        let (inside, tail) = unsafe {
            (((p + PAGE) as *const u8).read_volatile(), ((p + 2 * PAGE - 1) as *const u8).read_volatile())
        };
        if (inside, tail) != (0x11, 0) {
            // SAFETY: exiting the child with a distinctive status.
            unsafe { libc::_exit(3) };
        }
        // SAFETY: a page wholly beyond the end of the file: SIGBUS.
        unsafe { ((p + 2 * PAGE) as *const u8).read_volatile() };
    };
    // SAFETY: the child only touches memory through raw addresses and makes no call
    // that allocates.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGBUS), "exit {:?}: {}", o.exit, o.stderr);
    assert!(o.stderr.contains("(BUS_ADRERR)"), "{}", o.stderr);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_file_truncated_under_its_mapping_is_sigbus_beyond_the_new_end() {
    let m = small();
    let (path, fd) = file_on(&m, "trunc", 3 * PAGE);
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, 3 * PAGE, RW, libc::MAP_SHARED, fd, 0) }.unwrap();
    let child = || {
        // SAFETY: inside the file until it is truncated; then beyond it: SIGBUS.
        unsafe { ((p + 2 * PAGE) as *mut u8).write_volatile(1) };
        if m.ftruncate(fd, PAGE as i64).is_err() {
            // SAFETY: exiting the child with a distinctive status.
            unsafe { libc::_exit(3) };
        }
        // SAFETY: as above.
        unsafe { (p as *mut u8).write_volatile(1) };
        // SAFETY: as above.
        unsafe { ((p + 2 * PAGE) as *mut u8).write_volatile(1) };
    };
    // SAFETY: the child only touches memory through raw addresses and calls the machine,
    // which does not allocate.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGBUS), "exit {:?}: {}", o.exit, o.stderr);
    assert!(o.stderr.contains("(BUS_ADRERR)"), "{}", o.stderr);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn running_out_of_frames_is_the_oom_kill() {
    let m = Machine::boot(&Config { phys_bytes: 16 << 20, ..Config::DEFAULT }).unwrap();
    let len = 32 << 20;
    // More than all of RAM: the heuristic refuses to charge it, MAP_NORESERVE skips the charge.
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe {
        assert_eq!(m.mmap(0, len, RW, ANON, -1, 0), Err(kernel_sim::Errno::ENOMEM));
        m.mmap(0, len, RW, ANON | libc::MAP_NORESERVE, -1, 0).unwrap()
    };
    let child = || {
        for i in 0..len / PAGE {
            // SAFETY: pages of the mapping; the machine runs out of frames on the way.
            unsafe { ((p + i * PAGE) as *mut u64).write_volatile(i as u64) };
        }
    };
    // SAFETY: the child only touches memory through raw addresses and makes no call
    // that allocates.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGKILL), "{}", o.stderr);
    assert!(o.stderr.contains("Out of memory: Killed process"), "{}", o.stderr);
}

#[test]
fn faults_outside_every_machine_still_reach_the_previous_handler() {
    let _m = small();
    // SAFETY: a PROT_NONE host page outside every machine.
    let host = unsafe { libc::mmap(core::ptr::null_mut(), PAGE, libc::PROT_NONE, ANON, -1, 0) } as usize;
    let child = || {
        // SAFETY: deliberately faulting outside the simulation.
        unsafe { (host as *const u64).read_volatile() };
    };
    // SAFETY: the child only touches memory through raw addresses and makes no call
    // that allocates.
    let o = unsafe { in_child(child) };
    assert_eq!(o.signal, Some(libc::SIGSEGV));
    assert!(!o.stderr.contains("kernel-sim"), "not the simulation's fault: {}", o.stderr);
}

/// A program's own SIGSEGV handler, installed before the simulation's, receives simulated
/// faults as the kernel would deliver them (run in a fresh process so that no machine has
/// installed its handler yet).
#[test]
fn a_program_handler_gets_the_simulated_fault() {
    if std::env::var_os("KSIM_CHAIN_CHILD").is_some() {
        chain_child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "a_program_handler_gets_the_simulated_fault", "--nocapture", "--test-threads=1"])
        .env("KSIM_CHAIN_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("handler: code 2 addr ok"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static FAULT_ADDR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn program_handler(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the siginfo passed to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let ok = addr == FAULT_ADDR.load(std::sync::atomic::Ordering::Relaxed);
    let msg: &[u8] = if code == 2 && ok { b"handler: code 2 addr ok\n" } else { b"handler: wrong siginfo\n" };
    // SAFETY: write(2) and _exit are async-signal-safe.
    unsafe {
        libc::write(1, msg.as_ptr().cast(), msg.len());
        libc::_exit(0);
    }
}

fn chain_child() {
    // SAFETY: installing our handler before any machine boots.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = program_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, core::ptr::null_mut());
    }
    let m = small();
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe { m.mmap(0, PAGE, libc::PROT_READ, ANON, -1, 0) }.unwrap();
    FAULT_ADDR.store(p + 8, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: a write to a read-only page: the program's handler gets it and exits.
    unsafe { ((p + 8) as *mut u64).write_volatile(1) };
    println!("no fault?");
}
