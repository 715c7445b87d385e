//! A trace made into a workload a replay can run (what glibc's `trace2wl` does for its
//! `trace_run`): per recorded thread, its program calls in its order, each naming a slot —
//! a place for one block's pointer — and the number of operations that slot must have seen
//! before this one may run. A free recorded on another thread than the block's malloc thus
//! waits for that malloc; a slot is reused once its block is freed, so a replay needs as
//! many as the trace had blocks live at once.
//!
//! The workload is written to a file that replay processes map: running it allocates
//! nothing from the allocator being measured.

use std::collections::BinaryHeap;
use std::path::Path;

use crate::history::{self, History, NONE};
use crate::trace::Kind;
use crate::tracefile::Trace;

/// One call to replay (32 bytes in the file).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Op {
    /// A `trace::Kind` of a program call, with `FAILED` when the trace's call returned null.
    pub kind: u32,
    /// The block's slot, or `NO_SLOT` (a failed allocation, `free(NULL)`, `malloc_trim`).
    pub slot: u32,
    /// size / count / alignment / pad, as the kind has them (see `trace::Kind`).
    pub a: u64,
    pub b: u64,
    /// Operations on `slot` before this one, in the trace's order.
    pub wait: u64,
}

pub const NO_SLOT: u32 = u32::MAX;
/// In `Op::kind`: the recorded call failed (returned null).
pub const FAILED: u32 = 1 << 8;
const MAGIC: u64 = u64::from_le_bytes(*b"PTWLOAD1");

#[derive(Debug, Default)]
pub struct Workload {
    /// Per recorded thread with calls: its number and its operations.
    pub threads: Vec<(u32, Vec<Op>)>,
    pub slots: usize,
    /// Frees of blocks the trace never saw allocated (before recording began): not replayed.
    pub skipped: u64,
    /// Each operation's place in the trace's order, by thread (not written to the file).
    keys: Vec<Vec<Key>>,
}

/// The order in which the trace's live bytes change (see `history`): time, frees first at
/// one time, then thread and record.
type Key = (u64, u8, u32, u32);

fn key(kind: Kind, time: u64, ti: u32, ri: u32) -> Key {
    (time, u8::from(kind != Kind::Free), ti, ri)
}

pub fn build(trace: &Trace, h: &History) -> Workload {
    // Slots: blocks by allocation, each taking the lowest slot freed before it began.
    let mut start: Vec<Key> = vec![(u64::MAX, 0, 0, 0); h.blocks.len()];
    for (ti, t) in trace.threads.iter().enumerate() {
        for (ri, r) in t.records.iter().enumerate() {
            let b = h.record_block[ti][ri];
            if b != NONE && history::is_allocation(r.kind) {
                let k = key(r.kind, r.time, ti as u32, ri as u32);
                let s = &mut start[b as usize];
                *s = (*s).min(k);
            }
        }
    }
    let end: Vec<Option<Key>> = h
        .blocks
        .iter()
        .map(|b| {
            b.freed_by.map(|(ti, ri)| {
                let r = &trace.threads[ti as usize].records[ri as usize];
                key(r.kind, r.time, ti, ri)
            })
        })
        .collect();
    let mut order: Vec<u32> =
        (0..h.blocks.len() as u32).filter(|b| start[*b as usize].0 != u64::MAX).collect();
    order.sort_unstable_by_key(|b| start[*b as usize]);
    let mut slot_of = vec![NO_SLOT; h.blocks.len()];
    let mut free_slots: BinaryHeap<std::cmp::Reverse<u32>> = BinaryHeap::new();
    let mut busy: BinaryHeap<std::cmp::Reverse<(Key, u32)>> = BinaryHeap::new();
    let mut slots = 0u32;
    for b in order {
        let s = start[b as usize];
        while let Some(std::cmp::Reverse((e, slot))) = busy.peek().copied() {
            if e >= s {
                break;
            }
            busy.pop();
            free_slots.push(std::cmp::Reverse(slot));
        }
        let slot = free_slots.pop().map(|r| r.0).unwrap_or_else(|| {
            slots += 1;
            slots - 1
        });
        slot_of[b as usize] = slot;
        if let Some(e) = end[b as usize] {
            busy.push(std::cmp::Reverse((e, slot)));
        }
    }

    // Operations, and each slot's operations in order for the waits.
    let mut w = Workload { slots: slots as usize, ..Default::default() };
    let mut on_slot: Vec<(u32, Key, usize, usize)> = Vec::new();
    for (ti, t) in trace.threads.iter().enumerate() {
        let mut ops = Vec::new();
        let mut keys = Vec::new();
        for (ri, r) in t.records.iter().enumerate() {
            if r.kind.is_kernel() || r.kind == Kind::Rss {
                continue;
            }
            let b = h.record_block[ti][ri];
            let a = r.args;
            let (x, y) = match r.kind {
                Kind::Malloc | Kind::Valloc | Kind::Pvalloc | Kind::MallocTrim => (a[0], 0),
                Kind::Calloc => (a[0], a[1]),
                Kind::Realloc => (a[1], 0),
                Kind::Reallocarray => (a[1], a[2]),
                Kind::Memalign | Kind::AlignedAlloc | Kind::PosixMemalign => (a[0], a[1]),
                _ => (0, 0),
            };
            let slot = if b == NONE { NO_SLOT } else { slot_of[b as usize] };
            if slot == NO_SLOT && r.kind == Kind::Free && a[0] != 0 {
                w.skipped += 1;
                continue;
            }
            if slot == NO_SLOT && history::realloc_source(r) != 0 {
                // A realloc of a block from before the recording: nothing to resize.
                w.skipped += 1;
                continue;
            }
            let k = key(r.kind, r.time, ti as u32, ri as u32);
            if slot != NO_SLOT {
                on_slot.push((slot, k, w.threads.len(), ops.len()));
            }
            let failed = history::is_allocation(r.kind) && history::result(r) == 0;
            let kind = r.kind as u32 | if failed { FAILED } else { 0 };
            ops.push(Op { kind, slot, a: x, b: y, wait: 0 });
            keys.push(k);
        }
        if !ops.is_empty() {
            w.threads.push((t.thread, ops));
            w.keys.push(keys);
        }
    }
    on_slot.sort_unstable_by_key(|(slot, k, _, _)| (*slot, *k));
    let mut seen = vec![0u64; w.slots];
    for (slot, _, t, i) in on_slot {
        w.threads[t].1[i].wait = seen[slot as usize];
        seen[slot as usize] += 1;
    }
    w
}

/// All threads' operations as one, in the trace's order: for a replay on one thread, whose
/// live bytes then go up and down exactly as the trace's.
pub fn serialize(w: &Workload) -> Workload {
    let mut all: Vec<(Key, Op)> = Vec::new();
    for ((_, ops), keys) in w.threads.iter().zip(&w.keys) {
        all.extend(keys.iter().copied().zip(ops.iter().copied()));
    }
    all.sort_unstable_by_key(|(k, _)| *k);
    let (keys, ops): (Vec<Key>, Vec<Op>) = all.into_iter().unzip();
    Workload { threads: vec![(1, ops)], slots: w.slots, skipped: w.skipped, keys: vec![keys] }
}

/// Write the workload for replay processes: a header, the threads' table, the operations.
pub fn write(w: &Workload, path: &Path) -> Result<(), String> {
    let mut out: Vec<u8> = Vec::new();
    for v in [MAGIC, w.threads.len() as u64, w.slots as u64, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut at = 0u64;
    for (thread, ops) in &w.threads {
        for v in [*thread as u64, at, ops.len() as u64, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        at += ops.len() as u64;
    }
    for (_, ops) in &w.threads {
        for op in ops {
            out.extend_from_slice(&op.kind.to_le_bytes());
            out.extend_from_slice(&op.slot.to_le_bytes());
            for v in [op.a, op.b, op.wait] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    std::fs::write(path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A workload file mapped: its threads' operations, borrowed from the mapping.
pub struct Mapped {
    map: memmap2::Mmap,
    pub slots: usize,
    /// (thread number, first operation, count)
    pub threads: Vec<(u32, usize, usize)>,
    ops_at: usize,
}

impl Mapped {
    pub fn open(path: &Path) -> Result<Mapped, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: a private read-only mapping of a file this command wrote and nobody changes.
        let map =
            unsafe { memmap2::Mmap::map(&f) }.map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(map.get(i * 8..i * 8 + 8)?.try_into().ok()?))
        };
        let bad = || format!("{} is not a replay workload", path.display());
        if word(0) != Some(MAGIC) {
            return Err(bad());
        }
        let nthreads = word(1).ok_or_else(bad)? as usize;
        let slots = word(2).ok_or_else(bad)? as usize;
        let mut threads = Vec::new();
        for t in 0..nthreads {
            let base = 4 + t * 4;
            threads.push((
                word(base).ok_or_else(bad)? as u32,
                word(base + 1).ok_or_else(bad)? as usize,
                word(base + 2).ok_or_else(bad)? as usize,
            ));
        }
        let ops_at = (4 + nthreads * 4) * 8;
        let total: usize = threads.iter().map(|t| t.2).sum();
        if map.len() != ops_at + total * 32 {
            return Err(bad());
        }
        Ok(Mapped { map, slots, threads, ops_at })
    }

    /// Thread `t`'s operations.
    pub fn ops(&self, t: usize) -> &[Op] {
        let (_, first, n) = self.threads[t];
        let bytes = &self.map[self.ops_at + first * 32..self.ops_at + (first + n) * 32];
        // SAFETY: Op is repr(C), 32 bytes of plain integers, any bit pattern valid; the map
        // is page-aligned and ops_at a multiple of 32, so each Op is aligned.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const Op, n) }
    }

    /// Give back the pages of thread `t`'s operations before `upto` (they are read once):
    /// the replay's resident memory is then the allocator's, not the workload's.
    pub fn release(&self, t: usize, upto: usize) {
        let (_, first, _) = self.threads[t];
        let start = self.ops_at + first * 32;
        let page = 4096;
        let from = start.div_ceil(page) * page;
        let to = (start + upto * 32) / page * page;
        if to > from {
            // SAFETY: a range inside our private read-only file mapping; its pages are read
            // again from the file if touched (they are not).
            unsafe {
                libc::madvise(
                    self.map.as_ptr().add(from) as *mut libc::c_void,
                    to - from,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }
}

const _: () = assert!(core::mem::size_of::<Op>() == 32);
