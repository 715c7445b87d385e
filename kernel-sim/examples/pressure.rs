//! `cargo run --release -p kernel-sim --example pressure`
//!
//! A machine with 32 MiB of RAM and a 160 MiB swap area. A process with a ptalloc heap
//! writes 48 MiB, forks, and the child writes 48 MiB of its own and rereads half of what it
//! shares with its parent: 96 MiB at once, three times RAM. At each step the example prints
//! the machine's memory and swap, reclaim's counters and each process's `Rss`/`Swap`; at the
//! end every byte is checked, `/proc/swaps` printed, and a map of where the parent's heap
//! pages are: in RAM, in the swap cache, or only in swap.

use kernel_sim::{Config, Machine, SimKernel};
use ptalloc::Malloc;

const BLOCK: usize = 256 << 10;
const PAGE: usize = 4096;

fn field(text: &str, label: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(label).and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0)
}

fn snapshot(m: &Machine, step: &str, pids: &[u32]) {
    let (mut mi, mut vm) = (String::new(), String::new());
    m.write_meminfo(&mut mi).expect("formatting");
    m.write_vmstat(&mut vm).expect("formatting");
    let mib = |kb: u64| kb as f64 / 1024.0;
    print!(
        "{step:<34} free {:>5.1}  anon {:>5.1}  swap used {:>6.1}  swap cache {:>4.1} MiB | pswpout {:>6} pswpin {:>6} steal k/d {:>6}/{:<6} remote TLB flushes {:>4} |",
        mib(field(&mi, "MemFree:")),
        mib(field(&mi, "AnonPages:")),
        mib(field(&mi, "SwapTotal:") - field(&mi, "SwapFree:")),
        mib(field(&mi, "SwapCached:")),
        field(&vm, "pswpout "),
        field(&vm, "pswpin "),
        field(&vm, "pgsteal_kswapd "),
        field(&vm, "pgsteal_direct "),
        field(&vm, "nr_tlb_remote_flush "),
    );
    for &pid in pids {
        let mut s = String::new();
        if m.as_process(pid, || m.write_smaps_rollup(&mut s)).is_ok() {
            print!(
                " pid {pid}: Rss {:>5.1} Swap {:>5.1} MiB",
                mib(field(&s, "Rss:")),
                mib(field(&s, "Swap:"))
            );
        }
    }
    println!();
}

fn fill(p: *mut u8, seed: u8) {
    for i in (0..BLOCK).step_by(512) {
        // SAFETY: inside a block of BLOCK bytes this program owns.
        unsafe { p.add(i).write(seed.wrapping_add((i / PAGE) as u8)) };
    }
}

fn check(p: *const u8, seed: u8) -> bool {
    // SAFETY: as in `fill`, read.
    (0..BLOCK).step_by(512).all(|i| unsafe { p.add(i).read() } == seed.wrapping_add((i / PAGE) as u8))
}

fn main() {
    let config = Config { phys_bytes: 32 << 20, swap_bytes: 160 << 20, ..Config::DEFAULT };
    let m: &'static Machine = match Machine::boot(&config) {
        Ok(b) => Box::leak(Box::new(b)),
        Err(e) => {
            eprintln!("pressure: boot: {}", std::io::Error::from_raw_os_error(e.0));
            std::process::exit(1);
        }
    };
    // SAFETY: the only allocator on this machine.
    let sim: &'static Malloc<SimKernel> = Box::leak(Box::new(unsafe { Malloc::new(SimKernel::on(m)) }));
    let parent = m.getpid();
    let n = (48 << 20) / BLOCK;
    let mut blocks = Vec::with_capacity(n);
    snapshot(m, "boot", &[parent]);
    for i in 0..n {
        let p = sim.malloc(BLOCK);
        assert!(!p.is_null(), "malloc on the simulated machine failed");
        fill(p, i as u8);
        blocks.push(p);
        if i == n / 2 {
            snapshot(m, "parent: 24 MiB written", &[parent]);
        }
    }
    snapshot(m, "parent: 48 MiB written", &[parent]);
    let mut fds = [0i32; 2];
    // SAFETY: a pipe into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: this program has one thread, so the child may use the allocator; it uses the
    // machine and raw system calls, then exits on the machine and _exits.
    let child = match unsafe { m.fork() } {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pressure: fork: {}", std::io::Error::from_raw_os_error(e.0));
            std::process::exit(1);
        }
    };
    if child == 0 {
        let me = m.getpid();
        let own: Vec<*mut u8> = (0..n)
            .map(|i| {
                let p = sim.malloc(BLOCK);
                assert!(!p.is_null(), "malloc in the child failed");
                fill(p, 100 + i as u8);
                p
            })
            .collect();
        snapshot(m, "child: its own 48 MiB written", &[parent, me]);
        let shared_ok = blocks.iter().enumerate().step_by(2).all(|(i, &p)| check(p, i as u8));
        let own_ok = own.iter().enumerate().all(|(i, &p)| check(p, 100 + i as u8));
        snapshot(m, "child: half the shared heap reread", &[parent, me]);
        let ok = u8::from(shared_ok && own_ok);
        m.exit_process();
        // SAFETY: a byte to the parent, then leaving the child.
        unsafe {
            libc::write(fds[1], (&ok as *const u8).cast(), 1);
            libc::_exit(0)
        };
    }
    let mut ok = 0u8;
    // SAFETY: one byte from the child into a local.
    unsafe { libc::read(fds[0], (&mut ok as *mut u8).cast(), 1) };
    m.waitpid(child).expect("the child");
    let parent_ok = blocks.iter().enumerate().all(|(i, &p)| check(p, i as u8));
    snapshot(m, "parent: all 48 MiB reread", &[parent]);
    println!(
        "\nevery byte intact: child {}, parent {}",
        if ok == 1 { "yes" } else { "NO" },
        if parent_ok { "yes" } else { "NO" }
    );
    let mut swaps = String::new();
    m.write_swaps(&mut swaps).expect("formatting");
    println!("\n/proc/swaps:\n{swaps}");
    // Where the parent's heap is: one character per 64 KiB (16 pages).
    println!("the parent's heap, 16 pages a character ('#' all in RAM, '+' some in the swap cache, 's' some only in swap, '.' none):");
    let mut line = String::new();
    for &b in &blocks {
        for chunk in 0..BLOCK / (16 * PAGE) {
            let (mut ram, mut cached, mut swapped) = (0, 0, 0);
            for pg in 0..16 {
                let pm = m.pagemap(b as usize + (chunk * 16 + pg) * PAGE);
                if pm >> 63 & 1 == 1 {
                    ram += 1;
                    if m.kpageflags((pm & ((1 << 55) - 1)) as usize) & (1 << 13) != 0 {
                        cached += 1;
                    }
                } else if pm >> 62 & 1 == 1 {
                    swapped += 1;
                }
            }
            line.push(match (ram, cached, swapped) {
                (16, 0, _) => '#',
                (_, c, _) if c > 0 => '+',
                (_, _, s) if s > 0 => 's',
                _ => '.',
            });
            if line.len() == 96 {
                println!("{line}");
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        println!("{line}");
    }
    for p in blocks {
        // SAFETY: blocks this program allocated, freed once.
        unsafe { sim.free(p) };
    }
    if let Err(e) = m.check() {
        eprintln!("pressure: machine check failed: {e}");
        std::process::exit(1);
    }
    if ok != 1 || !parent_ok {
        std::process::exit(1);
    }
}
