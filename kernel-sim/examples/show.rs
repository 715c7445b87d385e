//! ptalloc on the simulated kernel, and what the kernel saw: the /proc views of the
//! machine after a small allocation workload, and an SVG picture of it.
//!
//! ```text
//! cargo run --release -p kernel-sim --example show [out.svg]
//! ```

use kernel_sim::SimKernel;
use ptalloc::Malloc;

// SAFETY: the only Malloc<SimKernel> in this program.
static SIM_MALLOC: Malloc<SimKernel> = unsafe { Malloc::new(SimKernel::new()) };

fn main() {
    // Small blocks from the brk heap, large ones from their own mmap, some of each freed.
    let mut blocks = Vec::new();
    for i in 0..2000usize {
        let size = if i % 100 == 0 { 512 << 10 } else { 16 + (i * 37) % 2000 };
        let p = SIM_MALLOC.malloc(size);
        // SAFETY: a fresh block of `size` bytes.
        unsafe { core::ptr::write_bytes(p, 0xa5, size) };
        blocks.push(p);
    }
    for p in blocks.iter().step_by(3) {
        // SAFETY: each block is freed once.
        unsafe { SIM_MALLOC.free(*p) };
    }
    let m = SIM_MALLOC.kernel().machine();
    let mut out = String::new();
    out += "== /proc/PID/maps\n";
    m.write_maps(&mut out).unwrap();
    out += "== /proc/PID/smaps_rollup\n";
    m.write_smaps_rollup(&mut out).unwrap();
    out += "== /proc/PID/status (memory)\n";
    m.write_status(&mut out).unwrap();
    out += "== /proc/buddyinfo\n";
    m.write_buddyinfo(&mut out).unwrap();
    out += "== /proc/pagetypeinfo\n";
    m.write_pagetypeinfo(&mut out).unwrap();
    out += "== /proc/meminfo (memory)\n";
    m.write_meminfo(&mut out).unwrap();
    out += "== /proc/slabinfo\n";
    m.write_slabinfo(&mut out).unwrap();
    print!("{out}");
    println!("== counters\n{:#?}", m.counters());
    let path = std::env::args().nth(1).unwrap_or_else(|| "/tmp/kernel-sim.svg".into());
    let mut svg = String::new();
    m.write_svg(&mut svg).unwrap();
    std::fs::write(&path, svg).unwrap();
    println!("picture: {path}");
}
