//! Compaction and page migration: a process's memory, freed page by page so that no large
//! block is left, is moved out of the way — by `vm.compact_memory` and by an allocation of
//! a high order that compacts directly — with every byte of it intact, its PTEs naming
//! the new frames, and the counters Linux keeps.

use kernel_sim::{Config, Machine, MachineBox};

mod common;
use common::{pipe, recv, send};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
const PFN_BITS: u64 = (1 << 55) - 1;

fn machine(ram_mib: usize) -> MachineBox {
    Machine::boot(&Config { phys_bytes: ram_mib << 20, ..Config::DEFAULT }).unwrap()
}

fn text(f: impl FnOnce(&mut String) -> std::fmt::Result) -> String {
    let mut s = String::new();
    f(&mut s).unwrap();
    s
}

fn vmstat(m: &Machine, name: &str) -> u64 {
    let v = text(|w| m.write_vmstat(w));
    v.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).map(|n| n.parse().unwrap()))
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// Free pages in blocks of at least `order`, from `/proc/buddyinfo`.
fn free_in_blocks_of(m: &Machine, order: usize) -> usize {
    let b = text(|w| m.write_buddyinfo(w));
    b.lines()
        .map(|l| {
            let counts: Vec<usize> = l.split_whitespace().skip(4).map(|n| n.parse().unwrap()).collect();
            counts.iter().enumerate().filter(|&(o, _)| o >= order).map(|(o, n)| n << o).sum::<usize>()
        })
        .sum()
}

fn pattern(page: usize, word: usize) -> u64 {
    0x00c0_ffee_0000_0000 ^ ((page as u64) << 12) ^ word as u64
}

/// Write `pattern(i, 0)` into the first word of each page `i` of `[p, p + pages * PAGE)`.
///
/// # Safety
/// A writable mapping of the calling process that only the test uses.
unsafe fn fill_first_words(p: usize, pages: usize) {
    for i in 0..pages {
        // SAFETY: the caller's promise.
        unsafe { ((p + i * PAGE) as *mut u64).write_volatile(pattern(i, 0)) };
    }
}

/// Check the words `fill_first_words` wrote, every `step`th page.
///
/// # Safety
/// Those pages are readable pages of the calling process.
unsafe fn check_first_words(p: usize, pages: usize, step: usize) {
    for i in (0..pages).step_by(step) {
        // SAFETY: the caller's promise.
        assert_eq!(unsafe { ((p + i * PAGE) as *const u64).read_volatile() }, pattern(i, 0), "page {i}");
    }
}

/// A machine of 64 MiB with a CMA area of 16 MiB.
fn cma_machine() -> MachineBox {
    Machine::boot(&Config { phys_bytes: 64 << 20, cma_bytes: 16 << 20, ..Config::DEFAULT }).unwrap()
}

/// Whether the page at `addr` of the calling process is in a frame of the CMA area.
fn in_cma(m: &Machine, addr: usize) -> bool {
    let (base, count) = m.cma_area();
    (base..base + count).contains(&((m.pagemap(addr) & PFN_BITS) as usize))
}

/// A process that fills most of memory and frees every other page of it: the free frames
/// are scattered single pages, below the pages still in use. Returns the mapping and how
/// many pages it had.
fn fragmented(m: &Machine) -> (usize, usize) {
    let free = m.counters().free_pages;
    // Leave a margin above the watermarks: the fill must not reclaim (there is no swap).
    let pages = free - 4096;
    // SAFETY: without MAP_FIXED nothing is replaced; the machine is this test's own.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    for i in 0..pages {
        for w in [0, 511] {
            // SAFETY: a page of the mapping just made, which only this test uses.
            unsafe { ((p + i * PAGE + w * 8) as *mut u64).write_volatile(pattern(i, w)) };
        }
    }
    // MADV_DONTNEED rather than munmap: the VMA stays whole, so no slab page of split VMAs
    // lands among the pages (nothing moves slab pages).
    for i in (1..pages).step_by(2) {
        // SAFETY: nothing refers into the page given up.
        unsafe { m.madvise(p + i * PAGE, PAGE, libc::MADV_DONTNEED) }.unwrap();
    }
    (p, pages)
}

/// The frame behind every page of the mapping still mapped (the even ones).
fn frames(m: &Machine, p: usize, pages: usize) -> Vec<u64> {
    (0..pages).step_by(2).map(|i| m.pagemap(p + i * PAGE) & PFN_BITS).collect()
}

fn verify(p: usize, pages: usize) {
    for i in (0..pages).step_by(2) {
        for w in [0, 511] {
            // SAFETY: an even page of the test's mapping, still mapped.
            let v = unsafe { ((p + i * PAGE + w * 8) as *const u64).read_volatile() };
            assert_eq!(v, pattern(i, w), "page {i} word {w} after compaction");
        }
    }
}

#[test]
fn compact_memory_moves_pages_so_free_frames_merge() {
    let m = machine(64);
    let (p, pages) = fragmented(&m);
    let before = frames(&m, p, pages);
    // Blocks of 1 MiB (order 8), not 2: the process's page tables, which nothing moves,
    // sit one in every 2 MiB of its pages — with memory this full, its movable pages took
    // back the pageblocks the kernel's unmovable ones had claimed, as Linux's fallback
    // does once half a pageblock is free — so the holes merge up to half a pageblock.
    let big_before = free_in_blocks_of(&m, 8);
    let huge_before = free_in_blocks_of(&m, 9);
    let free_before = m.counters().free_pages;
    m.compact_memory();
    let big_after = free_in_blocks_of(&m, 8);
    let moved = vmstat(&m, "pgmigrate_success");
    assert!(moved > 1000, "{moved} pages moved");
    assert_eq!(vmstat(&m, "pgmigrate_fail"), 0);
    assert!(vmstat(&m, "compact_migrate_scanned") >= moved && vmstat(&m, "compact_free_scanned") > 0);
    assert!(vmstat(&m, "compact_isolated") >= 2 * moved, "each page moved and its target");
    assert_eq!(vmstat(&m, "compact_stall"), 0, "nothing compacted directly");
    // The holes the pages left merged; the free blocks that were whole pageblocks already
    // were not broken up to take the pages.
    assert!(
        big_after >= big_before + (moved as usize) / 2,
        "free in blocks of order 8 and up: {big_before} -> {big_after} pages after moving {moved}"
    );
    assert!(free_in_blocks_of(&m, 9) >= huge_before);
    assert_eq!(m.counters().free_pages, free_before, "moving pages frees as much as it takes");
    // The PTEs name the new frames; the bytes came along.
    let after = frames(&m, p, pages);
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(changed as u64, moved, "every page moved has a new frame in its PTE");
    verify(p, pages);
    m.check().unwrap();
    m.check_buddy().unwrap();
    // Moved pages are ordinary pages: written again, unmapped, all frames come back.
    for i in (0..pages).step_by(2) {
        // SAFETY: as above.
        unsafe { ((p + i * PAGE) as *mut u64).write_volatile(!pattern(i, 0)) };
    }
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, pages * PAGE) }.unwrap();
    m.check().unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn a_high_order_allocation_compacts_directly() {
    let m = machine(64);
    let (p, pages) = fragmented(&m);
    // Take the large free blocks left above the process's pages with 1 MiB allocations
    // (order 8) until one has to compact to find its block.
    let mut taken = Vec::new();
    while vmstat(&m, "compact_stall") == 0 {
        match m.kmalloc(1 << 20) {
            Ok(k) => taken.push(k),
            Err(e) => panic!("kmalloc failed after {} blocks: {e:?}", taken.len()),
        }
        assert!(taken.len() < 64, "never needed compaction");
    }
    assert_eq!(vmstat(&m, "compact_success"), 1, "the allocation that stalled got its block");
    assert_eq!(vmstat(&m, "compact_fail"), 0);
    assert!(vmstat(&m, "pgmigrate_success") > 0);
    // The allocation's memory is whole and usable: write it and read it back.
    let k = *taken.last().unwrap();
    let buf = vec![0x5a; 1 << 20];
    m.kernel_write(k, &buf).unwrap();
    let mut back = vec![0; 1 << 20];
    m.kernel_read(k, &mut back).unwrap();
    assert!(back == buf);
    verify(p, pages);
    m.check().unwrap();
    m.check_buddy().unwrap();
    for k in taken {
        m.kfree(k).unwrap();
    }
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, pages * PAGE) }.unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn compaction_leaves_memory_it_cannot_move_and_changes_nothing_when_unfragmented() {
    let m = machine(64);
    // Nothing fragmented: compaction finds little to do and moves nothing it need not.
    let free_before = m.counters().free_pages;
    m.compact_memory();
    m.check_buddy().unwrap();
    assert_eq!(m.counters().free_pages, free_before);
    // Locked pages move too (vm.compact_unevictable_allowed is 1), and stay locked.
    let pages = 512;
    // SAFETY: a fresh mapping of the test's own.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, ANON | libc::MAP_LOCKED, -1, 0) }.unwrap();
    // SAFETY: that mapping.
    unsafe { fill_first_words(p, pages) };
    for i in (1..pages).step_by(2) {
        // SAFETY: nothing refers into the page given up.
        unsafe { m.munmap(p + i * PAGE, PAGE) }.unwrap();
    }
    let locked = vmstat(&m, "nr_mlock");
    m.compact_memory();
    assert_eq!(vmstat(&m, "nr_mlock"), locked, "moved pages stay locked");
    // SAFETY: the even pages of the mapping, still mapped.
    unsafe { check_first_words(p, pages, 2) };
    m.check().unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn pages_shared_with_a_child_move_in_both_processes() {
    let m = machine(64);
    let (p, pages) = fragmented(&m);
    let (to_parent, from_child) = pipe();
    let (to_child, from_parent) = pipe();
    // SAFETY: the child only makes raw system calls and uses the machine, then _exits.
    let child = unsafe { m.fork() }.unwrap();
    if child == 0 {
        // SAFETY: closing the child's copies of the parent's ends, so that the parent's
        // death ends the wait below.
        unsafe {
            libc::close(to_child);
            libc::close(from_child);
        }
        // Read every page once, so this process's own view maps the frames the parent's
        // compaction is about to move; then wait for it.
        let mut sum = 0u64;
        for i in (0..pages).step_by(2) {
            // SAFETY: the child's copy of the parent's mapping.
            sum = sum.wrapping_add(unsafe { ((p + i * PAGE) as *const u64).read_volatile() });
        }
        send(to_parent, (sum & 1) as u8 | 2);
        recv(from_parent);
        // The frames the pages left have been taken and overwritten by now: a view still
        // on them reads the wrong bytes. Then write a page (copy-on-write from a moved one).
        let mut ok = true;
        for i in (0..pages).step_by(2) {
            // SAFETY: as above.
            ok &= unsafe { ((p + i * PAGE + 511 * 8) as *const u64).read_volatile() } == pattern(i, 511);
        }
        // SAFETY: as above.
        unsafe { (p as *mut u64).write_volatile(7) };
        ok &= m.check_mm().is_ok();
        m.exit_process();
        send(to_parent, if ok { 1 } else { 0 });
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closing the parent's copies of the child's ends: a child that dies makes
    // `recv` see the end of the pipe instead of waiting for ever.
    unsafe {
        libc::close(to_parent);
        libc::close(from_parent);
    }
    assert!(recv(from_child) & 2 != 0);
    let before = frames(&m, p, pages);
    m.compact_memory();
    let moved = vmstat(&m, "pgmigrate_success");
    assert!(moved > 1000, "{moved} shared pages moved");
    assert!(vmstat(&m, "nr_tlb_remote_flush") > 0, "the child's view was shot down");
    let after = frames(&m, p, pages);
    assert!(before.iter().zip(&after).filter(|(a, b)| a != b).count() as u64 == moved);
    // Take the freed frames and write over them.
    let fill_pages = m.counters().free_pages - 4096;
    // SAFETY: a fresh mapping of the parent's own.
    let q = unsafe { m.mmap(0, fill_pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    for i in 0..fill_pages {
        // SAFETY: a page of that mapping.
        unsafe { ((q + i * PAGE + 511 * 8) as *mut u64).write_volatile(!0) };
    }
    send(to_child, 1);
    assert_eq!(recv(from_child), 1, "the child read a byte changed");
    let status = m.waitpid(child).unwrap();
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    verify(p, pages);
    m.check().unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn pagetypeinfo_shows_pageblocks_by_migratetype() {
    let m = machine(64);
    let t = text(|w| m.write_pagetypeinfo(w));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "Page block order: 9");
    assert_eq!(lines[1], "Pages per block:  512");
    assert_eq!(lines[2], "");
    assert_eq!(
        lines[3],
        "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 "
    );
    assert_eq!(lines[4], "Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0 ");
    let header = lines.iter().position(|l| l.starts_with("Number of blocks type")).unwrap();
    assert_eq!(
        lines[header],
        "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate "
    );
    // Six types a zone, two zones (64 MiB: DMA and DMA32), a blank line before the counts.
    assert_eq!(header, 4 + 12 + 1);
    let blocks =
        |line: &str| -> Vec<usize> { line.split_whitespace().skip(4).map(|n| n.parse().unwrap()).collect() };
    let dma32 = blocks(lines[header + 2]);
    assert_eq!(dma32.iter().sum::<usize>(), (48 << 20) / (512 * PAGE), "every pageblock counted once");
    // The kernel's own pages at boot (page tables, slabs) took pageblocks of their own.
    assert!(dma32[0] >= 1 && dma32[1] > dma32[0], "{t}");
    // Free pages by type add up to /proc/buddyinfo's.
    let free_by_type: usize = lines[4..16]
        .iter()
        .map(|l| {
            l.split_whitespace()
                .skip(6)
                .enumerate()
                .map(|(o, n)| n.parse::<usize>().unwrap() << o)
                .sum::<usize>()
        })
        .sum();
    assert_eq!(free_by_type, free_in_blocks_of(&m, 0));
    assert_eq!(free_by_type, m.counters().free_pages);
}

fn meminfo(m: &Machine, label: &str) -> usize {
    let t = text(|w| m.write_meminfo(w));
    t.lines()
        .find_map(|l| l.strip_prefix(label).map(|r| r.trim().trim_end_matches("kB").trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {label} in {t}"))
}

#[test]
fn cma_lends_its_frames_to_user_pages_and_takes_them_back() {
    let m = cma_machine();
    let (base, count) = m.cma_area();
    assert_eq!(count, 4096);
    assert_eq!(meminfo(&m, "CmaTotal:"), 16 << 10);
    assert_eq!(meminfo(&m, "CmaFree:"), 16 << 10);
    let t = text(|w| m.write_pagetypeinfo(w));
    let dma32 = t.lines().next_back().unwrap();
    assert_eq!(dma32.split_whitespace().nth(8), Some("8"), "eight CMA pageblocks: {t}");
    // The kernel's own memory never comes from the area.
    let v = m.vmalloc(4 << 20, "test").unwrap();
    for i in 0..1024u64 {
        let pfn = m.vmalloc_to_pfn(v + i * PAGE as u64).unwrap();
        assert!(!(base..base + count).contains(&pfn));
    }
    m.vfree(v).unwrap();
    // User pages do, once the area holds more than half the free frames.
    let pages = m.counters().free_pages - 6144;
    // SAFETY: a fresh mapping of the test's own.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: that mapping.
    unsafe { fill_first_words(p, pages) };
    let borrowed = (0..pages).filter(|&i| in_cma(&m, p + i * PAGE)).count();
    assert!(borrowed > 1000, "{borrowed} user pages in the CMA area");
    assert_eq!(meminfo(&m, "CmaFree:"), (16 << 10) - 4 * borrowed, "nothing but these pages took CMA frames");
    // Take the whole area back: the borrowed pages move out, their bytes with them.
    let got = m.cma_alloc(count).unwrap();
    assert_eq!(got, base);
    assert_eq!(meminfo(&m, "CmaFree:"), 0);
    assert!(vmstat(&m, "pgmigrate_success") as usize >= borrowed);
    for i in 0..pages {
        assert!(!in_cma(&m, p + i * PAGE), "page {i} still in the area");
    }
    // SAFETY: as above.
    unsafe { check_first_words(p, pages, 1) };
    m.check().unwrap();
    m.check_buddy().unwrap();
    // The range is the caller's: a second allocation finds nothing, a wrong release is
    // refused, the right one gives the area back.
    assert_eq!(m.cma_alloc(1), Err(kernel_sim::Errno::ENOMEM));
    assert_eq!(m.cma_release(got + 1, count), Err(kernel_sim::Errno::EINVAL));
    assert_eq!(m.cma_release(got, count - 1), Err(kernel_sim::Errno::EINVAL));
    m.cma_release(got, count).unwrap();
    assert_eq!(meminfo(&m, "CmaFree:"), 16 << 10);
    assert_eq!(m.cma_release(got, count), Err(kernel_sim::Errno::EINVAL), "released twice");
    // Smaller ranges, aligned to their size.
    let a = m.cma_alloc(100).unwrap();
    let b = m.cma_alloc(100).unwrap();
    assert_eq!((a - base) % 128, 0);
    assert!(b >= a + 100, "ranges do not overlap");
    m.cma_release(a, 100).unwrap();
    m.cma_release(b, 100).unwrap();
    m.check_buddy().unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, pages * PAGE) }.unwrap();
    assert_eq!(meminfo(&m, "CmaFree:"), 16 << 10);
    m.check_buddy().unwrap();
}

#[test]
fn cma_refuses_what_it_cannot_do() {
    let m = machine(64);
    assert_eq!(m.cma_area(), (0, 0));
    assert_eq!(meminfo(&m, "CmaTotal:"), 0);
    assert_eq!(m.cma_alloc(1), Err(kernel_sim::Errno::EINVAL), "no CMA area");
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, cma_bytes: 4 << 20, ..Config::DEFAULT }).unwrap();
    assert_eq!(m.cma_alloc(0), Err(kernel_sim::Errno::EINVAL));
    assert_eq!(m.cma_alloc(1025), Err(kernel_sim::Errno::ENOMEM), "more than the area");
    assert!(Machine::boot(&Config { phys_bytes: 64 << 20, cma_bytes: 128 << 20, ..Config::DEFAULT }).is_err());
    m.check_buddy().unwrap();
}

#[test]
fn cma_takes_page_cache_pages_back_too() {
    let m = cma_machine();
    let (_, count) = m.cma_area();
    // Shared anonymous memory is shmem page cache: its index moves with each page.
    let pages = m.counters().free_pages - 6144;
    // SAFETY: a fresh mapping of the test's own.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0) }.unwrap();
    // SAFETY: that mapping.
    unsafe { fill_first_words(p, pages) };
    let borrowed = (0..pages).filter(|&i| in_cma(&m, p + i * PAGE)).count();
    assert!(borrowed > 1000, "{borrowed} shmem pages borrowed the area");
    let got = m.cma_alloc(count).unwrap();
    assert!((0..pages).all(|i| !in_cma(&m, p + i * PAGE)));
    m.check().unwrap();
    m.check_buddy().unwrap();
    // Unmapped first, the mapping faults its pages back in through the object's index,
    // which must name the new frames.
    // SAFETY: nothing refers into the range while it is unmapped from the host's view.
    unsafe { m.madvise(p, pages * PAGE, libc::MADV_DONTNEED) }.unwrap();
    // SAFETY: as above.
    unsafe { check_first_words(p, pages, 1) };
    m.cma_release(got, count).unwrap();
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, pages * PAGE) }.unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn a_range_whose_pages_have_nowhere_to_go_stays_busy() {
    let m = cma_machine();
    let (_, count) = m.cma_area();
    // Fill all but 1,024 frames: more pages borrow the area than there are free frames
    // outside it to move them to.
    let pages = m.counters().free_pages - 1024;
    // SAFETY: a fresh mapping of the test's own.
    let p = unsafe { m.mmap(0, pages * PAGE, RW, ANON, -1, 0) }.unwrap();
    // SAFETY: that mapping.
    unsafe { fill_first_words(p, pages) };
    let free = m.counters().free_pages;
    assert_eq!(m.cma_alloc(count), Err(kernel_sim::Errno::ENOMEM));
    assert!(vmstat(&m, "pgmigrate_fail") >= 1);
    assert_eq!(m.counters().free_pages, free, "nothing held");
    m.check().unwrap();
    m.check_buddy().unwrap();
    // SAFETY: as above.
    unsafe { check_first_words(p, pages, 1) };
    // With the pages gone the area is whole again.
    // SAFETY: nothing refers into the mapping.
    unsafe { m.munmap(p, pages * PAGE) }.unwrap();
    let got = m.cma_alloc(count).unwrap();
    m.cma_release(got, count).unwrap();
    m.check_buddy().unwrap();
}
