//! The VMA layer on its own: physical memory, slab caches, commit accounting and an address
//! space, but no machine — no reserved user range, no fault handler, no host mappings.

use super::*;
use crate::mm::{VM_EXEC, VM_MAYEXEC, VM_MAYREAD, VM_MAYWRITE, VM_READ, VM_STACK_FLAGS};
use crate::page::PAGE_SIZE;

const PAGE: usize = PAGE_SIZE;
/// Where the test's mappings go. Nothing ever touches these addresses.
const BASE: usize = 1 << 30;
const RW: VmFlags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;

struct Parts {
    phys: PhysMem,
    slab: Slab,
    sys: VmSysctl,
    mm: Mm,
    next_ino: u64,
    sb: crate::shmem::SuperBlock,
}

impl Parts {
    fn new() -> Parts {
        let mut phys = PhysMem::boot(16 << 20, None, 0).expect("boot");
        let sys = VmSysctl::new(phys.nr_free_pages());
        let mut mm = Mm { task_size: 2 * BASE, mmap_min_addr: BASE, ..Mm::default() };
        mm.pgd = crate::page_table::pgd_alloc(&mut phys, &mut mm.pgtables_bytes).expect("pgd");
        Parts { phys, slab: Slab::kernel_caches(), sys, mm, next_ino: 0, sb: Default::default() }
    }

    /// The VMA layer's arguments. The host range is empty: nothing here maps a page, and an
    /// unmap of a range without pages leaves the host alone.
    fn split(&mut self) -> (&mut Mm, VmaEnv<'_>) {
        let env = VmaEnv {
            phys: &mut self.phys,
            slab: &mut self.slab,
            sys: &mut self.sys,
            host: Host::empty(),
            next_ino: &mut self.next_ino,
            sb: &mut self.sb,
        };
        (&mut self.mm, env)
    }

    /// Every invariant the parts keep: VMA tree, counters, page tables, commit charge,
    /// slab caches, buddy free lists.
    fn check(&self) {
        crate::check::check_mm(&self.mm, &self.phys, &self.sys, BASE, &[]).unwrap();
        self.slab.check(&self.phys).unwrap();
        self.phys.check_buddy().unwrap();
    }

    fn vmas(&self) -> Vec<(usize, usize)> {
        self.mm.iter().map(|v| (v.start(), v.end())).collect()
    }

    fn objects(&self, cache: usize) -> usize {
        self.slab.caches()[cache].active_objs
    }

    /// `mmap_region` as `do_mmap` calls it for a private anonymous mapping.
    ///
    /// # Safety
    /// The free rule (see `kptr`) for the VMAs the mapping replaces or merges away (no user
    /// memory is involved: these parts have no host range).
    unsafe fn map(&mut self, addr: usize, pages: usize, flags: VmFlags) {
        let (mm, mut env) = self.split();
        // SAFETY: the caller's promise; nothing maps a page here.
        let got = unsafe { mmap_region(mm, &mut env, addr, pages * PAGE, flags, addr >> PAGE_SHIFT, None) };
        assert_eq!(got, Ok(addr));
    }

    /// `munmap` of `pages` pages at `addr`.
    ///
    /// # Safety
    /// The free rule (see `kptr`) for the VMAs that overlap the range.
    unsafe fn unmap(&mut self, addr: usize, pages: usize) {
        let (mm, mut env) = self.split();
        // SAFETY: the caller's promise; nothing maps a page here.
        unsafe { do_munmap(mm, &mut env, addr, pages * PAGE) }.unwrap();
    }
}

#[test]
fn neighbouring_private_mappings_merge_and_an_unmap_splits_them() {
    let mut p = Parts::new();
    // SAFETY: the test holds no KPtr across a map or an unmap.
    unsafe {
        p.map(BASE + 4 * PAGE, 4, RW);
        p.map(BASE, 4, RW);
        p.map(BASE + 8 * PAGE, 4, RW);
    }
    assert_eq!(p.vmas(), [(BASE, BASE + 12 * PAGE)]);
    assert_eq!((p.mm.total_vm, p.mm.data_vm, p.sys.committed_as), (12, 12, 12));
    assert_eq!(p.objects(CACHE_VMA), 1);
    p.check();

    // SAFETY: as above.
    unsafe { p.unmap(BASE + 5 * PAGE, 2) };
    assert_eq!(p.vmas(), [(BASE, BASE + 5 * PAGE), (BASE + 7 * PAGE, BASE + 12 * PAGE)]);
    assert_eq!((p.mm.total_vm, p.mm.data_vm, p.sys.committed_as), (10, 10, 10));
    assert_eq!(p.objects(CACHE_VMA), 2);
    p.check();

    // Both halves kept the page offsets of their addresses, so refilling the hole merges
    // all three again.
    // SAFETY: as above.
    unsafe { p.map(BASE + 5 * PAGE, 2, RW) };
    assert_eq!(p.vmas(), [(BASE, BASE + 12 * PAGE)]);
    assert_eq!(p.objects(CACHE_VMA), 1);
    p.check();

    // SAFETY: as above.
    unsafe { p.unmap(BASE, 12) };
    assert!(p.vmas().is_empty());
    assert_eq!((p.mm.total_vm, p.sys.committed_as, p.objects(CACHE_VMA)), (0, 0, 0));
    p.check();
}

#[test]
fn written_neighbours_merge_only_if_they_share_an_anon_vma() {
    let mut p = Parts::new();
    // Two pairs of neighbours that differ only in VM_EXEC, so each VMA stands alone.
    for base in [BASE, BASE + 16 * PAGE] {
        // SAFETY: the test holds no KPtr yet.
        unsafe {
            p.map(base, 2, RW);
            p.map(base + 2 * PAGE, 2, RW | VM_EXEC);
        }
    }
    assert_eq!(p.mm.map_count(), 4);
    let v: Vec<VmaPtr> = p.mm.iter().collect();
    let (mm, mut env) = p.split();
    // First pair: the second VMA's first anonymous page borrows its neighbour's anon_vma.
    anon_vma_prepare(mm, &mut env, v[0]).unwrap();
    anon_vma_prepare(mm, &mut env, v[1]).unwrap();
    assert!(v[0].anon().is_some() && v[0].anon() == v[1].anon());
    // Second pair: anon_vmas of their own, as if each was written before they were neighbours.
    for &w in &v[2..] {
        let av = anon_vma_alloc(mm, &mut env).unwrap();
        // SAFETY: `w` has no anon_vma yet, so no reference is dropped.
        unsafe { set_anon_vma(&mut env, w, Some(av)) };
    }
    // mprotect the second VMA of each pair to the first one's flags.
    for w in [v[1], v[3]] {
        let flags = w.prev().map(|prev| prev.flags()).unwrap();
        // SAFETY: `w` and the VMA after it may be merged away: neither is used again (only
        // `v[0]`, which may absorb `v[1]`, is).
        let got = unsafe { vma_modify(mm, &mut env, w.prev(), w, w.start(), w.end(), flags) }.unwrap();
        got.vm_flags.set(flags);
    }
    assert_eq!(
        p.vmas(),
        [(BASE, BASE + 4 * PAGE), (BASE + 16 * PAGE, BASE + 18 * PAGE), (BASE + 18 * PAGE, BASE + 20 * PAGE)]
    );
    assert_eq!(v[0].anon().map(|a| a.refcount.get()), Some(1));
    assert_eq!(p.objects(CACHE_ANON_VMA), 3);
    p.check();

    // SAFETY: `v` is not used again.
    unsafe { p.unmap(BASE, 32) };
    assert_eq!((p.objects(CACHE_VMA), p.objects(CACHE_ANON_VMA)), (0, 0));
    p.check();
}

#[test]
fn split_vma_stops_at_max_map_count_and_the_parts_keep_their_offsets() {
    let mut p = Parts::new();
    // SAFETY: the test holds no KPtr yet.
    unsafe { p.map(BASE, 4, RW) };
    let vma = p.mm.find_vma(BASE).unwrap();
    p.sys.max_map_count = 1;
    let (mm, mut env) = p.split();
    assert_eq!(split_vma(mm, &mut env, vma, BASE + PAGE, false).map(|_| ()), Err(Errno::ENOMEM));
    assert_eq!(mm.map_count(), 1);
    // The unchecked split is what munmap uses once it has made room.
    let upper = __split_vma(mm, &mut env, vma, BASE + PAGE, false).unwrap();
    assert_eq!((upper.start(), upper.pgoff()), (BASE + PAGE, (BASE + PAGE) >> PAGE_SHIFT));
    assert_eq!(p.vmas(), [(BASE, BASE + PAGE), (BASE + PAGE, BASE + 4 * PAGE)]);
    p.check();
}

#[test]
fn a_stack_grows_down_to_a_fault_but_not_into_another_mappings_guard_gap() {
    let mut p = Parts::new();
    let top = BASE + 1024 * PAGE;
    // SAFETY: the test holds no KPtr yet.
    unsafe {
        p.map(BASE, 1, RW);
        p.map(top - 4 * PAGE, 4, VM_STACK_FLAGS);
    }
    let stack = p.mm.find_vma(top - PAGE).unwrap();
    let (mm, mut env) = p.split();
    expand_downwards(mm, &mut env, stack, top - 6 * PAGE + 123).unwrap();
    assert_eq!(stack.start(), top - 6 * PAGE);
    assert!(stack.anon().is_some());
    assert_eq!((p.mm.stack_vm, p.sys.committed_as), (6, 7));
    p.check();

    // Within 256 pages of the mapping below: refused, and nothing changes.
    let (mm, mut env) = p.split();
    assert_eq!(expand_downwards(mm, &mut env, stack, BASE + 100 * PAGE), Err(()));
    assert_eq!((stack.start(), p.mm.stack_vm, p.sys.committed_as), (top - 6 * PAGE, 6, 7));
    p.check();
}
