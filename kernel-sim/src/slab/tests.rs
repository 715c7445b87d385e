use super::*;
use ptalloc_testkit::Rng;

#[test]
fn objects_are_distinct_zeroed_and_pages_go_back() {
    let mut pm = PhysMem::boot(16 << 20, None, 0).unwrap();
    let free0 = pm.nr_free_pages();
    let mut slab = Slab::new(&[("a", 104), ("b", 16), ("c", 72), ("d", 256)]);
    let mut rng = Rng::new(7);
    let mut live: Vec<(usize, usize, u8)> = Vec::new();
    for step in 0..20_000u32 {
        if live.is_empty() || rng.chance(60) {
            let id = rng.below(4) as usize;
            let a = slab.alloc(&mut pm, id).unwrap();
            let size = slab.caches()[id].object_size;
            // SAFETY: a live object of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts_mut(a as *mut u8, size) };
            assert!(bytes.iter().all(|&b| b == 0), "object not zeroed");
            let tag = step as u8;
            bytes.fill(tag);
            live.push((id, a, tag));
        } else {
            let (id, a, tag) = live.swap_remove(rng.below(live.len() as u64) as usize);
            let size = slab.caches()[id].object_size;
            // SAFETY: a live object of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(a as *const u8, size) };
            assert!(bytes.iter().all(|&b| b == tag), "object overwritten");
            // SAFETY: an object this test allocated, not used again (`bytes` ends here).
            unsafe { slab.free(&mut pm, id, a) };
        }
        if step % 2000 == 0 {
            slab.check(&pm).unwrap();
            pm.check_buddy().unwrap();
        }
    }
    for (id, a, _) in live.drain(..) {
        // SAFETY: as above.
        unsafe { slab.free(&mut pm, id, a) };
    }
    slab.check(&pm).unwrap();
    for c in slab.caches() {
        assert_eq!(c.active_objs, 0);
        assert!(c.nr_slabs <= MIN_PARTIAL, "{} keeps {} empty slabs", c.name, c.nr_slabs);
    }
    let kept: usize = slab.caches().iter().map(|c| c.nr_slabs).sum();
    assert_eq!(pm.nr_free_pages() + kept, free0);
}
