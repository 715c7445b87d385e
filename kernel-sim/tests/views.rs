//! The /proc views: Linux's formats, and numbers that agree with the counters.

use kernel_sim::{Config, Machine, VmaInfo};

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

fn busy_machine() -> kernel_sim::MachineBox {
    let m = Machine::boot(&Config { phys_bytes: 128 << 20, ..Config::DEFAULT }).unwrap();
    let b = m.current_break();
    // SAFETY: raising the break and mapping without MAP_FIXED take nothing away.
    let (p, s) = unsafe {
        m.brk(b + 8 * PAGE);
        let p = m.mmap(0, 32 * PAGE, RW, ANON, -1, 0).unwrap();
        (p, m.mmap(0, 4 * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0).unwrap())
    };
    for i in 0..8 {
        // SAFETY: pages just mapped writable.
        unsafe {
            ((b + i * PAGE) as *mut u8).write(1);
            ((p + 3 * i * PAGE) as *mut u8).write(1);
        }
    }
    // SAFETY: as above.
    unsafe { (s as *mut u8).write(1) };
    // SAFETY: the machine is this test's own, and its pages are only touched through the
    // raw addresses above, which never write there again.
    unsafe { m.mprotect(p + 4 * PAGE, 4 * PAGE, libc::PROT_READ) }.unwrap();
    m
}

#[test]
fn maps_lines_are_formatted_exactly_as_linux_formats_them() {
    // Make real mappings in this process, read their lines from /proc/self/maps, and render
    // the same VMAs with the simulation's formatter.
    // SAFETY: fresh anonymous mappings of our own.
    let (private, shared) = unsafe {
        (
            libc::mmap(core::ptr::null_mut(), 3 * PAGE, libc::PROT_READ, ANON, -1, 0) as usize,
            libc::mmap(core::ptr::null_mut(), 2 * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
                as usize,
        )
    };
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line_of =
        |addr: usize| maps.lines().find(|l| l.starts_with(&format!("{addr:x}-"))).unwrap().to_string();
    let real_private = line_of(private);
    let real_shared = line_of(shared);
    let ino: u64 = real_shared.split_whitespace().nth(4).unwrap().parse().unwrap();
    let render = |v: VmaInfo| {
        let mut s = String::new();
        v.write_maps_line(&mut s).unwrap();
        s
    };
    let sim_private =
        render(VmaInfo { start: private, end: private + 3 * PAGE, flags: 0x71, ..VmaInfo::EMPTY });
    let sim_shared = render(VmaInfo {
        start: shared,
        end: shared + 2 * PAGE,
        flags: 0xfb,
        dev: (0, 1),
        ino,
        name: "/dev/zero (deleted)".into(),
        ..VmaInfo::EMPTY
    });
    assert_eq!(sim_private, real_private);
    assert_eq!(sim_shared, real_shared);
    let heap = maps.lines().find(|l| l.ends_with("[heap]"));
    if let Some(heap) = heap {
        let (range, _) = heap.split_once(' ').unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let v = VmaInfo {
            start: usize::from_str_radix(a, 16).unwrap(),
            end: usize::from_str_radix(b, 16).unwrap(),
            flags: 0x73,
            name: "[heap]".into(),
            ..VmaInfo::EMPTY
        };
        assert_eq!(render(v), heap);
    }
}

#[test]
fn maps_names_the_heap_stack_and_shared_memory() {
    let m = busy_machine();
    let mut maps = String::new();
    m.write_maps(&mut maps).unwrap();
    assert!(maps.lines().any(|l| l.ends_with(" [heap]") && l.contains(" rw-p ")), "{maps}");
    assert!(maps.lines().any(|l| l.ends_with(" [stack]")), "{maps}");
    assert!(
        maps.lines().any(|l| l.ends_with(" /dev/zero (deleted)") && l.contains(" rw-s 00000000 00:01 ")),
        "{maps}"
    );
    assert!(
        maps.lines().any(|l| l.contains(" r-xp 00000000 fe:00 ") && l.ends_with("/ksim/bin/init")),
        "{maps}"
    );
    // The mprotect split the private mapping into three.
    assert!(maps.lines().filter(|l| l.contains(" r--p ")).count() >= 1);
    assert_eq!(maps.lines().count(), m.counters().map_count);
}

#[test]
fn buddyinfo_lists_free_blocks_per_order() {
    let m = busy_machine();
    let mut s = String::new();
    m.write_buddyinfo(&mut s).unwrap();
    let mut free = 0;
    for line in s.lines() {
        assert!(line.starts_with("Node 0, zone ") && line.ends_with(' '), "{line:?}");
        let name = &line[13..21];
        assert!(name == "     DMA" || name == "   DMA32", "{line:?}");
        let counts: Vec<usize> = line[22..].split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert_eq!(counts.len(), 11);
        free += counts.iter().enumerate().map(|(o, n)| n << o).sum::<usize>();
    }
    assert_eq!(free, m.counters().free_pages);
}

#[test]
fn smaps_and_rollup_agree_with_the_counters() {
    let m = busy_machine();
    let c = m.counters();
    let mut rollup = String::new();
    m.write_smaps_rollup(&mut rollup).unwrap();
    let field = |text: &str, name: &str| -> Vec<usize> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().trim_end_matches(" kB").trim().parse().unwrap())
            .collect()
    };
    assert!(rollup.lines().next().unwrap().ends_with("[rollup]"));
    assert_eq!(field(&rollup, "Rss:"), vec![c.rss * 4]);
    assert_eq!(field(&rollup, "Anonymous:"), vec![c.rss_anon * 4]);
    assert_eq!(field(&rollup, "Pss_Shmem:"), vec![c.rss_shmem * 4]);
    let mut smaps = String::new();
    m.write_smaps(&mut smaps).unwrap();
    assert_eq!(field(&smaps, "Rss:").iter().sum::<usize>(), c.rss * 4);
    assert_eq!(field(&smaps, "Size:").iter().sum::<usize>(), c.total_vm * 4);
    assert!(smaps.contains("VmFlags: rd wr mr mw me ac "), "{smaps}");
    let mut status = String::new();
    m.write_status(&mut status).unwrap();
    assert!(status.contains(&format!("VmRSS:\t{:>8} kB", c.rss * 4)), "{status}");
    assert!(status.contains(&format!("VmData:\t{:>8} kB", c.data_vm * 4)), "{status}");
    let mut slab = String::new();
    m.write_slabinfo(&mut slab).unwrap();
    let vmas: usize = slab
        .lines()
        .find(|l| l.starts_with("vm_area_struct"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(vmas, c.map_count);
}

#[test]
fn the_svg_picture_has_a_box_per_vma_and_a_bar_per_zone() {
    let m = busy_machine();
    let mut svg = String::new();
    m.write_svg(&mut svg).unwrap();
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<title>").count(), m.counters().map_count);
    assert!(svg.contains("zone DMA32:"));
}
