//! Differential test against the real kernel.
//!
//! Random sequences of `mmap` / `munmap` / `mprotect` / `mremap` / `madvise` / `brk` and
//! page touches are applied to the simulation (in this process, on a dedicated machine)
//! and to Linux (in a forked child, which runs nothing but raw system calls). After every
//! operation both sides record the result and a snapshot of two windows of the address
//! space: VMAs (relative start and end, permissions, offset, `VmFlags`, name, `Rss`,
//! `Anonymous`) and which pages are resident (`mincore`). The parent compares them
//! operation by operation and reports the first difference.
//!
//! The windows: "M", a range the child owns at a fixed, otherwise unused high address
//! (0x2000_0000_0000 on Linux; 8 GiB into the user range on the simulation), mapped only
//! with `MAP_FIXED`/`MAP_FIXED_NOREPLACE` or free hints; and "B", the brk area, relative to
//! `start_brk` (the child first shrinks its real break back to `start_brk`, so both heaps
//! start empty). The child disables THP so that pages are faulted one at a time. Addresses
//! a call picks outside the windows (a hint that was taken, an `mremap` that moved) are
//! compared only as "outside" and unmapped again on each side. Operations whose outcome on
//! Linux depends on the host's memory pressure (`MADV_FREE`) are left out, and so is
//! execute-only protection on a host with protection keys (see `gen_prot`).

use kernel_sim::{Config, Machine, MachineBox, VmaInfo};
use ptalloc::errno;
use ptalloc_testkit::Rng;

const PAGE: usize = 4096;
const REGION_PAGES: usize = 256;
const REGION: usize = REGION_PAGES * PAGE;
/// Snapshot windows extend past the region by the longest length an operation uses.
const WINDOW_PAGES: usize = REGION_PAGES + 48;
const WINDOW: usize = WINDOW_PAGES * PAGE;
const LINUX_M: usize = 0x2000_0000_0000;
const MAX_VMAS: usize = 96;
const SEEDS: u64 = 24;
const OPS_PER_SEED: usize = 1200;

const MAP_FIXED_NOREPLACE: i32 = 0x100000;
const MREMAP_MAYMOVE: i32 = 1;
const MREMAP_FIXED: i32 = 2;
const MREMAP_DONTUNMAP: i32 = 4;
const PROT_GROWSDOWN: i32 = 0x0100_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Area {
    M,
    B,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `mmap(base + off, ...)`; without MAP_FIXED* the address is a hint.
    Mmap {
        area: Area,
        off: usize,
        len: usize,
        prot: i32,
        flags: i32,
    },
    Munmap {
        area: Area,
        off: usize,
        len: usize,
    },
    Mprotect {
        area: Area,
        off: usize,
        len: usize,
        prot: i32,
    },
    Mremap {
        area: Area,
        off: usize,
        old_len: usize,
        new_len: usize,
        flags: i32,
        new_off: usize,
    },
    Madvise {
        area: Area,
        off: usize,
        len: usize,
        advice: i32,
    },
    /// `brk(start_brk + off)` (`off` may be negative); `None` is `brk(0)`.
    Brk {
        off: Option<isize>,
    },
    Touch {
        area: Area,
        off: usize,
        write: bool,
        value: u64,
    },
}

/// A result: an error number, a value (or an address relative to its window), or an
/// address outside both windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
struct Res {
    kind: u64,
    val: u64,
}

const RES_OK: u64 = 0;
const RES_ERR: u64 = 1;
const RES_OUT: u64 = 2;
const RES_REL_M: u64 = 3;
const RES_REL_B: u64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
struct VmaRec {
    area: u64,
    start: u64,
    end: u64,
    offset: u64,
    perms: [u8; 4],
    flags: u32,
    rss_kb: u32,
    anon_kb: u32,
    name: u32,
    _pad: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Snap {
    res: Res,
    /// total_vm, data_vm, stack_vm, exec_vm, locked_vm (pages), relative to the start.
    vm: [i64; 5],
    nvmas: u64,
    vmas: [VmaRec; MAX_VMAS],
    resident: [u8; 2 * WINDOW_PAGES / 8],
}

impl PartialEq for Snap {
    fn eq(&self, o: &Snap) -> bool {
        self.res == o.res
            && self.vm == o.vm
            && self.nvmas == o.nvmas
            && self.vmas[..self.nvmas as usize] == o.vmas[..o.nvmas as usize]
            && self.resident == o.resident
    }
}

impl Snap {
    fn empty() -> Snap {
        Snap {
            res: Res::default(),
            vm: [0; 5],
            nvmas: 0,
            vmas: [VmaRec::default(); MAX_VMAS],
            resident: [0; 2 * WINDOW_PAGES / 8],
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("result {:?}\ntotal/data/stack/exec/locked vm: {:?}\n", self.res, self.vm);
        for v in &self.vmas[..self.nvmas as usize] {
            s += &format!(
                "  {} {:#07x}-{:#07x} {} off {:#x} flags [{}] name {} rss {} anon {}\n",
                if v.area == 0 { "M" } else { "B" },
                v.start,
                v.end,
                String::from_utf8_lossy(&v.perms),
                v.offset,
                flag_names(v.flags),
                v.name,
                v.rss_kb,
                v.anon_kb
            );
        }
        for area in 0..2 {
            let mut line = String::new();
            for p in 0..WINDOW_PAGES {
                let i = area * WINDOW_PAGES + p;
                if self.resident[i / 8] & (1 << (i % 8)) != 0 {
                    line += &format!("{p} ");
                }
            }
            s += &format!("  resident {}: {}\n", if area == 0 { "M" } else { "B" }, line);
        }
        s
    }
}

/// The `VmFlags` mnemonics compared, as a bit set.
const FLAG_NAMES: [&str; 22] = [
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "lo", "sr", "rr", "dc", "de", "ac", "nr", "wf",
    "dd", "hg", "nh", "mg", "lf",
];

fn flag_bit(name: &[u8]) -> u32 {
    FLAG_NAMES.iter().position(|n| n.as_bytes() == name).map_or(0, |i| 1 << i)
}

fn flag_names(bits: u32) -> String {
    FLAG_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

fn name_code(name: &[u8]) -> u32 {
    match name {
        b"" => 0,
        b"[heap]" => 1,
        b"[stack]" => 2,
        b"/dev/zero (deleted)" => 3,
        _ => 4,
    }
}

/// The two windows of one side.
#[derive(Clone, Copy, Debug)]
struct Bases {
    m: usize,
    b: usize,
}

impl Bases {
    fn of(&self, a: Area) -> usize {
        match a {
            Area::M => self.m,
            Area::B => self.b,
        }
    }

    fn classify(&self, addr: usize) -> Res {
        if addr >= self.m && addr < self.m + WINDOW {
            Res { kind: RES_REL_M, val: (addr - self.m) as u64 }
        } else if addr >= self.b && addr < self.b + WINDOW {
            Res { kind: RES_REL_B, val: (addr - self.b) as u64 }
        } else {
            Res { kind: RES_OUT, val: 0 }
        }
    }
}

// ------------------------------------------------------------------ operation generation

/// Whether the host kernel uses protection keys (`ospke` in `/proc/cpuinfo`).
fn host_has_pkeys() -> bool {
    static PKEYS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PKEYS.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
            c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "ospke"))
        })
    })
}

fn gen_prot(rng: &mut Rng, mprotect: bool) -> i32 {
    let base = match rng.below(20) {
        0..=2 => libc::PROT_NONE,
        3..=5 => libc::PROT_READ,
        6..=14 => libc::PROT_READ | libc::PROT_WRITE,
        15..=16 => libc::PROT_READ | libc::PROT_EXEC,
        17 => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        18 => libc::PROT_WRITE,
        // Execute-only memory is what the simulation models of x86 without protection
        // keys: readable (and populated by MAP_POPULATE). With them Linux gives PROT_EXEC
        // alone the execute-only key, so reads fault and populate maps nothing: on such a
        // host the real side cannot stand for the modelled one.
        _ if host_has_pkeys() => libc::PROT_READ | libc::PROT_EXEC,
        _ => libc::PROT_EXEC,
    };
    if rng.chance(2) {
        return base | 0x10;
    }
    if mprotect && rng.chance(2) {
        return base | PROT_GROWSDOWN;
    }
    base
}

fn gen_off(rng: &mut Rng) -> usize {
    let page =
        if rng.chance(60) { rng.below(REGION_PAGES as u64 / 8) * 8 } else { rng.below(REGION_PAGES as u64) };
    let off = page as usize * PAGE;
    if rng.chance(2) {
        off + 1 + rng.below(PAGE as u64 - 1) as usize
    } else {
        off
    }
}

fn gen_len(rng: &mut Rng) -> usize {
    match rng.below(50) {
        0 => 0,
        1 => usize::MAX - rng.below(3 * PAGE as u64) as usize,
        2 => 1 + rng.below(3 * PAGE as u64) as usize,
        3..=20 => (1 + rng.below(4) as usize) * 8 * PAGE,
        _ => (1 + rng.below(16) as usize) * PAGE,
    }
}

fn gen_area(rng: &mut Rng) -> Area {
    if rng.chance(75) {
        Area::M
    } else {
        Area::B
    }
}

/// A range inside (or straddling the end of) a VMA of the window, as (offset, length).
fn pick_in_vma(rng: &mut Rng, m: &Machine, base: usize) -> Option<(usize, usize)> {
    let mut vmas = Vec::new();
    m.for_each_vma(|v| {
        if v.start >= base && v.end <= base + WINDOW {
            vmas.push((v.start, v.end));
        }
    });
    if vmas.is_empty() {
        return None;
    }
    let (s, e) = vmas[rng.below(vmas.len() as u64) as usize];
    let pages = (e - s) / PAGE;
    let first = if rng.chance(50) { 0 } else { rng.below(pages as u64) as usize };
    let mut n = if rng.chance(50) { pages - first } else { 1 + rng.below((pages - first) as u64) as usize };
    if rng.chance(15) {
        n += 1 + rng.below(4) as usize;
    }
    Some((s - base + first * PAGE, n * PAGE))
}

fn gen_op(rng: &mut Rng, m: &Machine, sim: &Bases) -> Op {
    loop {
        let area = gen_area(rng);
        let mut off = gen_off(rng);
        let mut targeted_len = None;
        if rng.chance(55) {
            if let Some((o, l)) = pick_in_vma(rng, m, sim.of(area)) {
                off = o;
                targeted_len = Some(l);
            }
        }
        let mut gen_len = |rng: &mut Rng| match targeted_len.take() {
            Some(l) => l,
            None => gen_len(rng),
        };
        // In the brk window, never map at its very start: on Linux a neighbouring bss
        // mapping may sit just below start_brk and merge with it.
        let off = if area == Area::B && off < PAGE { off + PAGE } else { off };
        let op = match rng.below(100) {
            0..=21 => {
                let mut flags = match rng.below(100) {
                    0..=84 => libc::MAP_PRIVATE,
                    85..=96 => libc::MAP_SHARED,
                    97 => 0,
                    _ => 0x03,
                } | libc::MAP_ANONYMOUS;
                flags |= match rng.below(100) {
                    0..=44 => MAP_FIXED_NOREPLACE,
                    45..=84 => libc::MAP_FIXED,
                    _ => 0,
                };
                if rng.chance(15) {
                    flags |= libc::MAP_NORESERVE;
                }
                if rng.chance(5) {
                    flags |= libc::MAP_STACK;
                }
                if rng.chance(4) {
                    flags |= libc::MAP_GROWSDOWN;
                }
                if rng.chance(8) {
                    flags |= libc::MAP_POPULATE;
                }
                if rng.chance(3) {
                    flags |= libc::MAP_LOCKED;
                }
                Op::Mmap { area, off, len: gen_len(rng), prot: gen_prot(rng, false), flags }
            }
            22..=31 => Op::Munmap { area, off, len: gen_len(rng) },
            32..=43 => Op::Mprotect { area, off, len: gen_len(rng), prot: gen_prot(rng, true) },
            44..=53 => {
                let flags = match rng.below(100) {
                    0..=24 => 0,
                    25..=54 => MREMAP_MAYMOVE,
                    55..=84 => MREMAP_MAYMOVE | MREMAP_FIXED,
                    85..=91 => MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                    92..=96 => MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
                    97 => MREMAP_FIXED,
                    _ => 8,
                };
                // Often the whole VMA at the address, as a program would.
                let old_len = match m.vma_at(sim.of(area) + off) {
                    Some(v) if rng.chance(60) => v.end - (sim.of(area) + off).min(v.end),
                    _ if rng.chance(5) => 0,
                    _ => gen_len(rng),
                };
                let new_len =
                    if flags & MREMAP_DONTUNMAP != 0 && rng.chance(80) { old_len } else { gen_len(rng) };
                Op::Mremap { area, off, old_len, new_len, flags, new_off: gen_off(rng) }
            }
            54..=63 => {
                let advice = match rng.below(40) {
                    0..=17 => libc::MADV_DONTNEED,
                    18 => libc::MADV_NORMAL,
                    19 => libc::MADV_RANDOM,
                    20 => libc::MADV_SEQUENTIAL,
                    21 => libc::MADV_WILLNEED,
                    22 => libc::MADV_DONTFORK,
                    23 => libc::MADV_DOFORK,
                    24 => libc::MADV_DONTDUMP,
                    25 => libc::MADV_DODUMP,
                    26 => libc::MADV_WIPEONFORK,
                    27 => libc::MADV_KEEPONFORK,
                    // Not MADV_FREE: whether Linux keeps lazily freed pages depends on the
                    // host's memory pressure at the time, so it cannot be compared.
                    28 => libc::MADV_WILLNEED,
                    29 => libc::MADV_REMOVE,
                    30 => libc::MADV_NOHUGEPAGE,
                    31 => libc::MADV_COLD,
                    32 => 24, // MADV_DONTNEED_LOCKED
                    33 => 77,
                    _ => libc::MADV_DONTNEED,
                };
                Op::Madvise { area, off, len: gen_len(rng), advice }
            }
            64..=70 => {
                let off = match rng.below(20) {
                    0 => None,
                    1 => Some(-(rng.below(3) as isize) * PAGE as isize - 8),
                    _ => Some(
                        rng.below(REGION as u64 + 32 * PAGE as u64) as isize
                            & !(rng.below(2) as isize * 4095),
                    ),
                };
                Op::Brk { off }
            }
            _ if rng.chance(12) => {
                // Just below a stack VMA: the fault grows it, if its guard gap allows.
                let mut cands = Vec::new();
                let mut prev_end = 0;
                let mut prev_blocks = false;
                m.for_each_vma(|v| {
                    if v.flags & 0x100 != 0
                        && v.start >= sim.of(area) + 4 * PAGE
                        && v.start < sim.of(area) + WINDOW
                    {
                        cands.push((v.start, v.flags, prev_end, prev_blocks));
                    }
                    prev_end = v.end;
                    prev_blocks = v.flags & 0x100 == 0 && v.flags & 7 != 0;
                });
                if cands.is_empty() {
                    continue;
                }
                let (start, flags, prev_end, prev_blocks) = cands[rng.below(cands.len() as u64) as usize];
                let addr = start - (1 + rng.below(3) as usize) * PAGE;
                if addr < prev_end || (prev_blocks && addr - prev_end < 256 * PAGE) {
                    continue;
                }
                let write = flags & 2 != 0 && rng.chance(50);
                if !write && flags & 7 == 0 {
                    continue;
                }
                Op::Touch { area, off: addr - sim.of(area), write, value: rng.next_u64() }
            }
            _ => {
                let write = rng.chance(50);
                let page_off = off & !(PAGE - 1);
                let addr = sim.of(area) + page_off;
                let Some(v) = m.vma_at(addr) else { continue };
                let ok = if write { v.flags & 2 != 0 } else { v.flags & 7 != 0 };
                let beyond = v.object_pages != 0 && v.pgoff + (addr - v.start) / PAGE >= v.object_pages;
                if !ok || beyond {
                    continue;
                }
                Op::Touch {
                    area,
                    off: page_off + 8 * rng.below(PAGE as u64 / 8) as usize,
                    write,
                    value: rng.next_u64(),
                }
            }
        };
        return op;
    }
}

// ------------------------------------------------------------------ applying operations

/// The system calls of one side.
///
/// # Safety
/// Each call takes memory away as the system call does, so each has its caller's promise of
/// the range rule (see `kernel_sim::Machine`): nothing still uses the memory it unmaps,
/// moves, protects or discards.
trait Side {
    /// # Safety
    /// See [`Side`].
    unsafe fn mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, i32>;
    /// # Safety
    /// See [`Side`].
    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), i32>;
    /// # Safety
    /// See [`Side`].
    unsafe fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), i32>;
    /// # Safety
    /// See [`Side`].
    unsafe fn mremap(
        &self,
        addr: usize,
        old: usize,
        new: usize,
        flags: i32,
        new_addr: usize,
    ) -> Result<usize, i32>;
    /// # Safety
    /// See [`Side`].
    unsafe fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), i32>;
    /// # Safety
    /// See [`Side`].
    unsafe fn brk(&self, addr: usize) -> usize;
}

/// Apply `op` to one side and say what it returned.
///
/// # Safety
/// The windows of `bases` (and anything a call maps outside them, which is unmapped again
/// at once) hold nothing of the program's: only the operations' own raw touches use them,
/// each at an address the generator checked the simulation allows.
unsafe fn apply(side: &dyn Side, bases: &Bases, op: Op) -> Res {
    let err = |e: i32| Res { kind: RES_ERR, val: e as u64 };
    let unit = |r: Result<(), i32>| r.map_or_else(err, |_| Res { kind: RES_OK, val: 0 });
    // SAFETY: every range named here lies in the windows or is the one a call just mapped
    // outside them, and the caller promises nothing there is the program's. A touch is at an
    // address the generator checked the simulation allows; the real kernel must agree, or the
    // child dies and the test reports it.
    unsafe {
        match op {
            Op::Mmap { area, off, len, prot, flags } => {
                match side.mmap(bases.of(area) + off, len, prot, flags) {
                    Ok(a) => {
                        let r = bases.classify(a);
                        if r.kind == RES_OUT {
                            let _ = side.munmap(a, len);
                        }
                        r
                    }
                    Err(e) => err(e),
                }
            }
            Op::Munmap { area, off, len } => unit(side.munmap(bases.of(area) + off, len)),
            Op::Mprotect { area, off, len, prot } => unit(side.mprotect(bases.of(area) + off, len, prot)),
            Op::Madvise { area, off, len, advice } => unit(side.madvise(bases.of(area) + off, len, advice)),
            Op::Mremap { area, off, old_len, new_len, flags, new_off } => {
                match side.mremap(bases.of(area) + off, old_len, new_len, flags, bases.of(area) + new_off) {
                    Ok(a) => {
                        let r = bases.classify(a);
                        if r.kind == RES_OUT {
                            let _ = side.munmap(a, new_len);
                        }
                        r
                    }
                    Err(e) => err(e),
                }
            }
            Op::Brk { off } => {
                let want = off.map_or(0, |o| bases.b.wrapping_add_signed(o));
                let got = side.brk(want);
                Res { kind: RES_OK, val: got.wrapping_sub(bases.b) as u64 }
            }
            Op::Touch { area, off, write, value } => {
                let p = (bases.of(area) + off) as *mut u64;
                if write {
                    p.write_volatile(value);
                    Res { kind: RES_OK, val: 0 }
                } else {
                    Res { kind: RES_OK, val: p.read_volatile() }
                }
            }
        }
    }
}

struct Sim<'a>(&'a Machine);

// Each call forwards its caller's promise of the range rule to the machine.
impl Side for Sim<'_> {
    unsafe fn mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, i32> {
        // SAFETY: forwarded.
        unsafe { self.0.mmap(addr, len, prot, flags, -1, 0) }.map_err(|e| e.0)
    }
    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), i32> {
        // SAFETY: forwarded.
        unsafe { self.0.munmap(addr, len) }.map_err(|e| e.0)
    }
    unsafe fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), i32> {
        // SAFETY: forwarded.
        unsafe { self.0.mprotect(addr, len, prot) }.map_err(|e| e.0)
    }
    unsafe fn mremap(
        &self,
        addr: usize,
        old: usize,
        new: usize,
        flags: i32,
        new_addr: usize,
    ) -> Result<usize, i32> {
        // SAFETY: forwarded.
        unsafe { self.0.mremap(addr, old, new, flags, new_addr) }.map_err(|e| e.0)
    }
    unsafe fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), i32> {
        // SAFETY: forwarded.
        unsafe { self.0.madvise(addr, len, advice) }.map_err(|e| e.0)
    }
    unsafe fn brk(&self, addr: usize) -> usize {
        // SAFETY: forwarded.
        unsafe { self.0.brk(addr) }
    }
}

struct Linux;

impl Side for Linux {
    unsafe fn mmap(&self, addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, i32> {
        // SAFETY: a raw system call on the child's own address space; the caller promises
        // the range rule for it.
        let r = unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, -1i32, 0usize) };
        if r < 0 && r > -4096 {
            Err(errno())
        } else {
            Ok(r as usize)
        }
    }
    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), i32> {
        // SAFETY: a raw system call on the child's own address space; the caller promises
        // the range rule for it.
        let r = unsafe { libc::syscall(libc::SYS_munmap, addr, len) };
        if r < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }
    unsafe fn mprotect(&self, addr: usize, len: usize, prot: i32) -> Result<(), i32> {
        // SAFETY: a raw system call on the child's own address space; the caller promises
        // the range rule for it.
        let r = unsafe { libc::syscall(libc::SYS_mprotect, addr, len, prot) };
        if r < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }
    unsafe fn mremap(
        &self,
        addr: usize,
        old: usize,
        new: usize,
        flags: i32,
        new_addr: usize,
    ) -> Result<usize, i32> {
        // SAFETY: a raw system call on the child's own address space; the caller promises
        // the range rule for it.
        let r = unsafe { libc::syscall(libc::SYS_mremap, addr, old, new, flags, new_addr) };
        if r < 0 && r > -4096 {
            Err(errno())
        } else {
            Ok(r as usize)
        }
    }
    unsafe fn madvise(&self, addr: usize, len: usize, advice: i32) -> Result<(), i32> {
        // SAFETY: a raw system call on the child's own address space; the caller promises
        // the range rule for it.
        let r = unsafe { libc::syscall(libc::SYS_madvise, addr, len, advice) };
        if r < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }
    unsafe fn brk(&self, addr: usize) -> usize {
        // SAFETY: the raw brk system call returns the break; the caller promises the range
        // rule for what a lowered break gives back.
        unsafe { libc::syscall(libc::SYS_brk, addr) as usize }
    }
}

// ------------------------------------------------------------------ snapshots

fn set_resident(snap: &mut Snap, area: usize, page: usize) {
    let i = area * WINDOW_PAGES + page;
    snap.resident[i / 8] |= 1 << (i % 8);
}

fn vm_flag_bits(info: &VmaInfo) -> u32 {
    let mut s = String::new();
    info.write_vm_flags(&mut s).unwrap();
    s.split_whitespace().map(|n| flag_bit(n.as_bytes())).fold(0, |a, b| a | b)
}

fn sim_vm(m: &Machine) -> [i64; 5] {
    let c = m.counters();
    [c.total_vm as i64, c.data_vm as i64, c.stack_vm as i64, c.exec_vm as i64, c.locked_vm as i64]
}

fn snapshot_sim(m: &Machine, bases: &Bases, res: Res, base_vm: &[i64; 5]) -> Snap {
    let mut snap = Snap::empty();
    snap.res = res;
    let vm = sim_vm(m);
    for i in 0..5 {
        snap.vm[i] = vm[i] - base_vm[i];
    }
    let mut vmas = Vec::new();
    m.for_each_vma(|v| vmas.push(*v));
    for v in vmas {
        for (ai, base) in [(0usize, bases.m), (1, bases.b)] {
            let (lo, hi) = (v.start.max(base), v.end.min(base + WINDOW));
            if lo >= hi {
                continue;
            }
            let n = snap.nvmas as usize;
            assert!(n < MAX_VMAS, "too many VMAs in the windows");
            let mut perms = [0u8; 4];
            perms.copy_from_slice(v.perms_str().as_bytes());
            snap.vmas[n] = VmaRec {
                area: ai as u64,
                start: (lo - base) as u64,
                end: (hi - base) as u64,
                offset: v.offset,
                perms,
                flags: vm_flag_bits(&v),
                rss_kb: (v.stats.resident >> 10) as u32,
                anon_kb: (v.stats.anonymous >> 10) as u32,
                name: name_code(v.name.as_bytes()),
                _pad: 0,
            };
            snap.nvmas += 1;
            let mut vec = vec![0u8; (hi - lo) / PAGE];
            m.mincore(lo, hi - lo, &mut vec).unwrap();
            for (i, r) in vec.iter().enumerate() {
                if r & 1 != 0 {
                    set_resident(&mut snap, ai, (lo - base) / PAGE + i);
                }
            }
        }
    }
    snap.vmas[..snap.nvmas as usize].sort_unstable_by_key(|v| (v.area, v.start));
    snap
}

/// total_vm, data_vm, stack_vm, exec_vm, locked_vm in pages, from /proc/self/status.
fn linux_vm(buf: &mut [u8]) -> [i64; 5] {
    // SAFETY: reading a procfs file into our buffer with raw system calls.
    let len = unsafe {
        let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
        let r = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        r.max(0) as usize
    };
    let mut v = [0i64; 6];
    for line in buf[..len].split(|&c| c == b'\n') {
        for (i, key) in
            [&b"VmSize:"[..], b"VmData:", b"VmStk:", b"VmExe:", b"VmLck:", b"VmLib:"].iter().enumerate()
        {
            if let Some(rest) = line.strip_prefix(*key) {
                v[i] = parse_dec(rest) as i64 / 4;
            }
        }
    }
    [v[0], v[1], v[2], v[3] + v[5], v[4]]
}

/// The child's snapshot: parse /proc/self/smaps without allocating.
fn snapshot_linux(bases: &Bases, res: Res, buf: &mut [u8], snap: &mut Snap, base_vm: &[i64; 5]) {
    snap.res = res;
    let vm = linux_vm(buf);
    for i in 0..5 {
        snap.vm[i] = vm[i] - base_vm[i];
    }
    snap.nvmas = 0;
    snap.resident = [0; 2 * WINDOW_PAGES / 8];
    // SAFETY: reading a procfs file into our buffer with raw system calls.
    let len = unsafe {
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
    };
    let text = &buf[..len];
    let mut cur: Option<VmaRec> = None;
    let mut cur_range = (0usize, 0usize);
    for line in text.split(|&c| c == b'\n') {
        if line.is_empty() {
            continue;
        }
        let is_header =
            line[0].is_ascii_hexdigit() && line.iter().take_while(|&&c| c != b' ').any(|&c| c == b'-');
        if is_header {
            let mut fields = line.splitn(6, |&c| c == b' ');
            let range = fields.next().unwrap();
            let perms = fields.next().unwrap();
            let offset = fields.next().unwrap();
            let _dev = fields.next();
            let _ino = fields.next();
            let name = fields.next().map_or(&b""[..], |n| n.trim_ascii());
            let dash = range.iter().position(|&c| c == b'-').unwrap();
            let start = parse_hex(&range[..dash]);
            let end = parse_hex(&range[dash + 1..]);
            cur = None;
            for (ai, base) in [(0usize, bases.m), (1, bases.b)] {
                let (lo, hi) = (start.max(base), end.min(base + WINDOW));
                if lo < hi {
                    let mut p = [0u8; 4];
                    p.copy_from_slice(&perms[..4]);
                    cur = Some(VmaRec {
                        area: ai as u64,
                        start: (lo - base) as u64,
                        end: (hi - base) as u64,
                        offset: parse_hex(offset) as u64,
                        perms: p,
                        name: name_code(name),
                        ..VmaRec::default()
                    });
                    cur_range = (lo, hi);
                }
            }
        } else if let Some(rec) = cur.as_mut() {
            if let Some(v) = line.strip_prefix(b"Rss:") {
                rec.rss_kb = parse_dec(v);
            } else if let Some(v) = line.strip_prefix(b"Anonymous:") {
                rec.anon_kb = parse_dec(v);
            } else if let Some(v) = line.strip_prefix(b"VmFlags:") {
                rec.flags =
                    v.split(|&c| c == b' ').filter(|n| !n.is_empty()).map(flag_bit).fold(0, |a, b| a | b);
                let n = snap.nvmas as usize;
                if n < MAX_VMAS {
                    snap.vmas[n] = *rec;
                    snap.nvmas += 1;
                }
                let (lo, hi) = cur_range;
                let mut vec = [0u8; WINDOW_PAGES];
                // SAFETY: mincore on a mapped range into a buffer of one byte per page.
                let r = unsafe { libc::mincore(lo as *mut libc::c_void, hi - lo, vec.as_mut_ptr()) };
                if r == 0 {
                    for (i, v) in vec[..(hi - lo) / PAGE].iter().enumerate() {
                        if v & 1 != 0 {
                            set_resident(snap, rec.area as usize, rec.start as usize / PAGE + i);
                        }
                    }
                }
                cur = None;
            }
        }
    }
    snap.vmas[..snap.nvmas as usize].sort_unstable_by_key(|v| (v.area, v.start));
}

fn parse_hex(s: &[u8]) -> usize {
    s.iter()
        .take_while(|c| c.is_ascii_hexdigit())
        .fold(0, |a, &c| a * 16 + (c as char).to_digit(16).unwrap() as usize)
}

fn parse_dec(s: &[u8]) -> u32 {
    s.iter().filter(|c| c.is_ascii_digit()).fold(0, |a, &c| a * 10 + (c - b'0') as u32)
}

/// /proc/self/stat field (1-based) `n`.
fn stat_field(n: usize, buf: &mut [u8]) -> usize {
    // SAFETY: reading a procfs file into our buffer.
    let len = unsafe {
        let fd = libc::open(c"/proc/self/stat".as_ptr(), libc::O_RDONLY);
        let r = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        r.max(0) as usize
    };
    let text = &buf[..len];
    let close = text.iter().rposition(|&c| c == b')').unwrap();
    // Field 3 starts after ") ".
    let rest = &text[close + 2..];
    let f = rest.split(|&c| c == b' ').nth(n - 3).unwrap();
    f.iter().fold(0, |a, &c| a * 10 + (c - b'0') as usize)
}

// ------------------------------------------------------------------ the child

struct Shared {
    base: *mut u8,
}

#[repr(C)]
struct Header {
    status: u64,
    done: u64,
    start_brk: u64,
}

const CHILD_OK: u64 = 1;
const CHILD_BUSY: u64 = 2;
const CHILD_BRK: u64 = 3;

impl Shared {
    fn new(bytes: usize) -> Shared {
        // SAFETY: a fresh shared anonymous mapping, inherited by the child.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Shared { base: p.cast() }
    }
    fn header(&self) -> *mut Header {
        self.base.cast()
    }
    /// Slot `i`: snapshots follow the (page-sized) header, each its own slot. The pointer is
    /// only computed here; whoever dereferences it keeps `i` below the slots mapped.
    fn snap(&self, i: usize) -> *mut Snap {
        self.base.wrapping_add(4096 + i * core::mem::size_of::<Snap>()).cast()
    }
}

/// The Linux side: apply `ops` with raw system calls, a snapshot after each into `shared`.
///
/// # Safety
/// Only in a child just forked for it: it shrinks the real break and maps, unmaps and
/// touches memory at fixed addresses of the process, which nothing else may be using.
unsafe fn child(ops: &[Op], shared: &Shared) -> ! {
    // SAFETY: raw system calls only; the child allocates nothing and never returns, so
    // nothing of its own lives in the emptied heap or the windows the operations use.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        let buf_len = 8 << 20;
        let buf = libc::mmap(
            core::ptr::null_mut(),
            buf_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        ) as *mut u8;
        let buf = core::slice::from_raw_parts_mut(buf, buf_len);
        let h = shared.header();
        let start_brk = stat_field(47, buf);
        (*h).start_brk = start_brk as u64;
        // Empty heap, so both sides start from start_brk (nothing here allocates).
        if Linux.brk(start_brk) != start_brk {
            (*h).status = CHILD_BRK;
            libc::_exit(0);
        }
        let bases = Bases { m: LINUX_M, b: start_brk };
        // Nothing may be mapped near either window.
        let base_vm = linux_vm(buf);
        let probe = Snap::empty();
        let mut s = probe;
        snapshot_linux(&bases, Res::default(), buf, &mut s, &base_vm);
        if s.nvmas != 0 {
            (*h).status = CHILD_BUSY;
            libc::_exit(0);
        }
        for (i, &op) in ops.iter().enumerate() {
            let res = apply(&Linux, &bases, op);
            snapshot_linux(&bases, res, buf, &mut *shared.snap(i), &base_vm);
            (*h).done = i as u64 + 1;
        }
        (*h).status = CHILD_OK;
        libc::_exit(0);
    }
}

fn run_linux(ops: &[Op], shared: &Shared) -> Result<(), String> {
    // SAFETY: the header lives in the shared mapping.
    unsafe { core::ptr::write_bytes(shared.base, 0, 4096) };
    // SAFETY: the child runs only raw system calls (see `child`) and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: the child of the fork just made, which runs nothing else.
        unsafe { child(ops, shared) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    // SAFETY: the child has exited; the header is ours to read.
    let h = unsafe { &*shared.header() };
    if libc::WIFSIGNALED(status) {
        return Err(format!(
            "the Linux child died of signal {} at op {} ({:?})",
            libc::WTERMSIG(status),
            h.done,
            ops.get(h.done as usize)
        ));
    }
    match h.status {
        CHILD_OK => Ok(()),
        CHILD_BUSY => Err("the Linux windows are not free".into()),
        CHILD_BRK => Err("could not reset the real break to start_brk".into()),
        s => Err(format!("the Linux child failed (status {s}, done {})", h.done)),
    }
}

/// A machine whose heap starts at the same offset within 2 MiB as this process's, so that
/// alignment-dependent behaviour (fault-around windows) is the same in the brk window.
fn boot_sim() -> MachineBox {
    let mut buf = [0u8; 4096];
    let linux_start_brk = stat_field(47, &mut buf);
    let probe = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    let sim_start_brk = probe.counters().start_brk;
    drop(probe);
    let brk_offset = linux_start_brk.wrapping_sub(sim_start_brk) & ((2 << 20) - 1);
    let config = Config {
        phys_bytes: 256 << 20,
        cap_ipc_lock: true,
        cap_sys_admin: true,
        brk_offset,
        ..Config::DEFAULT
    };
    let m = Machine::boot(&config).unwrap();
    assert_eq!(m.counters().start_brk % (2 << 20), linux_start_brk % (2 << 20));
    m
}

fn check_every() -> usize {
    std::env::var("KSIM_DIFF_CHECK_EVERY").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

/// What a run exercised: operations by kind, and how many failed (with an errno).
#[derive(Default)]
struct Coverage {
    ops: [u64; 7],
    errors: [u64; 7],
    stack_growth: u64,
}

fn kind(op: &Op) -> usize {
    match op {
        Op::Mmap { .. } => 0,
        Op::Munmap { .. } => 1,
        Op::Mprotect { .. } => 2,
        Op::Mremap { .. } => 3,
        Op::Madvise { .. } => 4,
        Op::Brk { .. } => 5,
        Op::Touch { .. } => 6,
    }
}

fn run_seed(seed: u64, shared: &Shared, cov: &mut Coverage) -> Result<usize, String> {
    let m = boot_sim();
    let sim = Bases { m: m.user_base() + (8 << 30), b: m.counters().start_brk };
    let mut rng = Rng::new(seed);
    let base_vm = sim_vm(&m);
    let mut ops = Vec::with_capacity(OPS_PER_SEED);
    let mut snaps = Vec::with_capacity(OPS_PER_SEED);
    for _ in 0..OPS_PER_SEED {
        let op = gen_op(&mut rng, &m, &sim);
        let before = m.counters().stack_vm;
        // SAFETY: the windows are the machine's own, and only the operations' raw touches use
        // them.
        let res = unsafe { apply(&Sim(&m), &sim, op) };
        cov.ops[kind(&op)] += 1;
        if res.kind == RES_ERR {
            cov.errors[kind(&op)] += 1;
        }
        if matches!(op, Op::Touch { .. }) && m.counters().stack_vm > before {
            cov.stack_growth += 1;
        }
        snaps.push(snapshot_sim(&m, &sim, res, &base_vm));
        ops.push(op);
        if ops.len() % check_every() != 0 {
            continue;
        }
        if let Err(e) = m.check() {
            let from = ops.len().saturating_sub(8);
            let recent: Vec<String> = ops[from..]
                .iter()
                .zip(&snaps[from..])
                .map(|(o, s)| format!("  {o:?} -> {:?}", s.res))
                .collect();
            return Err(format!(
                "seed {seed}: simulation invariant broken after op {} {op:?}: {e}\nrecent:\n{}",
                ops.len() - 1,
                recent.join("\n")
            ));
        }
    }
    run_linux(&ops, shared).map_err(|e| format!("seed {seed}: {e}"))?;
    for (i, sim_snap) in snaps.iter().enumerate() {
        // SAFETY: the child wrote every slot up to `done`, which run_linux checked.
        let real = unsafe { &*shared.snap(i) };
        if real != sim_snap {
            let from = i.saturating_sub(12);
            let mut history = String::new();
            for (j, op) in ops.iter().enumerate().take(i + 1).skip(from) {
                // SAFETY: as above.
                let r = unsafe { &*shared.snap(j) };
                history += &format!("  #{j} {op:?}\n      linux {:?} sim {:?}\n", r.res, snaps[j].res);
            }
            return Err(format!(
                "seed {seed}: divergence at op {i}: {:?}\nhistory:\n{history}\nLinux:\n{}\nSimulation:\n{}",
                ops[i],
                real.describe(),
                sim_snap.describe()
            ));
        }
    }
    Ok(ops.len())
}

#[test]
fn differential_against_linux() {
    let shared = Shared::new(4096 + OPS_PER_SEED * core::mem::size_of::<Snap>());
    let seeds: u64 = std::env::var("KSIM_DIFF_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS);
    let first: u64 = std::env::var("KSIM_DIFF_FIRST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut total = 0;
    let mut cov = Coverage::default();
    let verbose = std::env::var_os("KSIM_DIFF_VERBOSE").is_some();
    for seed in first..first + seeds {
        if verbose {
            eprintln!("seed {seed}");
        }
        match run_seed(seed, &shared, &mut cov) {
            Ok(n) => total += n,
            Err(e) => panic!("{e}"),
        }
    }
    println!("differential: {seeds} seeds, {total} operations compared against Linux (each followed by a full snapshot)");
    let names = ["mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "touch"];
    for (i, name) in names.iter().enumerate() {
        println!("  {:<9} {:>6} ({} failed with an errno)", name, cov.ops[i], cov.errors[i]);
    }
    println!("  stack growth by touches: {}", cov.stack_growth);
}
