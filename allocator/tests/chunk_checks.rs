//! The chunk checks at the exits of `int_malloc` and `int_free` (feature `debug-checks`,
//! which this workspace's tests turn on, and debug builds) catch a heap that glibc's own
//! corruption checks let through.
//!
//! The corruption: a free chunk's size word is overwritten (a buffer overflow from the
//! chunk before it), then the small chunk after it is freed into a fastbin. The fastbin
//! path only looks at the chunk after the one freed, so nothing notices there; the check of
//! the freed chunk walks to its free predecessor and finds that it does not end where the
//! boundary tag says.

use std::process::Command;

const CHILD: &str = "PTALLOC_CHUNK_CHECKS_CHILD";

fn corrupt_then_free() {
    let m = ptalloc::linux();
    let a = m.malloc(2000);
    let f = m.malloc(24);
    let guard = m.malloc(2000);
    assert!(!a.is_null() && !f.is_null() && !guard.is_null());
    // SAFETY: blocks just allocated; the write to `a`'s size word is the deliberate
    // corruption under test, made while `a` is free (so no live block is touched).
    unsafe {
        m.free(a);
        (a as *mut usize).sub(1).write(4096 | 1);
        m.free(f);
    }
    println!("the corrupted heap went unnoticed");
}

#[test]
fn a_corrupted_neighbour_is_caught_at_free() {
    if std::env::var_os(CHILD).is_some() {
        corrupt_then_free();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_corrupted_neighbour_is_caught_at_free", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        // Without a thread cache the small block goes straight to its fastbin.
        .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "status {:?}, stderr:\n{stderr}", out.status);
    assert!(stderr.contains("chunk check: free predecessor does not end at the chunk"), "stderr:\n{stderr}");
}
