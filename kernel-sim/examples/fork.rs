//! `cargo run --release -p kernel-sim --example fork`
//!
//! A parent with a ptalloc heap on a simulated machine forks; the child writes part of the
//! heap. Both processes' `smaps_rollup` show what they share and what each now has of its
//! own, and the copy-on-write faults are counted.

use kernel_sim::{Machine, SimKernel};
use ptalloc::Malloc;

// SAFETY: the only Malloc<SimKernel> of this program.
static SIM: Malloc<SimKernel> = unsafe { Malloc::new(SimKernel::new()) };

const BLOCKS: usize = 64;
const SIZE: usize = 16 << 10;

fn rollup(m: &Machine, pid: u32) -> String {
    let mut s = String::new();
    m.as_process(pid, || m.write_smaps_rollup(&mut s))
        .expect("a process of the machine")
        .expect("formatting");
    s.lines()
        .filter(|l| ["Rss", "Pss:", "Shared", "Private", "Anonymous"].iter().any(|k| l.starts_with(k)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn main() {
    let m = SIM.kernel().machine();
    // A heap of 64 blocks of 16 KiB, every byte written.
    let blocks: Vec<*mut u8> = (0..BLOCKS)
        .map(|i| {
            let p = SIM.malloc(SIZE);
            assert!(!p.is_null(), "malloc on the simulated machine failed");
            // SAFETY: a fresh block of SIZE bytes.
            unsafe { p.write_bytes(i as u8, SIZE) };
            p
        })
        .collect();
    let (mut to_parent, mut from_child) = (0i32, 0i32);
    let (mut to_child, mut from_parent) = (0i32, 0i32);
    for (w, r) in [(&mut to_parent, &mut from_child), (&mut to_child, &mut from_parent)] {
        let mut fds = [0i32; 2];
        // SAFETY: a pipe into a local array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            eprintln!("fork: pipe: {}", std::io::Error::last_os_error());
            std::process::exit(1);
        }
        (*r, *w) = (fds[0], fds[1]);
    }
    let parent = m.getpid();
    let cow0 = m.counters().cow_faults;
    // SAFETY: this program has one thread; the child only writes its heap, makes raw system
    // calls and uses the machine, then exits on it and _exits.
    let child = match unsafe { m.fork() } {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fork: {}", std::io::Error::from_raw_os_error(e.0));
            std::process::exit(1);
        }
    };
    let mut byte = 0u8;
    if child == 0 {
        // The child writes a quarter of the blocks: those pages are copied.
        for &p in &blocks[..BLOCKS / 4] {
            // SAFETY: the child's copy of a block of its heap.
            unsafe { p.write_bytes(0xcc, SIZE) };
        }
        // SAFETY: raw pipe I/O on our descriptors, then leaving the child.
        unsafe {
            libc::write(to_parent, (&byte as *const u8).cast(), 1);
            libc::read(from_parent, (&mut byte as *mut u8).cast(), 1);
        }
        m.exit_process();
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: raw pipe I/O on our descriptors.
    unsafe { libc::read(from_child, (&mut byte as *mut u8).cast(), 1) };
    let c = m.counters();
    println!(
        "parent (pid {parent}) after the child wrote {} of its {} KiB heap blocks:",
        BLOCKS / 4,
        SIZE >> 10
    );
    println!("{}\n", rollup(m, parent));
    println!("child (pid {child}):");
    println!("{}\n", rollup(m, child));
    println!(
        "copy-on-write faults: {} (the child's writes; the parent's blocks are untouched)",
        c.cow_faults - cow0
    );
    // SAFETY: the parent's own block, read.
    let first = unsafe { *blocks[0] };
    println!("parent's first block still holds {first:#04x}; the child's holds 0xcc");
    // SAFETY: raw pipe I/O, then the child is reaped.
    unsafe { libc::write(to_child, (&byte as *const u8).cast(), 1) };
    m.waitpid(child).expect("the child");
    for p in blocks {
        // SAFETY: blocks this program allocated, freed once.
        unsafe { SIM.free(p) };
    }
    let mut vmstat = String::new();
    m.write_vmstat(&mut vmstat).expect("formatting");
    println!("\n/proc/vmstat (simulated):\n{vmstat}");
}
