use super::*;
use crate::kptr::KPtr;
use crate::mm::{Vma, STACK_GUARD_GAP, VM_GROWSDOWN, VM_READ};
use ptalloc_testkit::Rng;

const PAGE: usize = 4096;

fn new_vma(start: usize, end: usize, flags: u64) -> VmaPtr {
    // SAFETY: Vma is all Cells; a zeroed one is an empty, unlinked VMA.
    let b: Box<Vma> = Box::new(unsafe { core::mem::zeroed() });
    // SAFETY: a leaked box, valid for the rest of the test.
    let v: VmaPtr = unsafe { KPtr::from_addr(Box::into_raw(b) as usize) };
    v.vm_start.set(start);
    v.vm_end.set(end);
    v.vm_flags.set(flags);
    v
}

/// Brute force: the highest (or lowest) free `len` bytes in [low, high).
fn brute(list: &[(usize, usize, u64)], len: usize, low: usize, high: usize, topdown: bool) -> Option<usize> {
    let mut gaps = Vec::new();
    let mut prev_end = 0;
    for &(s, e, f) in list {
        let start_gap = if f & VM_GROWSDOWN != 0 { s.saturating_sub(STACK_GUARD_GAP) } else { s };
        gaps.push((prev_end, start_gap));
        prev_end = e;
    }
    gaps.push((prev_end, usize::MAX));
    let fits = |(a, b): (usize, usize)| {
        let lo = a.max(low);
        let hi = b.min(high);
        (hi > lo && hi - lo >= len).then(|| if topdown { hi - len } else { lo })
    };
    if topdown {
        gaps.iter().rev().find_map(|&g| fits(g))
    } else {
        gaps.iter().find_map(|&g| fits(g))
    }
}

#[test]
fn random_inserts_erases_and_searches_match_a_sorted_list() {
    let mut rng = Rng::new(3);
    let mut tree = VmaTree::new();
    let mut model: Vec<(usize, usize, u64)> = Vec::new();
    let mut nodes: Vec<VmaPtr> = Vec::new();
    for step in 0..6000 {
        let slot = rng.below(2000) as usize * 4 * PAGE;
        if rng.chance(60) {
            let len = (1 + rng.below(3) as usize) * PAGE;
            let (s, e) = (slot, slot + len);
            if model.iter().all(|&(a, b, _)| e <= a || s >= b) {
                let flags = if rng.chance(5) { VM_GROWSDOWN | VM_READ } else { VM_READ };
                let v = new_vma(s, e, flags);
                tree.insert(v);
                nodes.push(v);
                model.push((s, e, flags));
                model.sort();
            }
        } else if !nodes.is_empty() {
            let i = rng.below(nodes.len() as u64) as usize;
            let v = nodes.swap_remove(i);
            if rng.chance(30) {
                // Shrink in place instead of removing.
                if v.end() - v.start() > PAGE {
                    let pos = model.iter().position(|m| m.0 == v.start()).unwrap();
                    v.vm_end.set(v.end() - PAGE);
                    tree.adjusted(v);
                    model[pos].1 = v.end();
                }
                nodes.push(v);
            } else {
                tree.erase(v);
                model.retain(|m| m.0 != v.start());
            }
        }
        assert_eq!(tree.check().unwrap(), model.len(), "step {step}");
        for _ in 0..4 {
            let addr = rng.below(2000 * 4 * PAGE as u64 + PAGE as u64) as usize;
            let want = model.iter().find(|m| m.1 > addr).map(|m| m.0);
            assert_eq!(tree.find(addr).map(|v| v.start()), want);
            let len = (1 + rng.below(12) as usize) * PAGE;
            let low = rng.below(1000) as usize * PAGE;
            let high = low + rng.below(9000) as usize * PAGE;
            assert_eq!(
                tree.unmapped_area_topdown(len, low, high),
                brute(&model, len, low, high, true),
                "topdown len {len:#x} in [{low:#x}, {high:#x})"
            );
            assert_eq!(
                tree.unmapped_area(len, low, high),
                brute(&model, len, low, high, false),
                "bottom-up len {len:#x} in [{low:#x}, {high:#x})"
            );
        }
    }
}
