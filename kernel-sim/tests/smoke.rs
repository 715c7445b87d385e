use kernel_sim::{Config, Machine};

#[test]
fn boot_mmap_touch_munmap() {
    let m = Machine::boot(&Config::DEFAULT).unwrap();
    m.check().unwrap();
    let mut s = String::new();
    m.write_maps(&mut s).unwrap();
    println!("{s}");
    let before = m.counters();
    let len = 16 * 4096;
    // SAFETY: without MAP_FIXED nothing is replaced.
    let p = unsafe {
        m.mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }
    .unwrap();
    println!("mapped at {p:#x}");
    for i in 0..16 {
        // SAFETY: inside the 16-page mapping just made; the first touch faults the page in.
        unsafe { ((p + i * 4096) as *mut u64).write(i as u64 + 1) };
    }
    for i in 0..16 {
        // SAFETY: as above, the page is now resident.
        assert_eq!(unsafe { ((p + i * 4096) as *const u64).read() }, i as u64 + 1);
    }
    let c = m.counters();
    assert_eq!(c.faults - before.faults, 16);
    assert_eq!(c.rss_anon, 16);
    m.check().unwrap();
    let mut s = String::new();
    m.write_smaps_rollup(&mut s).unwrap();
    m.write_buddyinfo(&mut s).unwrap();
    println!("{s}");
    // SAFETY: the machine is this test's own, and the mapping is only touched through the
    // raw addresses above, never again.
    unsafe { m.munmap(p, len) }.unwrap();
    assert_eq!(m.counters().rss_anon, 0);
    m.check().unwrap();
}
