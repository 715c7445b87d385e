//! The kernel address-space layouts against Linux's documented tables
//! (`Documentation/arch/x86/x86_64/mm.rst`) and to arm64's `memory.h` (whose 6.9 layout
//! `Documentation/arch/arm64/memory.rst` predates above vmalloc), their
//! shape (sorted, contiguous, covering all 2^64 addresses), and a machine's objects at
//! their kernel addresses.

use kernel_sim::{Arch, Config, KernelLayout, Machine, STRUCT_PAGE_SIZE};

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
    assert_eq!(rs.last().unwrap().last, u64::MAX);
    for w in rs.windows(2) {
        assert_eq!(w[0].last.wrapping_add(1), w[1].start, "{:?}: {:?} then {:?}", l.arch, w[0], w[1]);
    }
    let total: u128 = rs.iter().map(|r| r.size()).sum();
    assert_eq!(total, 1u128 << 64);
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
