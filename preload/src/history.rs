//! A trace's heap over time: which block each address was at every moment, each block's
//! life, the live bytes, and the memory ptalloc had from the kernel.
//!
//! Records are walked in time order (see `trace.rs` for why that order is right): a
//! release (a free, or the start of a realloc) before an acquire (the end of a call that
//! returns a block) at the same nanosecond, threads and their own order after that. A
//! realloc keeps its block — the same one at a new address, with a new size — so a replay
//! can call realloc on it again; its address is released at its start, but the live bytes
//! change at its end, all at once, as they do when a replay makes the call.

use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::trace::Kind;
use crate::tracefile::{Record, Trace};

/// Addresses are already well spread but for their low bits: a multiply mixes them, where
/// std's SipHash (made to resist chosen keys, which a trace's addresses are not) costs a
/// sixth of the time spent reading a large trace. Ten lines; not worth a dependency.
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
}

pub type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<AddrHasher>>;

/// No block: a free of null, of an address never returned, a failed call, a kernel call.
pub const NONE: u32 = u32::MAX;

/// One block the program had, from its first allocation to its free (through reallocs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Requested bytes now (after the last realloc).
    pub size: u64,
    /// The largest size it had.
    pub max_size: u64,
    pub alloc_time: u64,
    pub alloc_thread: u32,
    pub free_time: Option<u64>,
    pub free_thread: Option<u32>,
    pub reallocs: u32,
    /// The record that freed it (thread index, record index).
    pub freed_by: Option<(u32, u32)>,
}

/// The requested size of an allocation record (calloc's product saturates: such a call fails).
pub fn request(r: &Record) -> u64 {
    let a = r.args;
    match r.kind {
        Kind::Malloc | Kind::Valloc | Kind::Pvalloc => a[0],
        Kind::Calloc => a[0].saturating_mul(a[1]),
        Kind::Realloc => a[1],
        Kind::Reallocarray => a[1].saturating_mul(a[2]),
        Kind::Memalign | Kind::AlignedAlloc | Kind::PosixMemalign => a[1],
        _ => 0,
    }
}

/// The address an allocation record returned (0: it failed).
pub fn result(r: &Record) -> u64 {
    let a = r.args;
    match r.kind {
        Kind::Malloc | Kind::Valloc | Kind::Pvalloc => a[1],
        Kind::Calloc | Kind::Realloc | Kind::Memalign | Kind::AlignedAlloc | Kind::PosixMemalign => a[2],
        Kind::Reallocarray => a[3],
        _ => 0,
    }
}

/// The block a realloc record starts from (0: none, it acts as malloc).
pub fn realloc_source(r: &Record) -> u64 {
    match r.kind {
        Kind::Realloc | Kind::Reallocarray => r.args[0],
        _ => 0,
    }
}

/// When a realloc record's call began.
fn start_time(r: &Record) -> u64 {
    match r.kind {
        Kind::Realloc => r.args[3],
        Kind::Reallocarray => r.args[4],
        _ => r.time,
    }
}

pub fn is_allocation(k: Kind) -> bool {
    matches!(
        k,
        Kind::Malloc
            | Kind::Calloc
            | Kind::Realloc
            | Kind::Reallocarray
            | Kind::Memalign
            | Kind::PosixMemalign
            | Kind::AlignedAlloc
            | Kind::Valloc
            | Kind::Pvalloc
    )
}

/// The trace's heap, worked out.
#[derive(Debug, Default)]
pub struct History {
    pub blocks: Vec<Block>,
    /// Per thread (in `Trace::threads`' order), per record: the block the record acts on.
    pub record_block: Vec<Vec<u32>>,
    pub peak_live: u64,
    pub peak_live_time: u64,
    pub live_at_end: u64,
    /// `free(NULL)` and `realloc(NULL, ..)`-free calls that free nothing.
    pub free_null: u64,
    /// Frees (and reallocs) of an address the trace never returned: blocks allocated before
    /// recording began, or by a path the recorder does not see.
    pub unknown_frees: u64,
    /// Allocations that returned null.
    pub failed: u64,
    /// An address returned while the trace still had a block there (a free it did not see).
    pub overlaps: u64,
    /// Frees (and moving reallocs) by another thread than the one that got the address,
    /// by (allocating thread, freeing thread).
    pub cross_thread: BTreeMap<(u32, u32), u64>,
    /// Live bytes over time: (time, highest live bytes in the step ending there).
    pub live_series: Vec<(u64, u64)>,
    /// Memory ptalloc had from the kernel (break extent and accessible mappings) over time.
    pub heap_series: Vec<(u64, u64)>,
    pub peak_heap: u64,
    /// The process's resident bytes as sampled by the recorder (time, bytes).
    pub rss_series: Vec<(u64, u64)>,
    pub duration: u64,
}

/// The accessible address ranges ptalloc holds: mappings not `PROT_NONE`.
#[derive(Default)]
struct Mapped {
    ranges: BTreeMap<u64, u64>,
    total: u64,
}

impl Mapped {
    fn remove(&mut self, start: u64, end: u64) {
        let hits: Vec<(u64, u64)> =
            self.ranges.range(..end).rev().take_while(|(_, e)| **e > start).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in hits {
            self.ranges.remove(&s);
            self.total -= e - s;
            if s < start {
                self.ranges.insert(s, start);
                self.total += start - s;
            }
            if e > end {
                self.ranges.insert(end, e);
                self.total += e - end;
            }
        }
    }

    fn add(&mut self, start: u64, end: u64) {
        self.remove(start, end);
        self.ranges.insert(start, end);
        self.total += end - start;
    }
}

/// A series of at most about `POINTS` steps over `duration`, keeping each step's highest value.
struct Series {
    step: u64,
    points: Vec<(u64, u64)>,
}

const POINTS: u64 = 1000;

impl Series {
    fn new(duration: u64) -> Series {
        Series { step: (duration / POINTS).max(1), points: Vec::new() }
    }

    fn push(&mut self, time: u64, value: u64) {
        let at = time / self.step * self.step;
        match self.points.last_mut() {
            Some((t, v)) if *t == at => *v = (*v).max(value),
            _ => self.points.push((at, value)),
        }
    }
}

const RELEASE: u8 = 0;
const ACQUIRE: u8 = 1;

pub fn history(trace: &Trace) -> History {
    let duration = trace.threads.iter().flat_map(|t| t.records.iter().map(|r| r.time)).max().unwrap_or(0);
    // (time, phase, thread index, record index)
    let mut events: Vec<(u64, u8, u32, u32)> = Vec::new();
    let mut kernel: Vec<(u64, u32, u32)> = Vec::new();
    for (ti, t) in trace.threads.iter().enumerate() {
        for (ri, r) in t.records.iter().enumerate() {
            let (ti, ri) = (ti as u32, ri as u32);
            match r.kind {
                Kind::Free => events.push((r.time, RELEASE, ti, ri)),
                Kind::Realloc | Kind::Reallocarray => {
                    if realloc_source(r) != 0 {
                        events.push((start_time(r), RELEASE, ti, ri));
                    }
                    events.push((r.time, ACQUIRE, ti, ri));
                }
                k if is_allocation(k) => events.push((r.time, ACQUIRE, ti, ri)),
                k if k.is_kernel() || k == Kind::Rss => kernel.push((r.time, ti, ri)),
                _ => {}
            }
        }
    }
    events.sort_unstable();
    kernel.sort_unstable();

    let mut h = History {
        record_block: trace.threads.iter().map(|t| vec![NONE; t.records.len()]).collect(),
        duration,
        ..Default::default()
    };
    let mut live_at: HashMap<u64, u32> = HashMap::default();
    // Reallocs between their release and their acquire: (thread, record) -> block.
    let mut moving: HashMap<(u32, u32), u32> = HashMap::default();
    let mut live = 0u64;
    let mut series = Series::new(duration);
    for (time, phase, ti, ri) in events {
        let t = &trace.threads[ti as usize];
        let r = &t.records[ri as usize];
        let thread = t.thread;
        if phase == RELEASE {
            let p = if r.kind == Kind::Free { r.args[0] } else { realloc_source(r) };
            if p == 0 {
                h.free_null += 1;
                continue;
            }
            // A realloc that failed keeps its block where it was.
            if r.kind != Kind::Free && result(r) == 0 && request(r) != 0 {
                if let Some(b) = live_at.get(&p) {
                    h.record_block[ti as usize][ri as usize] = *b;
                }
                continue;
            }
            let Some(b) = live_at.remove(&p) else {
                h.unknown_frees += 1;
                continue;
            };
            h.record_block[ti as usize][ri as usize] = b;
            let blk = &mut h.blocks[b as usize];
            if blk.alloc_thread != thread {
                *h.cross_thread.entry((blk.alloc_thread, thread)).or_insert(0) += 1;
            }
            if r.kind == Kind::Free {
                live -= blk.size;
                blk.free_time = Some(time);
                blk.free_thread = Some(thread);
                blk.freed_by = Some((ti, ri));
            } else {
                // Its bytes change at the realloc's end (below).
                moving.insert((ti, ri), b);
            }
        } else {
            let addr = result(r);
            let size = request(r);
            if addr == 0 {
                match moving.remove(&(ti, ri)) {
                    // realloc(p, 0): freed, at the call's end.
                    Some(b) => {
                        let blk = &mut h.blocks[b as usize];
                        live -= blk.size;
                        blk.free_time = Some(time);
                        blk.free_thread = Some(thread);
                        blk.freed_by = Some((ti, ri));
                    }
                    None => h.failed += 1,
                }
                series.push(time, live);
                continue;
            }
            let b = match moving.remove(&(ti, ri)) {
                Some(b) => {
                    let blk = &mut h.blocks[b as usize];
                    live -= blk.size;
                    blk.size = size;
                    blk.max_size = blk.max_size.max(size);
                    blk.alloc_thread = thread;
                    blk.reallocs += 1;
                    b
                }
                None => {
                    h.blocks.push(Block {
                        size,
                        max_size: size,
                        alloc_time: time,
                        alloc_thread: thread,
                        free_time: None,
                        free_thread: None,
                        reallocs: 0,
                        freed_by: None,
                    });
                    (h.blocks.len() - 1) as u32
                }
            };
            h.record_block[ti as usize][ri as usize] = b;
            if let Some(old) = live_at.insert(addr, b) {
                h.overlaps += 1;
                let o = &mut h.blocks[old as usize];
                live -= o.size;
                o.free_time.get_or_insert(time);
            }
            live += size;
            if live > h.peak_live {
                h.peak_live = live;
                h.peak_live_time = time;
            }
        }
        series.push(time, live);
    }
    h.live_at_end = live;
    h.live_series = series.points;

    // The kernel's side.
    let mut heap = Series::new(duration);
    let mut mapped = Mapped::default();
    let mut brk_extent = 0i64;
    for (time, ti, ri) in kernel {
        let r = &trace.threads[ti as usize].records[ri as usize];
        let a = r.args;
        let ok = |v: u64| !crate::trace::is_errno(v);
        match r.kind {
            Kind::Rss => {
                h.rss_series.push((time, a[0]));
                continue;
            }
            Kind::Sbrk if ok(a[1]) => brk_extent = (brk_extent + a[0] as i64).max(0),
            Kind::Mmap if ok(a[2]) && (a[1] >> 32) as i32 != libc::PROT_NONE => mapped.add(a[2], a[2] + a[0]),
            Kind::Munmap if a[2] == 0 => mapped.remove(a[0], a[0] + a[1]),
            Kind::Mremap if ok(a[4]) => {
                mapped.remove(a[0], a[0] + a[1]);
                mapped.add(a[4], a[4] + a[2]);
            }
            Kind::Mprotect if a[3] == 0 => {
                if a[2] as i32 == libc::PROT_NONE {
                    mapped.remove(a[0], a[0] + a[1]);
                } else {
                    mapped.add(a[0], a[0] + a[1]);
                }
            }
            _ => {}
        }
        let total = brk_extent as u64 + mapped.total;
        h.peak_heap = h.peak_heap.max(total);
        heap.push(time, total);
    }
    h.heap_series = heap.points;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::FileHeader;
    use crate::tracefile::ThreadInfo;

    fn rec(thread: u32, kind: Kind, time: u64, args: &[u64]) -> Record {
        let mut a = [0u64; 5];
        a[..args.len()].copy_from_slice(args);
        Record { thread, kind, time, args: a }
    }

    fn trace(threads: Vec<Vec<Record>>) -> Trace {
        Trace {
            path: "t".into(),
            header: FileHeader::default(),
            cmdline: vec![],
            threads: threads
                .into_iter()
                .enumerate()
                .map(|(i, records)| ThreadInfo { thread: i as u32 + 1, tid: 0, records })
                .collect(),
            truncated: false,
        }
    }

    #[test]
    fn addresses_reused_across_threads_are_new_blocks() {
        // Thread 1 mallocs A, thread 2 frees it; thread 1 gets A again, reallocs it to B
        // (moving), thread 2 frees B; a free of an unknown address and of null.
        let t = trace(vec![
            vec![
                rec(1, Kind::Malloc, 10, &[100, 0xA]),
                rec(1, Kind::Malloc, 30, &[50, 0xA]),
                rec(1, Kind::Realloc, 45, &[0xA, 300, 0xB, 40]),
            ],
            vec![
                rec(2, Kind::Free, 20, &[0xA]),
                rec(2, Kind::Free, 50, &[0xB]),
                rec(2, Kind::Free, 60, &[0xC]),
                rec(2, Kind::Free, 61, &[0]),
            ],
        ]);
        let h = history(&t);
        assert_eq!(h.blocks.len(), 2);
        assert_eq!(h.record_block[0], vec![0, 1, 1]);
        assert_eq!(h.record_block[1], vec![0, 1, NONE, NONE]);
        assert_eq!(h.blocks[1].size, 300);
        assert_eq!(h.blocks[1].reallocs, 1);
        assert_eq!(h.peak_live, 300);
        assert_eq!(h.live_at_end, 0);
        assert_eq!(h.unknown_frees, 1);
        assert_eq!(h.free_null, 1);
        assert_eq!(h.cross_thread.get(&(1, 2)), Some(&2));
    }

    #[test]
    fn a_free_and_a_malloc_of_one_address_at_one_time_free_first() {
        let t = trace(vec![
            vec![rec(1, Kind::Malloc, 5, &[8, 0xA]), rec(1, Kind::Malloc, 9, &[8, 0xA])],
            vec![rec(2, Kind::Free, 9, &[0xA])],
        ]);
        let h = history(&t);
        assert_eq!(h.overlaps, 0);
        assert_eq!(h.blocks.len(), 2);
        assert_eq!(h.live_at_end, 8);
    }

    #[test]
    fn failed_and_freeing_reallocs() {
        let t = trace(vec![vec![
            rec(1, Kind::Malloc, 1, &[16, 0xA]),
            rec(1, Kind::Realloc, 3, &[0xA, 1 << 50, 0, 2]),
            rec(1, Kind::Realloc, 5, &[0xA, 0, 0, 4]),
        ]]);
        let h = history(&t);
        assert_eq!(h.failed, 1);
        // The failed realloc acted on the block; the freeing one freed it at its end.
        assert_eq!(h.record_block[0], vec![0, 0, 0]);
        assert_eq!(h.blocks[0].free_time, Some(5));
        assert_eq!(h.live_at_end, 0);
    }

    #[test]
    fn heap_counts_accessible_memory() {
        let rw = ((libc::PROT_READ | libc::PROT_WRITE) as u64) << 32;
        let t = trace(vec![vec![
            rec(1, Kind::Sbrk, 1, &[135168, 0x5000]),
            rec(1, Kind::Mmap, 2, &[1 << 26, 0, 0x7000_0000]),
            rec(1, Kind::Mprotect, 3, &[0x7000_0000, 1 << 20, 3, 0]),
            rec(1, Kind::Mmap, 4, &[1 << 20, rw, 0x9000_0000]),
            rec(1, Kind::Munmap, 5, &[0x9000_0000, 1 << 20, 0]),
        ]]);
        let h = history(&t);
        assert_eq!(h.peak_heap, 135168 + (2 << 20));
        assert_eq!(h.heap_series.last().unwrap().1, 135168 + (1 << 20));
    }
}
