use super::*;
use ptalloc_testkit::Rng;

fn boot(bytes: usize) -> PhysMem {
    PhysMem::boot(bytes, None, 0).expect("boot")
}

#[test]
fn boot_gives_every_free_frame_to_the_buddy_allocator() {
    let pm = boot(64 << 20);
    let r = pm.check_buddy().unwrap();
    assert_eq!(r.allocated_pages, 0);
    assert_eq!(r.free_pages, pm.totalram_pages());
    assert_eq!(r.reserved_pages + r.free_pages, pm.nr_frames());
    // 64 MiB: DMA is the first 16 MiB, DMA32 the rest; no Normal zone.
    assert_eq!(pm.zones[ZONE_DMA].spanned_pages, 4096);
    assert_eq!(pm.zones[ZONE_DMA32].spanned_pages, 16384 - 4096);
    assert!(!pm.zones[ZONE_NORMAL].populated());
    // Watermarks as Linux sizes them: min_free_kbytes = sqrt(16 * lowmem kB).
    let lowmem_kb = pm.totalram_pages() * 4;
    assert_eq!(pm.min_free_kbytes, ((lowmem_kb * 16) as f64).sqrt() as usize);
    let z = &pm.zones[ZONE_DMA32];
    assert!(
        z.watermark[WMARK_MIN] < z.watermark[WMARK_LOW] && z.watermark[WMARK_LOW] < z.watermark[WMARK_HIGH]
    );
    // DMA is protected from allocations that could use DMA32 by 1/256 of DMA32.
    assert_eq!(pm.zones[ZONE_DMA].lowmem_reserve[ZONE_DMA32], pm.zones[ZONE_DMA32].managed_pages / 256);
}

#[test]
fn split_and_merge_exactly() {
    let mut pm = boot(64 << 20);
    let before: Vec<usize> = pm.zones[ZONE_DMA32].free_area.iter().map(|a| a.nr_free).collect();
    let k = before.iter().position(|&n| n > 0).unwrap();
    let pfn = pm.alloc_pages(0, false, MIGRATE_MOVABLE).unwrap();
    // The smallest free block (order k) was split: one free block of each order below k appears.
    let after: Vec<usize> = pm.zones[ZONE_DMA32].free_area.iter().map(|a| a.nr_free).collect();
    for o in 0..k {
        assert_eq!(after[o], before[o] + 1, "order {o}");
    }
    assert_eq!(after[k], before[k] - 1);
    // The buddy of the page we got is free at order 0, at pfn ^ 1.
    assert!(pm.page(pfn ^ 1).has(PG_BUDDY));
    pm.check_buddy().unwrap();
    // SAFETY: a block this test allocated and does not touch.
    unsafe { pm.free_pages(pfn, 0) };
    let merged: Vec<usize> = pm.zones[ZONE_DMA32].free_area.iter().map(|a| a.nr_free).collect();
    assert_eq!(merged, before);
    pm.check_buddy().unwrap();
}

#[test]
fn allocations_come_from_the_highest_zone_first() {
    let mut pm = boot(64 << 20);
    let pfn = pm.alloc_pages(3, false, MIGRATE_MOVABLE).unwrap();
    assert_eq!(pm.zone_of(pfn), ZONE_DMA32);
    assert_eq!(pfn % 8, 0);
    // SAFETY: a block this test allocated and does not touch.
    unsafe { pm.free_pages(pfn, 3) };
    pm.check_buddy().unwrap();
}

#[test]
fn long_random_sequences_keep_every_invariant() {
    for seed in 0..4 {
        let mut pm = boot(32 << 20);
        let total = pm.totalram_pages();
        let mut rng = Rng::new(seed);
        let mut live: Vec<(usize, usize)> = Vec::new();
        for step in 0..20_000 {
            if live.is_empty() || rng.chance(55) {
                let order = if rng.chance(80) { rng.below(3) } else { rng.below(11) } as usize;
                match pm.alloc_pages(order, rng.chance(10), MIGRATE_MOVABLE) {
                    Ok(pfn) => {
                        assert_eq!(pfn & ((1 << order) - 1), 0, "block not aligned to its order");
                        live.push((pfn, order));
                    }
                    Err(e) => assert_eq!(e, Errno::ENOMEM),
                }
            } else {
                let i = rng.below(live.len() as u64) as usize;
                let (pfn, order) = live.swap_remove(i);
                // SAFETY: a block this test allocated and does not touch.
                unsafe { pm.free_pages(pfn, order) };
            }
            if step % 1000 == 0 {
                let r = pm.check_buddy().unwrap();
                let in_use: usize = live.iter().map(|&(_, o)| 1 << o).sum();
                assert_eq!(r.allocated_pages, in_use, "seed {seed} step {step}");
            }
        }
        for (pfn, order) in live.drain(..) {
            // SAFETY: a block this test allocated and does not touch.
            unsafe { pm.free_pages(pfn, order) };
        }
        let r = pm.check_buddy().unwrap();
        assert_eq!(r.free_pages, total, "frames not all back");
        // Everything merged back: as few blocks as at boot.
        let fresh = boot(32 << 20).check_buddy().unwrap();
        assert_eq!(r.free_blocks, fresh.free_blocks, "seed {seed}: free blocks left unmerged");
    }
}

#[test]
fn running_out_is_enomem_at_the_min_watermark() {
    let mut pm = boot(16 << 20);
    let mut got = 0;
    loop {
        match pm.alloc_pages(0, false, MIGRATE_MOVABLE) {
            Ok(_) => got += 1,
            Err(e) => {
                assert_eq!(e, Errno::ENOMEM);
                break;
            }
        }
    }
    // Each zone stops at its min watermark (plus what it keeps for higher zones).
    for z in pm.zones.iter().filter(|z| z.populated()) {
        assert!(
            z.free_pages <= z.watermark[WMARK_MIN] + z.lowmem_reserve[MAX_NR_ZONES - 1] + 1,
            "{}",
            z.name
        );
    }
    assert!(got > 0);
    assert!(pm.vmstat.alloc_fail >= 1);
    assert!(pm.vmstat.kswapd_wakeups >= 1);
    pm.check_buddy().unwrap();
}

#[test]
fn a_normal_zone_exists_above_4_gib() {
    let pm = boot((4 << 30) + (64 << 20));
    assert!(pm.zones[ZONE_NORMAL].populated());
    assert_eq!(pm.zones[ZONE_NORMAL].zone_start_pfn, 1 << 20);
    // Normal is the first choice.
    let mut pm = pm;
    let pfn = pm.alloc_pages(0, false, MIGRATE_MOVABLE).unwrap();
    assert_eq!(pm.zone_of(pfn), ZONE_NORMAL);
    // SAFETY: a block this test allocated and does not touch.
    unsafe { pm.free_pages(pfn, 0) };
    pm.check_buddy().unwrap();
}

#[test]
fn unmovable_allocations_claim_a_pageblock_of_their_own() {
    let mut pm = boot(64 << 20);
    let first = pm.alloc_pages(0, false, MIGRATE_UNMOVABLE).unwrap();
    assert_eq!(pm.pageblock_migratetype(first), MIGRATE_UNMOVABLE, "the block taken was claimed whole");
    // The next unmovable pages come from the same pageblock, the movable ones from others.
    for _ in 0..100 {
        let pfn = pm.alloc_pages(0, false, MIGRATE_UNMOVABLE).unwrap();
        assert_eq!(pfn & !(PAGEBLOCK_NR_PAGES - 1), first & !(PAGEBLOCK_NR_PAGES - 1));
        let m = pm.alloc_pages(0, false, MIGRATE_MOVABLE).unwrap();
        assert_eq!(pm.pageblock_migratetype(m), MIGRATE_MOVABLE);
    }
    pm.check_buddy().unwrap();
}
