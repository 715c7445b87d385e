//! Compaction and page migration: a process's memory, freed page by page so that no large
//! block is left, is moved out of the way — by `vm.compact_memory` and by an allocation of
//! a high order that compacts directly — with every byte of it intact, its PTEs naming
//! the new frames, and the counters Linux keeps.

use kernel_sim::{Config, Machine, MachineBox};

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
    // sit one in every 2 MiB of its pages (with no pageblock migratetypes to keep them
    // apart), so the holes merge up to half a pageblock.
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
    for i in 0..pages {
        // SAFETY: a page of that mapping.
        unsafe { ((p + i * PAGE) as *mut u64).write_volatile(pattern(i, 0)) };
    }
    for i in (1..pages).step_by(2) {
        // SAFETY: nothing refers into the page given up.
        unsafe { m.munmap(p + i * PAGE, PAGE) }.unwrap();
    }
    let locked = vmstat(&m, "nr_mlock");
    m.compact_memory();
    assert_eq!(vmstat(&m, "nr_mlock"), locked, "moved pages stay locked");
    for i in (0..pages).step_by(2) {
        // SAFETY: an even page of the mapping, still mapped.
        assert_eq!(unsafe { ((p + i * PAGE) as *const u64).read_volatile() }, pattern(i, 0));
    }
    m.check().unwrap();
    m.check_buddy().unwrap();
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: creating a pipe into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[1], fds[0])
}

fn send(fd: i32, v: u8) {
    // SAFETY: writing one byte from a local.
    assert_eq!(unsafe { libc::write(fd, (&v as *const u8).cast(), 1) }, 1);
}

fn recv(fd: i32) -> u8 {
    let mut v = 0u8;
    // SAFETY: reading one byte into a local.
    assert_eq!(unsafe { libc::read(fd, (&mut v as *mut u8).cast(), 1) }, 1, "the other process died");
    v
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
        let mut go = 0u8;
        // SAFETY: reading one byte into a local; without it (the parent died) leave.
        if unsafe { libc::read(from_parent, (&mut go as *mut u8).cast(), 1) } != 1 {
            // SAFETY: leaving the child.
            unsafe { libc::_exit(1) };
        }
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
