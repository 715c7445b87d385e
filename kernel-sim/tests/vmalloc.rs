//! The simulated kernel's own allocators: `vmalloc` (virtually contiguous memory over
//! scattered frames, guard pages, `/proc/vmallocinfo`, the swap area's slot counts in it)
//! and `kmalloc` (the `kmalloc-8` … `kmalloc-8k` caches, larger sizes from the buddy
//! allocator, `/proc/slabinfo`), with the buddy and slab invariants after all of it.

use kernel_sim::{Config, Machine};

const PAGE: u64 = 4096;

fn field(text: &str, label: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(label).map(|r| r.trim().trim_end_matches("kB").trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {label} in {text}"))
}

fn meminfo(m: &Machine) -> String {
    let mut s = String::new();
    m.write_meminfo(&mut s).unwrap();
    s
}

#[test]
fn vmalloc_maps_scattered_frames_contiguously() {
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    let free0 = m.counters().free_pages;
    let l = m.kernel_layout();
    assert_eq!(field(&meminfo(&m), "VmallocTotal:"), 34_359_738_367, "32 TB, as Linux shows it");
    // Single pages, then every other one given back: the buddy allocator's free frames are
    // scattered when the big area is made.
    let singles: Vec<u64> = (0..64).map(|_| m.vmalloc(4096, "test_single").unwrap()).collect();
    for w in singles.windows(2) {
        assert_eq!(w[1] - w[0], 2 * PAGE, "one page and its guard page each");
    }
    for &a in singles.iter().step_by(2) {
        m.vfree(a).unwrap();
    }
    let n = 48u64;
    let big = m.vmalloc((n * PAGE) as usize, "test_big").unwrap();
    assert!(big >= l.vmalloc_start && big + n * PAGE <= l.vmalloc_end);
    let pfns: Vec<usize> = (0..n).map(|i| m.vmalloc_to_pfn(big + i * PAGE).unwrap()).collect();
    let jumps = pfns.windows(2).filter(|w| w[1] != w[0] + 1).count();
    assert!(jumps > 0, "the frames are not contiguous: {pfns:?}");
    assert_eq!(m.vmalloc_to_pfn(big + n * PAGE), None, "the guard page is not mapped");
    // Virtually contiguous: a pattern written across every page reads back whole.
    let pattern: Vec<u8> = (0..n * PAGE).map(|i| (i * 31 + i / 4096) as u8).collect();
    m.kernel_write(big, &pattern).unwrap();
    let mut back = vec![0u8; pattern.len()];
    m.kernel_read(big, &mut back).unwrap();
    assert!(back == pattern);
    // The same bytes through the direct map, page by page.
    let mut one = [0u8; 8];
    m.kernel_read(l.pfn_to_kaddr(pfns[5] as u64) + 16, &mut one).unwrap();
    // Writes reach only what the API handed out: not the direct map's frame of it, nor the
    // simulated kernel's own objects.
    assert_eq!(m.kernel_write(l.pfn_to_kaddr(pfns[5] as u64), &[1]), Err(kernel_sim::Errno::EFAULT));
    assert_eq!(m.kernel_write(big + n * PAGE - 1, &[1, 2]), Err(kernel_sim::Errno::EFAULT), "past its end");
    assert_eq!(one, pattern[(5 * PAGE + 16) as usize..(5 * PAGE + 24) as usize]);
    assert_eq!(
        m.kernel_read(big + n * PAGE - 4, &mut one),
        Err(kernel_sim::Errno::EFAULT),
        "into the guard page"
    );
    let mut info = String::new();
    m.write_vmallocinfo(&mut info).unwrap();
    let line = format!(
        "0x{big:016x}-0x{:016x} {:>7} test_big pages={n} vmalloc N0={n}",
        big + (n + 1) * PAGE,
        (n + 1) * PAGE
    );
    assert!(info.contains(&line), "{line}\n{info}");
    assert_eq!(field(&meminfo(&m), "VmallocUsed:"), (n + 32) * 4);
    // Errors change nothing.
    assert_eq!(m.vmalloc(0, "zero"), Err(kernel_sim::Errno::ENOMEM));
    assert_eq!(m.vfree(big + PAGE), Err(kernel_sim::Errno::EINVAL));
    m.vfree(big).unwrap();
    for &a in singles.iter().skip(1).step_by(2) {
        m.vfree(a).unwrap();
    }
    assert_eq!(m.vfree(big), Err(kernel_sim::Errno::EINVAL), "freed already");
    assert_eq!(field(&meminfo(&m), "VmallocUsed:"), 0);
    // Every frame back but the kernel page table's (Linux keeps them too) and the slab
    // pages kmalloc keeps for the areas' objects.
    let kept = free0 - m.counters().free_pages;
    assert!(kept <= 8, "{kept} frames kept");
    m.check().unwrap();
    m.check_buddy().unwrap();
}

#[test]
fn the_swap_area_lives_in_vmalloc() {
    let m = Machine::boot(&Config { phys_bytes: 32 << 20, swap_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    let mut info = String::new();
    m.write_vmallocinfo(&mut info).unwrap();
    // 16384 slots of 8 bytes: 32 pages and a guard page.
    assert!(info.contains(&format!("{:>7} swapon pages=32 vmalloc N0=32", 33 * PAGE)), "{info}");
    assert_eq!(field(&meminfo(&m), "VmallocUsed:"), 128);
    m.check().unwrap();
}

#[test]
fn kmalloc_size_classes_and_large_blocks() {
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    let slab = |m: &Machine, name: &str| -> (u64, u64, u64) {
        let mut s = String::new();
        m.write_slabinfo(&mut s).unwrap();
        let l = s
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name}\n{s}"));
        let f: Vec<u64> = l.split_whitespace().skip(1).take(5).map(|x| x.parse().unwrap()).collect();
        (f[0], f[2], f[4])
    };
    let sunreclaim0 = field(&meminfo(&m), "SUnreclaim:");
    let cases = [
        (1, "kmalloc-8"),
        (8, "kmalloc-8"),
        (9, "kmalloc-16"),
        (65, "kmalloc-96"),
        (100, "kmalloc-128"),
        (129, "kmalloc-192"),
        (4096, "kmalloc-4k"),
        (4097, "kmalloc-8k"),
        (8192, "kmalloc-8k"),
    ];
    let mut objs = Vec::new();
    for (size, cache) in cases {
        let before = slab(&m, cache).0;
        let k = m.kmalloc(size).unwrap();
        assert!(m.kernel_layout().region_of(k).unwrap().name.starts_with("direct mapping"));
        assert_eq!(slab(&m, cache).0, before + 1, "{size} bytes come from {cache}");
        objs.push(k);
    }
    let (_, objsize, pages) = slab(&m, "kmalloc-8k");
    assert_eq!((objsize, pages), (8192, 2), "kmalloc-8k slabs are two pages");
    // Beyond 8 KiB: whole pages (order 5 for 100,000 bytes), counted as unreclaimable slab.
    let big = m.kmalloc(100_000).unwrap();
    assert_eq!(big % PAGE, 0);
    let grew = field(&meminfo(&m), "SUnreclaim:") - sunreclaim0;
    assert!(grew >= 128, "{grew} kB");
    // The object is zeroed kernel memory we can use.
    m.kernel_write(big + 99_990, b"0123456789").unwrap();
    let mut b = [0u8; 10];
    m.kernel_read(big + 99_990, &mut b).unwrap();
    assert_eq!(&b, b"0123456789");
    assert_eq!(m.kmalloc(0), Ok(16), "ZERO_SIZE_PTR");
    m.kfree(16).unwrap();
    // Errors change nothing: inside an object, twice, not kmalloc memory.
    assert_eq!(m.kfree(objs[3] + 8), Err(kernel_sim::Errno::EINVAL));
    m.kfree(big).unwrap();
    assert_eq!(m.kfree(big), Err(kernel_sim::Errno::EINVAL));
    for &k in &objs {
        m.kfree(k).unwrap();
        assert_eq!(m.kfree(k), Err(kernel_sim::Errno::EINVAL), "a double kfree");
    }
    assert_eq!(
        m.kfree(m.kernel_layout().page_offset),
        Err(kernel_sim::Errno::EINVAL),
        "frame 0 is no object"
    );
    for (_, cache) in cases {
        assert_eq!(slab(&m, cache).0, 0, "{cache} empty again");
    }
    assert_eq!(field(&meminfo(&m), "SUnreclaim:"), sunreclaim0 + slab_pages_kept(&m));
    m.check().unwrap();
    m.check_buddy().unwrap();
}

/// Empty slabs the kmalloc caches keep (up to five each), in kB.
fn slab_pages_kept(m: &Machine) -> u64 {
    let mut s = String::new();
    m.write_slabinfo(&mut s).unwrap();
    s.lines()
        .filter(|l| l.starts_with("kmalloc-"))
        .map(|l| {
            let f: Vec<u64> = l.split_whitespace().skip(1).map_while(|x| x.parse().ok()).collect();
            // <num_slabs> is the 13th field; pages per slab the 5th.
            let slabs: u64 = l.split_whitespace().nth(14).unwrap().parse().unwrap();
            slabs * f[4] * 4
        })
        .sum()
}
