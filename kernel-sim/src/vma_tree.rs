//! The ordered set of an address space's VMAs: an AVL tree threaded with a doubly linked
//! list in address order, augmented with the largest free gap in each subtree.
//!
//! The augmentation is Linux's `rb_subtree_gap` from before the maple tree: every VMA
//! knows the gap below it (from the end of the previous VMA, guard gaps included), and every
//! node the largest such gap in its subtree, so `get_unmapped_area` finds a hole in
//! O(log n) without walking the list. The nodes are the VMAs themselves, so linking one
//! never allocates.

use crate::check::{fail, CheckError};
use crate::mm::VmaPtr;

#[derive(Default)]
pub struct VmaTree {
    root: Option<VmaPtr>,
    first: Option<VmaPtr>,
    last: Option<VmaPtr>,
    len: usize,
}

fn height(n: Option<VmaPtr>) -> u32 {
    n.map_or(0, |v| v.rb_height.get())
}

fn subtree_gap(n: Option<VmaPtr>) -> usize {
    n.map_or(0, |v| v.rb_subtree_gap.get())
}

/// The free gap just below `v`.
fn own_gap(v: VmaPtr) -> usize {
    let prev_end = v.prev().map_or(0, |p| p.end_gap());
    v.start_gap().saturating_sub(prev_end)
}

fn update(v: VmaPtr) {
    let (l, r) = (v.rb_left.get(), v.rb_right.get());
    v.rb_height.set(1 + height(l).max(height(r)));
    v.rb_subtree_gap.set(own_gap(v).max(subtree_gap(l)).max(subtree_gap(r)));
}

fn same(a: Option<VmaPtr>, b: VmaPtr) -> bool {
    a == Some(b)
}

impl VmaTree {
    pub const fn new() -> VmaTree {
        VmaTree { root: None, first: None, last: None, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn first(&self) -> Option<VmaPtr> {
        self.first
    }

    pub fn last(&self) -> Option<VmaPtr> {
        self.last
    }

    /// The end of the highest VMA (`highest_vm_end`).
    pub fn highest_vm_end(&self) -> usize {
        self.last.map_or(0, |v| v.end_gap())
    }

    /// The first VMA with `vm_end > addr`.
    pub fn find(&self, addr: usize) -> Option<VmaPtr> {
        let mut cur = self.root;
        let mut best = None;
        while let Some(v) = cur {
            if v.end() > addr {
                best = Some(v);
                if v.start() <= addr {
                    break;
                }
                cur = v.rb_left.get();
            } else {
                cur = v.rb_right.get();
            }
        }
        best
    }

    fn replace_child(&mut self, parent: Option<VmaPtr>, old: VmaPtr, new: Option<VmaPtr>) {
        match parent {
            None => self.root = new,
            Some(p) => {
                if same(p.rb_left.get(), old) {
                    p.rb_left.set(new);
                } else {
                    p.rb_right.set(new);
                }
            }
        }
    }

    fn rotate_left(&mut self, x: VmaPtr) -> VmaPtr {
        let Some(y) = x.rb_right.get() else {
            crate::util::bug("rotate_left without right child", x.addr(), 0)
        };
        let b = y.rb_left.get();
        x.rb_right.set(b);
        if let Some(b) = b {
            b.rb_parent.set(Some(x));
        }
        let p = x.rb_parent.get();
        y.rb_parent.set(p);
        self.replace_child(p, x, Some(y));
        y.rb_left.set(Some(x));
        x.rb_parent.set(Some(y));
        update(x);
        update(y);
        y
    }

    fn rotate_right(&mut self, x: VmaPtr) -> VmaPtr {
        let Some(y) = x.rb_left.get() else {
            crate::util::bug("rotate_right without left child", x.addr(), 0)
        };
        let b = y.rb_right.get();
        x.rb_left.set(b);
        if let Some(b) = b {
            b.rb_parent.set(Some(x));
        }
        let p = x.rb_parent.get();
        y.rb_parent.set(p);
        self.replace_child(p, x, Some(y));
        y.rb_right.set(Some(x));
        x.rb_parent.set(Some(y));
        update(x);
        update(y);
        y
    }

    /// Recompute heights and gaps from `n` to the root, rotating where a node is out of
    /// balance.
    fn rebalance_from(&mut self, mut n: Option<VmaPtr>) {
        while let Some(v) = n {
            update(v);
            let (l, r) = (v.rb_left.get(), v.rb_right.get());
            let top = if height(l) > height(r) + 1 {
                let l = l.unwrap_or_else(|| crate::util::bug("AVL: tall side is empty", v.addr(), 0));
                if height(l.rb_left.get()) < height(l.rb_right.get()) {
                    self.rotate_left(l);
                }
                self.rotate_right(v)
            } else if height(r) > height(l) + 1 {
                let r = r.unwrap_or_else(|| crate::util::bug("AVL: tall side is empty", v.addr(), 0));
                if height(r.rb_right.get()) < height(r.rb_left.get()) {
                    self.rotate_right(r);
                }
                self.rotate_left(v)
            } else {
                v
            };
            n = top.rb_parent.get();
        }
    }

    /// Recompute gaps from `n` to the root after the gap below `n` changed.
    fn propagate(&mut self, mut n: Option<VmaPtr>) {
        while let Some(v) = n {
            update(v);
            n = v.rb_parent.get();
        }
    }

    /// Link a VMA that overlaps none in the tree.
    pub fn insert(&mut self, v: VmaPtr) {
        let mut parent = None;
        let mut pred = None;
        let mut go_left = false;
        let mut cur = self.root;
        while let Some(c) = cur {
            parent = Some(c);
            if v.start() < c.start() {
                go_left = true;
                cur = c.rb_left.get();
            } else {
                go_left = false;
                pred = Some(c);
                cur = c.rb_right.get();
            }
        }
        v.rb_left.set(None);
        v.rb_right.set(None);
        v.rb_parent.set(parent);
        v.rb_height.set(1);
        match parent {
            None => self.root = Some(v),
            Some(p) if go_left => p.rb_left.set(Some(v)),
            Some(p) => p.rb_right.set(Some(v)),
        }
        let next = match pred {
            None => self.first,
            Some(p) => p.next(),
        };
        v.vm_prev.set(pred);
        v.vm_next.set(next);
        match pred {
            None => self.first = Some(v),
            Some(p) => p.vm_next.set(Some(v)),
        }
        match next {
            None => self.last = Some(v),
            Some(n) => n.vm_prev.set(Some(v)),
        }
        self.len += 1;
        self.rebalance_from(Some(v));
        self.propagate(next);
    }

    /// Unlink a VMA.
    pub fn erase(&mut self, z: VmaPtr) {
        let (prev, next) = (z.prev(), z.next());
        match prev {
            None => self.first = next,
            Some(p) => p.vm_next.set(next),
        }
        match next {
            None => self.last = prev,
            Some(n) => n.vm_prev.set(prev),
        }
        let (l, r, p) = (z.rb_left.get(), z.rb_right.get(), z.rb_parent.get());
        let fix_from = match (l, r) {
            (Some(l), Some(r)) => {
                // The successor is the leftmost node of the right subtree: the list's next.
                let y = next.unwrap_or_else(|| crate::util::bug("AVL: no successor", z.addr(), 0));
                let fix = if y == r {
                    Some(y)
                } else {
                    let yp =
                        y.rb_parent.get().unwrap_or_else(|| crate::util::bug("AVL: orphan", y.addr(), 0));
                    let yr = y.rb_right.get();
                    yp.rb_left.set(yr);
                    if let Some(yr) = yr {
                        yr.rb_parent.set(Some(yp));
                    }
                    y.rb_right.set(Some(r));
                    r.rb_parent.set(Some(y));
                    Some(yp)
                };
                y.rb_left.set(Some(l));
                l.rb_parent.set(Some(y));
                y.rb_parent.set(p);
                self.replace_child(p, z, Some(y));
                fix
            }
            (c, None) | (None, c) => {
                if let Some(c) = c {
                    c.rb_parent.set(p);
                }
                self.replace_child(p, z, c);
                p
            }
        };
        z.rb_left.set(None);
        z.rb_right.set(None);
        z.rb_parent.set(None);
        z.vm_next.set(None);
        z.vm_prev.set(None);
        self.len -= 1;
        self.rebalance_from(fix_from);
        self.propagate(next);
    }

    /// `v`'s start or end moved without passing a neighbour: refresh the gaps it affects.
    pub fn adjusted(&mut self, v: VmaPtr) {
        self.propagate(Some(v));
        self.propagate(v.next());
    }

    /// The highest `addr` with `[addr, addr + len)` free, `addr >= low` and
    /// `addr + len <= high` (Linux's `unmapped_area_topdown`).
    pub fn unmapped_area_topdown(&self, len: usize, low: usize, high: usize) -> Option<usize> {
        if len == 0 || high < len {
            return None;
        }
        let high_start = high - len;
        if low > high_start {
            return None;
        }
        let low_end = low + len;
        // The gap above the last VMA precedes no node.
        if self.highest_vm_end() <= high_start {
            return Some(high - len);
        }
        let mut v = self.root?;
        if v.rb_subtree_gap.get() < len {
            return None;
        }
        let prev_end = |v: VmaPtr| v.prev().map_or(0, |p| p.end_gap());
        'descend: loop {
            let mut gap_start = prev_end(v);
            if gap_start <= high_start {
                if let Some(r) = v.rb_right.get() {
                    if r.rb_subtree_gap.get() >= len {
                        v = r;
                        continue 'descend;
                    }
                }
            }
            'check: loop {
                // Every gap still to visit ends below this VMA's start. (Linux tests the
                // guard-adjusted start here, which gives up too early when a stack's guard
                // gap reaches over a lower VMA.)
                if v.start() < low_end {
                    return None;
                }
                let gap_end = v.start_gap();
                if gap_end >= low_end
                    && gap_start <= high_start
                    && gap_end > gap_start
                    && gap_end - gap_start >= len
                {
                    return Some(gap_end.min(high) - len);
                }
                if let Some(l) = v.rb_left.get() {
                    if l.rb_subtree_gap.get() >= len {
                        v = l;
                        continue 'descend;
                    }
                }
                loop {
                    let child = v;
                    v = v.rb_parent.get()?;
                    if same(v.rb_right.get(), child) {
                        gap_start = prev_end(v);
                        continue 'check;
                    }
                }
            }
        }
    }

    /// The lowest `addr` with `[addr, addr + len)` free, `addr >= low` and
    /// `addr + len <= high` (Linux's `unmapped_area`).
    pub fn unmapped_area(&self, len: usize, low: usize, high: usize) -> Option<usize> {
        if len == 0 || high < len {
            return None;
        }
        let high_start = high - len;
        if low > high_start {
            return None;
        }
        let low_end = low + len;
        let prev_end = |v: VmaPtr| v.prev().map_or(0, |p| p.end_gap());
        let found = |gap_start: usize| Some(gap_start.max(low));
        if let Some(mut v) = self.root.filter(|r| r.rb_subtree_gap.get() >= len) {
            'descend: loop {
                let mut gap_end = v.start_gap();
                if v.start() >= low_end {
                    if let Some(l) = v.rb_left.get() {
                        if l.rb_subtree_gap.get() >= len {
                            v = l;
                            continue 'descend;
                        }
                    }
                }
                let mut gap_start = prev_end(v);
                'check: loop {
                    if gap_start > high_start {
                        return None;
                    }
                    if gap_end >= low_end && gap_end > gap_start && gap_end - gap_start >= len {
                        return found(gap_start);
                    }
                    if let Some(r) = v.rb_right.get() {
                        if r.rb_subtree_gap.get() >= len {
                            v = r;
                            continue 'descend;
                        }
                    }
                    loop {
                        let child = v;
                        match v.rb_parent.get() {
                            None => break 'descend,
                            Some(p) => v = p,
                        }
                        if same(v.rb_left.get(), child) {
                            gap_start = prev_end(v);
                            gap_end = v.start_gap();
                            continue 'check;
                        }
                    }
                }
            }
        }
        let gap_start = self.highest_vm_end();
        if gap_start > high_start {
            return None;
        }
        found(gap_start)
    }

    /// Verify order, links, heights, balance and gaps; returns the number of VMAs.
    pub fn check(&self) -> Result<usize, CheckError> {
        fn walk(v: Option<VmaPtr>, parent: Option<VmaPtr>, out: &mut usize) -> Result<u32, CheckError> {
            let Some(v) = v else { return Ok(0) };
            if v.rb_parent.get() != parent {
                return fail("vma tree: parent link wrong", v.start(), 0);
            }
            let hl = walk(v.rb_left.get(), Some(v), out)?;
            *out += 1;
            let hr = walk(v.rb_right.get(), Some(v), out)?;
            if hl.abs_diff(hr) > 1 {
                return fail("vma tree: out of balance", v.start(), hl.abs_diff(hr) as usize);
            }
            if v.rb_height.get() != 1 + hl.max(hr) {
                return fail("vma tree: height wrong", v.start(), v.rb_height.get() as usize);
            }
            let want = own_gap(v).max(subtree_gap(v.rb_left.get())).max(subtree_gap(v.rb_right.get()));
            if v.rb_subtree_gap.get() != want {
                return fail("vma tree: subtree gap wrong", v.start(), v.rb_subtree_gap.get());
            }
            if let Some(l) = v.rb_left.get() {
                if l.start() >= v.start() {
                    return fail("vma tree: left child not below", v.start(), l.start());
                }
            }
            if let Some(r) = v.rb_right.get() {
                if r.start() <= v.start() {
                    return fail("vma tree: right child not above", v.start(), r.start());
                }
            }
            Ok(1 + hl.max(hr))
        }
        let mut in_tree = 0;
        walk(self.root, None, &mut in_tree)?;
        let mut n = 0;
        let mut prev: Option<VmaPtr> = None;
        let mut cur = self.first;
        while let Some(v) = cur {
            if v.prev() != prev {
                return fail("vma list: back link wrong", v.start(), 0);
            }
            if v.start() >= v.end() {
                return fail("vma: empty or inverted", v.start(), v.end());
            }
            if let Some(p) = prev {
                if p.end() > v.start() {
                    return fail("vma list: overlap or disorder", p.end(), v.start());
                }
            }
            if self.find(v.start()) != Some(v) {
                return fail("vma tree: find() misses a listed VMA", v.start(), 0);
            }
            n += 1;
            if n > in_tree {
                return fail("vma list longer than the tree", n, in_tree);
            }
            prev = Some(v);
            cur = v.next();
        }
        if prev != self.last || n != in_tree || n != self.len {
            return fail("vma list, tree and count disagree", n, self.len);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
