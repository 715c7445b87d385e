//! TLB flush counts (`/proc/vmstat`'s `nr_tlb_local_flush_one` and `_all`) for scripted
//! sequences, each expected count derived from the path Linux 6.18 takes on x86-64 for a
//! single-threaded process (one CPU runs its mm, so every flush is local):
//! `flush_tlb_mm_range` flushes one page at a time (counting each) up to
//! `tlb_single_page_flush_ceiling` = 33 pages, and the whole TLB (counting one) beyond.
//! The mappings are at a 1 GiB-aligned address with no other VMA within 1 GiB of them, so
//! which page tables `free_pgtables` frees, and so the gather's range, is known.

use kernel_sim::{Config, Machine};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const FIXED: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;

fn counts(m: &Machine) -> (u64, u64) {
    let mut v = String::new();
    m.write_vmstat(&mut v).unwrap();
    let f = |name: &str| {
        v.lines().find_map(|l| l.strip_prefix(name).map(|r| r.trim().parse::<u64>().unwrap())).unwrap()
    };
    (f("nr_tlb_local_flush_one "), f("nr_tlb_local_flush_all "))
}

/// The change in (one, all) that `f` makes.
fn delta(m: &Machine, f: impl FnOnce()) -> (u64, u64) {
    let (a, b) = counts(m);
    f();
    let (c, d) = counts(m);
    (c - a, d - b)
}

/// # Safety
/// `addr` is a writable page of this process on its machine that nothing else uses.
unsafe fn touch(addr: usize, pages: usize) {
    for i in 0..pages {
        // SAFETY: the caller's promise.
        unsafe { ((addr + i * PAGE) as *mut u64).write_volatile(i as u64 + 1) };
    }
}

#[test]
fn flush_counts_follow_linux_paths() {
    let m = Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap();
    let x = m.user_base() + (8 << 30);
    let map = |addr: usize, pages: usize| {
        // SAFETY: MAP_FIXED_NOREPLACE replaces nothing; the range is this test's.
        unsafe { m.mmap(addr, pages * PAGE, RW, FIXED, -1, 0) }.unwrap();
    };
    // Faults on empty PTEs flush nothing (nothing was cached).
    map(x, 8);
    // SAFETY: the mapping just made.
    assert_eq!(delta(&m, || unsafe { touch(x, 8) }), (0, 0));
    // munmap of 8 touched pages: unmap_region's gather holds the 8 PTEs cleared, and the
    // PTE table and the PMD table freed under them, which free_pgtables adds at the starts
    // of what they mapped (x itself: 1 GiB aligned) — 8 pages, flushed one by one.
    // SAFETY: nothing refers into the mapping.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 8 * PAGE) }.unwrap()), (8, 0));
    // The same 8 pages, 16 pages above the PMD boundary: the freed PTE table adds x, so the
    // range is [x, x + 24 pages): 24 single flushes.
    map(x + 16 * PAGE, 8);
    // SAFETY: as above.
    unsafe { touch(x + 16 * PAGE, 8) };
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x + 16 * PAGE, 8 * PAGE) }.unwrap()), (24, 0));
    // 64 pages: beyond the ceiling, one full flush.
    map(x, 64);
    // SAFETY: as above.
    unsafe { touch(x, 64) };
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 64 * PAGE) }.unwrap()), (0, 1));
    // Untouched pages: no PTE cleared and no table freed (none was made): no flush
    // (tlb_flush_mmu_tlbonly returns early).
    map(x, 8);
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 8 * PAGE) }.unwrap()), (0, 0));
    // mprotect: change_protection gathers each PTE whose change pte_needs_flush — write
    // permission taken away, and given back too (any change of RW), and PROT_NONE (present
    // goes).
    map(x, 8);
    // SAFETY: as above.
    unsafe { touch(x, 8) };
    // SAFETY: the protection changes of a mapping nothing else uses.
    unsafe {
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, libc::PROT_READ).unwrap()), (8, 0));
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, RW).unwrap()), (8, 0));
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, libc::PROT_NONE).unwrap()), (8, 0));
        // From PROT_NONE nothing present was cached: no flush.
        assert_eq!(delta(&m, || m.mprotect(x, 8 * PAGE, RW).unwrap()), (0, 0));
    }
    // MADV_DONTNEED of 4 pages: zap_page_range_single's gather, 4 pages.
    // SAFETY: advice that discards the contents of pages nothing refers to.
    assert_eq!(delta(&m, || unsafe { m.madvise(x, 4 * PAGE, libc::MADV_DONTNEED) }.unwrap()), (4, 0));
    // Copy-on-write of the zero page: a read maps it, the write copies
    // (wp_page_copy → ptep_clear_flush: one page).
    // SAFETY: the mapping's page, read then written.
    unsafe {
        assert_eq!(
            delta(&m, || {
                let _ = ((x + 5 * PAGE) as *const u64).read_volatile();
            }),
            (0, 0),
            "resident already"
        );
        assert_eq!(
            delta(&m, || {
                let _ = (x as *const u64).read_volatile();
            }),
            (0, 0),
            "the zero page mapped"
        );
        assert_eq!(delta(&m, || ((x) as *mut u64).write_volatile(7)), (1, 0), "its copy");
    }
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(x, 8 * PAGE) }.unwrap();
    // Freed tables alone (the pages went with MADV_DONTNEED): the gather's step is a PMD
    // (`cleared_pmds` without `cleared_ptes`), and one page's range holds no PMD: 0 counted.
    map(x, 8);
    // SAFETY: as above.
    unsafe { touch(x, 8) };
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.madvise(x, 8 * PAGE, libc::MADV_DONTNEED) }.unwrap()), (8, 0));
    // SAFETY: as above.
    assert_eq!(delta(&m, || unsafe { m.munmap(x, 8 * PAGE) }.unwrap()), (0, 0));
    m.check().unwrap();
}
