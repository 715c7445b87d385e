//! The kernel address-space layouts against Linux's documented tables
//! (`Documentation/arch/x86/x86_64/mm.rst`) and to arm64's `memory.h` (whose 6.9 layout
//! `Documentation/arch/arm64/memory.rst` predates above vmalloc), their
//! shape (sorted, contiguous, covering all 2^64 addresses), and a machine's objects at
//! their kernel addresses.

use kernel_sim::{Arch, Config, I386Config, KernelLayout, Machine, STRUCT_PAGE_SIZE, STRUCT_PAGE_SIZE_32};

/// Rows of the documentation: (start, last, description as this layout names it).
fn check_rows(l: &KernelLayout, rows: &[(u64, u64, &str)]) {
    for &(start, last, name) in rows {
        let r = l
            .regions()
            .iter()
            .find(|r| r.start == start)
            .unwrap_or_else(|| panic!("{:?}: no region starts at {start:#x} ({name})", l.arch));
        assert_eq!((r.last, r.name), (last, name), "{:?}: the region at {start:#x}", l.arch);
    }
}

fn check_shape(l: &KernelLayout) {
    let rs = l.regions();
    assert_eq!(rs[0].start, 0);
    assert_eq!(rs.last().unwrap().last, l.top);
    for w in rs.windows(2) {
        assert_eq!(w[0].last.wrapping_add(1), w[1].start, "{:?}: {:?} then {:?}", l.arch, w[0], w[1]);
    }
    let total: u128 = rs.iter().map(|r| r.size()).sum();
    assert_eq!(total, l.top as u128 + 1);
}

#[test]
fn x86_64_four_level_is_mm_rst() {
    let l = KernelLayout::new(Arch::X86_64);
    check_shape(&l);
    check_rows(
        &l,
        &[
            (0, 0x0000_7fff_ffff_ffff, "user-space virtual memory, different per mm"),
            (0xffff_8000_0000_0000, 0xffff_87ff_ffff_ffff, "... guard hole, also reserved for hypervisor"),
            (0xffff_8800_0000_0000, 0xffff_887f_ffff_ffff, "LDT remap for PTI"),
            (
                0xffff_8880_0000_0000,
                0xffff_c87f_ffff_ffff,
                "direct mapping of all physical memory (page_offset_base)",
            ),
            (0xffff_c880_0000_0000, 0xffff_c8ff_ffff_ffff, "... unused hole"),
            (0xffff_c900_0000_0000, 0xffff_e8ff_ffff_ffff, "vmalloc/ioremap space (vmalloc_base)"),
            (0xffff_e900_0000_0000, 0xffff_e9ff_ffff_ffff, "... unused hole"),
            (0xffff_ea00_0000_0000, 0xffff_eaff_ffff_ffff, "virtual memory map (vmemmap_base)"),
            (0xffff_eb00_0000_0000, 0xffff_ebff_ffff_ffff, "... unused hole"),
            (0xffff_ec00_0000_0000, 0xffff_fbff_ffff_ffff, "KASAN shadow memory"),
            (0xffff_fc00_0000_0000, 0xffff_fdff_ffff_ffff, "... unused hole"),
            (0xffff_fe00_0000_0000, 0xffff_fe7f_ffff_ffff, "cpu_entry_area mapping"),
            (0xffff_fe80_0000_0000, 0xffff_feff_ffff_ffff, "... unused hole"),
            (0xffff_ff00_0000_0000, 0xffff_ff7f_ffff_ffff, "%esp fixup stacks"),
            (0xffff_ff80_0000_0000, 0xffff_ffee_ffff_ffff, "... unused hole"),
            (0xffff_ffef_0000_0000, 0xffff_fffe_ffff_ffff, "EFI region mapping space"),
            (0xffff_ffff_0000_0000, 0xffff_ffff_7fff_ffff, "... unused hole"),
            (
                0xffff_ffff_8000_0000,
                0xffff_ffff_9fff_ffff,
                "kernel text mapping, mapped to physical address 0",
            ),
            (0xffff_ffff_a000_0000, 0xffff_ffff_feff_ffff, "module mapping space"),
            (0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_0fff, "legacy vsyscall ABI"),
            (0xffff_ffff_ffe0_0000, 0xffff_ffff_ffff_ffff, "... unused hole"),
        ],
    );
    // The fixmap ends below the vsyscall page; its size depends on the configuration
    // (mm.rst: "~0.5 MB").
    let fix = l.regions().iter().find(|r| r.name == "kernel-internal fixmap range").unwrap();
    assert_eq!(fix.last, 0xffff_ffff_ff5f_ffff);
    assert_eq!(fix.size(), 512 << 10);
}

#[test]
fn x86_64_five_level_is_mm_rst() {
    let l = KernelLayout::new(Arch::X86_64FiveLevel);
    check_shape(&l);
    check_rows(
        &l,
        &[
            (0, 0x00ff_ffff_ffff_ffff, "user-space virtual memory, different per mm"),
            (0xff00_0000_0000_0000, 0xff0f_ffff_ffff_ffff, "... guard hole, also reserved for hypervisor"),
            (0xff10_0000_0000_0000, 0xff10_ffff_ffff_ffff, "LDT remap for PTI"),
            (
                0xff11_0000_0000_0000,
                0xff90_ffff_ffff_ffff,
                "direct mapping of all physical memory (page_offset_base)",
            ),
            (0xff91_0000_0000_0000, 0xff9f_ffff_ffff_ffff, "... unused hole"),
            (0xffa0_0000_0000_0000, 0xffd1_ffff_ffff_ffff, "vmalloc/ioremap space (vmalloc_base)"),
            (0xffd2_0000_0000_0000, 0xffd3_ffff_ffff_ffff, "... unused hole"),
            (0xffd4_0000_0000_0000, 0xffd5_ffff_ffff_ffff, "virtual memory map (vmemmap_base)"),
            (0xffff_fc00_0000_0000, 0xffff_fdff_ffff_ffff, "... unused hole"),
            (0xffff_fe00_0000_0000, 0xffff_fe7f_ffff_ffff, "cpu_entry_area mapping"),
            (
                0xffff_ffff_8000_0000,
                0xffff_ffff_9fff_ffff,
                "kernel text mapping, mapped to physical address 0",
            ),
            (0xffff_ffff_a000_0000, 0xffff_ffff_feff_ffff, "module mapping space"),
        ],
    );
    // mm.rst rounds the KASAN shadow's start ("ffdf000000000000, -8.25 PB, ~8 PB"); the
    // kernel's formula, KASAN_SHADOW_OFFSET + ((-1UL << 56) >> 3), gives ffdffc0000000000,
    // and the shadow is 1/8 of the 56-bit kernel half: 8 PB exactly, ending where mm.rst's does.
    let k = l.regions().iter().find(|r| r.name == "KASAN shadow memory").unwrap();
    assert_eq!((k.start, k.last, k.size()), (0xffdf_fc00_0000_0000, 0xffff_fbff_ffff_ffff, 1 << 53));
}

#[test]
fn arm64_layouts_follow_memory_h() {
    // 48 bits. memory.rst's table (linear map, modules, the start of vmalloc) still holds
    // below vmalloc; above, 6.9 moved vmemmap to end at -1 GiB (VMEMMAP_END), PCI I/O to 8 MiB
    // above it, FIXADDR_TOP to -8 MiB and VMALLOC_END to VMEMMAP_START - 8 MiB.
    let l = KernelLayout::new(Arch::Arm64Va48);
    check_shape(&l);
    check_rows(
        &l,
        &[
            (0, 0x0000_ffff_ffff_ffff, "user"),
            (0xffff_0000_0000_0000, 0xffff_7fff_ffff_ffff, "kernel logical memory map"),
            (0xffff_8000_0000_0000, 0xffff_8000_7fff_ffff, "modules"),
            (0xffff_8000_8000_0000, 0xffff_fdff_bf7f_ffff, "vmalloc"),
            (0xffff_fdff_c000_0000, 0xffff_ffff_bfff_ffff, "vmemmap"),
            (0xffff_ffff_c080_0000, 0xffff_ffff_c17f_ffff, "PCI I/O space"),
            (0xffff_ffff_ff80_0000, 0xffff_ffff_ffff_ffff, "[guard region]"),
        ],
    );
    let vm = l.regions().iter().find(|r| r.name == "vmemmap").unwrap();
    assert_eq!(vm.size(), 2 << 40, "128 TB of linear map / 4 KiB * 64 bytes");
    let fix = l.regions().iter().find(|r| r.name == "fixed mappings (top down)").unwrap();
    assert_eq!(fix.last, 0xffff_ffff_ff7f_ffff, "below FIXADDR_TOP = -8 MiB");
    // 39 bits: PAGE_OFFSET = -(1 << 39), the linear map half the kernel space, modules 2 GiB
    // above it, vmemmap sized for 256 GB of linear map (4 GiB) below -1 GiB.
    let l = KernelLayout::new(Arch::Arm64Va39);
    check_shape(&l);
    check_rows(
        &l,
        &[
            (0, 0x0000_007f_ffff_ffff, "user"),
            (0xffff_ff80_0000_0000, 0xffff_ffbf_ffff_ffff, "kernel logical memory map"),
            (0xffff_ffc0_0000_0000, 0xffff_ffc0_7fff_ffff, "modules"),
            (0xffff_fffe_c000_0000, 0xffff_ffff_bfff_ffff, "vmemmap"),
        ],
    );
    assert_eq!(l.vmalloc_end, 0xffff_fffe_c000_0000 - (8 << 20));
    // Beyond the direct map and the struct page array, no translation.
    assert_eq!(l.virt_to_page(l.vmalloc_start), None);
    assert_eq!(l.page_to_virt(l.vmemmap + l.vmemmap_size), None);
}

/// 32-bit x86 as `pgtable_32_areas.h` and `fixmap.h` compute it. The expected addresses are
/// worked out by hand from those formulas: 197 permanent fixmap slots (hole, DBGP, earlycon,
/// local APIC, 64 I/O APICs, 16 kmap_local slots for each of 8 CPUs, PCIe MMCONFIG) below
/// 0xfffff000, 512 boot-time slots (no page-table crossing without PAE, so right after them)
/// and FIX_WP_TEST: 710 in all, from 0xffd39000; cpu_entry_area's 8 * 43 + 1 pages rounded
/// down to a 4 MiB PMD (0xff800000), the LDT remap the PMD below, pkmap the one below that,
/// vmalloc ending two pages under it and MAXMEM 128 MiB lower still. With PAE (2 MiB PMDs,
/// 512-entry page tables: the boot-time slots move to 512) the same formulas give the layout
/// a 4.19 PAE kernel printed ("cpu_entry : 0xffa00000", "pkmap : 0xff600000 - 0xff800000",
/// "vmalloc : 0xf7dfe000 - 0xff5fe000", "lowmem : 0xc0000000 - 0xf75fe000 ( 885 MB)").
#[test]
fn i386_follows_pgtable_32_areas_h() {
    let l = KernelLayout::new(Arch::I386);
    assert_eq!(Arch::from_name("i386"), Some(Arch::I386));
    check_shape(&l);
    check_rows(
        &l,
        &[
            (0, 0xbfff_ffff, "user space (TASK_SIZE: the 3G/1G split)"),
            (0xc000_0000, 0xf6ff_dfff, "lowmem: direct mapping of the first RAM (PAGE_OFFSET)"),
            (0xf6ff_e000, 0xf77f_dfff, "... VMALLOC_OFFSET hole"),
            (0xf77f_e000, 0xfeff_dfff, "vmalloc and modules"),
            (0xfeff_e000, 0xfeff_ffff, "... unused hole"),
            (0xff00_0000, 0xff3f_ffff, "pkmap: kmap's mappings of highmem pages"),
            (0xff40_0000, 0xff7f_ffff, "LDT remap for PTI"),
            (0xff80_0000, 0xff95_8fff, "cpu_entry_area mapping"),
            (0xff95_9000, 0xffd3_8fff, "... unused hole"),
            (0xffd3_9000, 0xfff3_9fff, "fixmap: boot-time slots (early_ioremap), FIX_WP_TEST"),
            (0xfff3_a000, 0xffff_efff, "fixmap: permanent slots (APICs, kmap_local)"),
            (0xffff_f000, 0xffff_ffff, "... unused hole"),
        ],
    );
    // 2 GiB of RAM: 879.99 MiB of lowmem, the rest highmem; vmalloc 120 MiB as every
    // HIGHMEM kernel's boot message read.
    assert_eq!(l.direct_size, 0x36ff_e000);
    assert_eq!(l.highmem, (2u64 << 30) - 0x36ff_e000);
    assert_eq!(l.vmalloc_end - l.vmalloc_start, 120 << 20);
    let mut text = String::new();
    l.write_text(&mut text).unwrap();
    for line in [
        "virtual kernel memory layout:",
        "    fixmap  : 0xfff3a000 - 0xfffff000   ( 788 kB)",
        "  cpu_entry : 0xff800000 - 0xff959000   (1380 kB)",
        "    pkmap   : 0xff000000 - 0xff400000   (4096 kB)",
        "    vmalloc : 0xf77fe000 - 0xfeffe000   ( 120 MB)",
        "    lowmem  : 0xc0000000 - 0xf6ffe000   ( 879 MB)",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
    }
    assert!(text.contains("user space (TASK_SIZE: the 3G/1G split)"), "{text}");
    assert!(text.lines().any(|l| l.contains(" c0000000-f6ffdfff ")), "8 hex digits:\n{text}");

    // Lowmem frames have kernel addresses; highmem frames have a struct page but no address.
    let last_low = 0x36ff_e000 / 4096 - 1;
    for pfn in [0, 1, last_low] {
        let k = l.pfn_to_kaddr(pfn);
        let page = l.virt_to_page(k + 5).unwrap();
        assert_eq!(page, l.vmemmap + pfn * STRUCT_PAGE_SIZE_32);
        assert_eq!(l.page_to_virt(page), Some(k));
    }
    let first_high = l.vmemmap + (last_low + 1) * STRUCT_PAGE_SIZE_32;
    assert_eq!(l.page_to_virt(first_high), None, "a highmem page has no kernel address");
    assert_eq!(l.virt_to_page(l.vmalloc_start), None);
    // mem_map, 32 bytes a page of all 2 GiB, at the top of lowmem.
    assert_eq!(l.vmemmap_size, (2u64 << 30) / 4096 * 32);
    assert_eq!(l.vmemmap, 0xf6ff_e000 - (16 << 20));
    assert_eq!(l.region_of(l.vmemmap).unwrap().name, "lowmem: direct mapping of the first RAM (PAGE_OFFSET)");

    let pae = KernelLayout::i386(&I386Config { pae: true, ..I386Config::DEFAULT });
    check_shape(&pae);
    check_rows(
        &pae,
        &[
            (0xc000_0000, 0xf75f_dfff, "lowmem: direct mapping of the first RAM (PAGE_OFFSET)"),
            (0xf7df_e000, 0xff5f_dfff, "vmalloc and modules"),
            (0xff60_0000, 0xff7f_ffff, "pkmap: kmap's mappings of highmem pages"),
            (0xff80_0000, 0xff9f_ffff, "LDT remap for PTI"),
            (0xffa0_0000, 0xffb5_8fff, "cpu_entry_area mapping"),
            (0xffbf_e000, 0xfff3_9fff, "fixmap: boot-time slots (early_ioremap), FIX_WP_TEST"),
        ],
    );

    // Less RAM than MAXMEM: all of it lowmem, no highmem, and vmalloc takes the rest.
    let small = KernelLayout::i386(&I386Config { ram_bytes: 256 << 20, ..I386Config::DEFAULT });
    check_shape(&small);
    assert_eq!((small.direct_size, small.highmem), (256 << 20, 0));
    assert_eq!(small.vmalloc_start, 0xd080_0000);
    // Nonsense is clamped, never a panic: no RAM, a huge vmalloc= and NR_CPUS.
    for c in [
        I386Config { ram_bytes: 0, ..I386Config::DEFAULT },
        I386Config { vmalloc_reserve: u64::MAX, nr_cpus: u64::MAX, ..I386Config::DEFAULT },
    ] {
        check_shape(&KernelLayout::i386(&c));
    }
}

#[test]
fn a_machines_objects_have_kernel_addresses() {
    let m = Machine::boot(&Config { phys_bytes: 64 << 20, ..Config::DEFAULT }).unwrap();
    let l = m.kernel_layout();
    let frames = (64u64 << 20) / 4096;
    for pfn in [0, 1, 2, 4095, frames - 1] {
        let k = l.pfn_to_kaddr(pfn);
        assert_eq!(l.region_of(k).unwrap().name, "direct mapping of all physical memory (page_offset_base)");
        let page = l.virt_to_page(k + 123).unwrap();
        assert_eq!(page, 0xffff_ea00_0000_0000 + pfn * STRUCT_PAGE_SIZE);
        assert_eq!(l.region_of(page).unwrap().name, "virtual memory map (vmemmap_base)");
        assert_eq!(l.page_to_virt(page), Some(k), "page_to_virt(virt_to_page(x)) is x's page");
    }
    let mut text = String::new();
    m.write_kernel_objects(&mut text).unwrap();
    let pgd = text.lines().find(|l| l.starts_with("the process's PGD")).unwrap();
    let kaddr = u64::from_str_radix(pgd.split_whitespace().last().unwrap(), 16).unwrap();
    assert!(kaddr >= l.page_offset && kaddr < l.pfn_to_kaddr(frames), "{text}");
    assert!(text.contains("virt_to_page(") && text.contains("struct page array (vmemmap)"), "{text}");
    // A host address outside simulated memory has no kernel address.
    let local = 0u64;
    assert_eq!(m.kernel_address(&local as *const u64 as usize), None);
}
