//! The kernel's half of the address space: where Linux 6.18 puts the direct map, vmalloc,
//! the `struct page` array (vmemmap), the KASAN shadow, the kernel image, modules and the
//! fixmap, computed from the architecture's constants as the kernel computes them — x86-64
//! with 4-level and 5-level paging (`arch/x86/include/asm/pgtable_64_types.h`, listed in
//! `Documentation/arch/x86/x86_64/mm.rst`) and arm64 with 4 KiB pages and 39- or 48-bit
//! virtual addresses (`arch/arm64/include/asm/memory.h` and `pgtable.h` as of 6.9 and
//! later; `Documentation/arch/arm64/memory.rst`'s table is of the layout before) — rendered as text (one region a line: name, start-end, size) and as an SVG.
//!
//! A machine's own kernel objects get kernel addresses in it: frame `pfn` is at
//! `PAGE_OFFSET + pfn * PAGE_SIZE` in the direct map and its `struct page` at
//! `vmemmap + pfn * sizeof(struct page)` (Linux's `struct page` is 64 bytes; this
//! simulation's `Page` is smaller, and the vmemmap addresses use Linux's size), so
//! `virt_to_page` and `page_to_virt` work on kernel addresses; slab objects, page tables
//! and `mem_map` itself are frames of the direct map.
//!
//! 32-bit x86 is computed from its configuration ([`I386Config`]: RAM, PAE, `NR_CPUS`,
//! `vmalloc=`) as `pgtable_32_areas.h`, `fixmap.h` and `init_32.c` compute it: the 3G/1G
//! split, the direct map ("lowmem") of as much RAM as fits below `MAXMEM`, the 8 MiB hole,
//! vmalloc, pkmap, the LDT remap and cpu_entry_area that PTI added, and the fixmap counted
//! entry by entry from `enum fixed_addresses`. RAM above lowmem is highmem: it has no
//! kernel address (`page_to_virt` of its pages is `None`) until kmap maps a page through
//! pkmap or a fixmap slot. Since PTI's cpu_entry_area and LDT remap took PMDs below the
//! fixmap (4.15 and 4.19), the largest lowmem is 879.99 MiB with 8 CPUs (885.99 with PAE's
//! 2 MiB PMDs), not the 896 MiB of the layout before, which the study notes quote.

use core::fmt::{self, Write};

/// Linux's `sizeof(struct page)` on 64-bit (`STRUCT_PAGE_MAX_SHIFT` 6).
pub const STRUCT_PAGE_SIZE: u64 = 64;
/// `sizeof(struct page)` on 32-bit x86 (eight words).
pub const STRUCT_PAGE_SIZE_32: u64 = 32;
const PAGE_SIZE: u64 = 4096;
const TB: u64 = 1 << 40;
const GB: u64 = 1 << 30;
const MB: u64 = 1 << 20;

/// The layouts this module computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    X86_64FiveLevel,
    Arm64Va39,
    Arm64Va48,
    /// 32-bit x86 with [`I386Config::DEFAULT`] (for another configuration:
    /// [`KernelLayout::i386`]).
    I386,
}

/// What 32-bit x86's layout depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I386Config {
    /// RAM, `max_pfn << PAGE_SHIFT`: at most 4 GiB are used (6.15 dropped HIGHMEM64G),
    /// at least a page.
    pub ram_bytes: u64,
    /// `CONFIG_X86_PAE`: 64-bit entries, so 2 MiB PMDs and 512 pkmap slots.
    pub pae: bool,
    /// `CONFIG_NR_CPUS` (1 to 64 are used): the fixmap's kmap_local slots are per CPU.
    pub nr_cpus: u64,
    /// `__VMALLOC_RESERVE` (the `vmalloc=` boot parameter): the vmalloc space kept free
    /// when RAM would fill the kernel's gigabyte (at most 768 MiB are used).
    pub vmalloc_reserve: u64,
}

impl I386Config {
    /// i386_defconfig's choices (HIGHMEM4G, no PAE, `NR_CPUS` 8, the local and I/O APICs,
    /// PCI MMCONFIG; no OHCI1394 early DMA, APEI GHES or Intel TXT) with 2 GiB of RAM, and
    /// the default `vmalloc=` of 128 MiB.
    pub const DEFAULT: I386Config =
        I386Config { ram_bytes: 2 * GB, pae: false, nr_cpus: 8, vmalloc_reserve: 128 * MB };
}

impl Arch {
    /// By the names the `layout` example takes.
    pub fn from_name(s: &str) -> Option<Arch> {
        match s {
            "x86_64" => Some(Arch::X86_64),
            "x86_64-5level" => Some(Arch::X86_64FiveLevel),
            "arm64-39" => Some(Arch::Arm64Va39),
            "arm64-48" => Some(Arch::Arm64Va48),
            "i386" => Some(Arch::I386),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::X86_64FiveLevel => "x86_64-5level",
            Arch::Arm64Va39 => "arm64-39",
            Arch::Arm64Va48 => "arm64-48",
            Arch::I386 => "i386",
        }
    }
}

/// One region: `[start, last]` (inclusive, so the top of the address space fits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: &'static str,
    pub start: u64,
    pub last: u64,
}

impl Region {
    pub fn size(&self) -> u128 {
        (self.last - self.start) as u128 + 1
    }
    pub fn contains(&self, a: u64) -> bool {
        a >= self.start && a <= self.last
    }
}

const MAX_REGIONS: usize = 28;

/// A computed layout: the regions in address order, and the bases that address kernel
/// objects.
#[derive(Clone, Copy, Debug)]
pub struct KernelLayout {
    pub arch: Arch,
    regions: [Region; MAX_REGIONS],
    n: usize,
    /// The start of the direct map (`PAGE_OFFSET`, `page_offset_base`) and its size.
    pub page_offset: u64,
    pub direct_size: u64,
    /// The `struct page` array (`vmemmap`, `vmemmap_base`) and its size.
    pub vmemmap: u64,
    pub vmemmap_size: u64,
    pub vmalloc_start: u64,
    pub vmalloc_end: u64,
    /// `sizeof(struct page)` in this layout.
    pub struct_page_size: u64,
    /// The last address of the address space (`u32::MAX` on 32-bit).
    pub top: u64,
    /// RAM beyond the direct map (32-bit x86's highmem), in bytes.
    pub highmem: u64,
    /// 32-bit x86's pkmap and permanent fixmap, for the boot message's lines.
    i386_extra: Option<I386Extra>,
}

#[derive(Clone, Copy, Debug)]
struct I386Extra {
    cea_start: u64,
    cea_end: u64,
    pkmap_base: u64,
    pkmap_size: u64,
    fixaddr_start: u64,
    fixaddr_top: u64,
}

/// The regions in order, each running to the start of the next; gaps are "unused hole".
struct Builder {
    regions: [Region; MAX_REGIONS],
    n: usize,
}

impl Builder {
    fn new() -> Builder {
        Builder { regions: [Region { name: "", start: 0, last: 0 }; MAX_REGIONS], n: 0 }
    }
    /// `[start, end)`; `end` 0 is the top of the address space. A gap before it becomes an
    /// unused hole.
    fn push(&mut self, name: &'static str, start: u64, end: u64) {
        if self.n > 0 {
            let prev_end = self.regions[self.n - 1].last.wrapping_add(1);
            if start > prev_end {
                self.add("... unused hole", prev_end, start.wrapping_sub(1));
            }
        }
        self.add(name, start, end.wrapping_sub(1));
    }
    fn add(&mut self, name: &'static str, start: u64, last: u64) {
        if self.n < MAX_REGIONS {
            self.regions[self.n] = Region { name, start, last };
            self.n += 1;
        }
    }
}

impl KernelLayout {
    pub fn new(arch: Arch) -> KernelLayout {
        match arch {
            Arch::X86_64 => Self::x86_64(false),
            Arch::X86_64FiveLevel => Self::x86_64(true),
            Arch::Arm64Va39 => Self::arm64(39),
            Arch::Arm64Va48 => Self::arm64(48),
            Arch::I386 => Self::i386(&I386Config::DEFAULT),
        }
    }

    /// 32-bit x86 (`pgtable_32_areas.h`, `fixmap.h`, `init_32.c`'s `find_low_pfn_range`).
    pub fn i386(c: &I386Config) -> KernelLayout {
        const PAGE_OFFSET: u64 = 0xc000_0000;
        const VMALLOC_OFFSET: u64 = 8 * MB;
        let pmd_size = if c.pae { 2 * MB } else { 4 * MB };
        let ptrs_per_pte: u64 = if c.pae { 512 } else { 1024 };
        let last_pkmap: u64 = if c.pae { 512 } else { 1024 };
        // __FIXADDR_TOP: the last page stays unmapped.
        let fixaddr_top = 0x1_0000_0000 - PAGE_SIZE;
        // enum fixed_addresses: FIX_HOLE, FIX_DBGP_BASE, FIX_EARLYCON_MEM_BASE,
        // FIX_APIC_BASE, MAX_IO_APICS (64 on 32-bit) I/O APIC slots, KM_MAX_IDX (16)
        // kmap_local slots per CPU, FIX_PCIE_MCFG: the permanent ones.
        let permanent = 4 + 64 + 16 * c.nr_cpus.clamp(1, 64) + 1;
        // The 512 boot-time slots start on a page table of their own if they would
        // straddle one, then FIX_WP_TEST.
        let btmaps = 64 * 8;
        let btmap_end = if (permanent ^ (permanent + btmaps - 1)) & !(ptrs_per_pte - 1) != 0 {
            permanent + btmaps - (permanent & (btmaps - 1))
        } else {
            permanent
        };
        let end_of_fixed = btmap_end + btmaps + 1;
        let fixaddr_start = fixaddr_top - permanent * PAGE_SIZE;
        let fixaddr_tot_start = fixaddr_top - end_of_fixed * PAGE_SIZE;
        // cpu_entry_area below the whole fixmap, on a PMD boundary: the read-only IDT's
        // page, then each CPU's struct cpu_entry_area of 43 pages on 32-bit (the GDT, a
        // guard page, the entry stack, a guard page, the double-fault stack, the TSS with
        // its I/O bitmaps in 5, the debug store, 32 of PEBS and BTS buffers).
        let cea_pages = 43 * c.nr_cpus.clamp(1, 64);
        let cpu_entry_area_base = (fixaddr_tot_start - PAGE_SIZE * (cea_pages + 1)) & !(pmd_size - 1);
        let cpu_entry_area_end = cpu_entry_area_base + PAGE_SIZE * (cea_pages + 1);
        let ldt_base = (cpu_entry_area_base - PAGE_SIZE) & !(pmd_size - 1);
        let ldt_end = ldt_base + pmd_size;
        let pkmap_base = (ldt_base - PAGE_SIZE) & !(pmd_size - 1);
        let vmalloc_end = pkmap_base - 2 * PAGE_SIZE;
        // MAXMEM: what the direct map may hold, leaving vmalloc its reserve.
        let maxmem = vmalloc_end - PAGE_OFFSET - c.vmalloc_reserve.min(768 * MB);
        let max_pfn = (c.ram_bytes.min(4 * GB) / PAGE_SIZE).max(1);
        let max_low_pfn = max_pfn.min(maxmem / PAGE_SIZE);
        let high_memory = PAGE_OFFSET + max_low_pfn * PAGE_SIZE;
        let vmalloc_start = high_memory + VMALLOC_OFFSET;
        // mem_map: memblock allocates top-down below lowmem's end, and the page array is
        // among its first large allocations.
        let mem_map_size = max_pfn * STRUCT_PAGE_SIZE_32;
        let mem_map = (high_memory - mem_map_size) & !(PAGE_SIZE - 1);
        let mut b = Builder::new();
        b.push("user space (TASK_SIZE: the 3G/1G split)", 0, PAGE_OFFSET);
        b.push("lowmem: direct mapping of the first RAM (PAGE_OFFSET)", PAGE_OFFSET, high_memory);
        b.push("... VMALLOC_OFFSET hole", high_memory, vmalloc_start);
        b.push("vmalloc and modules", vmalloc_start, vmalloc_end);
        b.push("pkmap: kmap's mappings of highmem pages", pkmap_base, pkmap_base + last_pkmap * PAGE_SIZE);
        b.push("LDT remap for PTI", ldt_base, ldt_end);
        b.push("cpu_entry_area mapping", cpu_entry_area_base, cpu_entry_area_end);
        b.push("fixmap: boot-time slots (early_ioremap), FIX_WP_TEST", fixaddr_tot_start, fixaddr_start);
        b.push("fixmap: permanent slots (APICs, kmap_local)", fixaddr_start, fixaddr_top);
        b.push("... unused hole", fixaddr_top, 0x1_0000_0000);
        KernelLayout {
            arch: Arch::I386,
            regions: b.regions,
            n: b.n,
            page_offset: PAGE_OFFSET,
            direct_size: high_memory - PAGE_OFFSET,
            vmemmap: mem_map,
            vmemmap_size: mem_map_size,
            vmalloc_start,
            vmalloc_end,
            struct_page_size: STRUCT_PAGE_SIZE_32,
            top: u32::MAX as u64,
            highmem: (max_pfn - max_low_pfn) * PAGE_SIZE,
            i386_extra: Some(I386Extra {
                cea_start: cpu_entry_area_base,
                cea_end: cpu_entry_area_end,
                pkmap_base,
                pkmap_size: last_pkmap * PAGE_SIZE,
                fixaddr_start,
                fixaddr_top,
            }),
        }
    }

    /// x86-64 (`pgtable_64_types.h`, `page_64_types.h`, `fixmap.h`, `kasan.h`).
    fn x86_64(l5: bool) -> KernelLayout {
        // __VIRTUAL_MASK_SHIFT and PGDIR_SHIFT of the paging mode.
        let (va_shift, pgdir_shift) = if l5 { (56u32, 48u32) } else { (47, 39) };
        let user_top = 1u64 << va_shift;
        let kernel_bottom = (!0u64) << va_shift;
        // GUARD_HOLE: the first 16 entries of the top-level table's kernel half; the LDT
        // remap is the next one (LDT_PGD_ENTRY -240).
        let guard_end = kernel_bottom + (16u64 << pgdir_shift);
        let ldt_base = (-240i64 as u64) << pgdir_shift;
        let ldt_end = ldt_base + (1u64 << pgdir_shift);
        let (page_offset, vmalloc, vmalloc_size, vmemmap) = if l5 {
            (0xff11_0000_0000_0000, 0xffa0_0000_0000_0000, 12800 * TB, 0xffd4_0000_0000_0000)
        } else {
            (0xffff_8880_0000_0000, 0xffff_c900_0000_0000, 32 * TB, 0xffff_ea00_0000_0000)
        };
        // The direct map can hold MAX_PHYSMEM_BITS of memory (46 or 52 bits).
        let direct_size = if l5 { 1u64 << 55 } else { 1u64 << 46 };
        // KASAN: shadow of the kernel half at 1/8 scale from KASAN_SHADOW_OFFSET.
        let kasan_offset = 0xdfff_fc00_0000_0000u64;
        let kasan_start = kasan_offset + (((!0u64) << va_shift) >> 3);
        let kasan_end = kasan_start + (1u64 << (va_shift - 3));
        // VMEMMAP: 1 TB (4-level) or 0.5 PB.
        let vmemmap_size = if l5 { 1u64 << 49 } else { TB };
        let vsyscall = 0xffff_ffff_ff60_0000u64;
        // The fixmap's permanent slots below the vsyscall page (~0.5 MB on a typical
        // configuration; the size varies with it).
        let fixaddr_start = vsyscall - 128 * PAGE_SIZE;
        let mut b = Builder::new();
        b.push("user-space virtual memory, different per mm", 0, user_top);
        b.push("... non-canonical hole", user_top, kernel_bottom);
        b.push("... guard hole, also reserved for hypervisor", kernel_bottom, guard_end);
        b.push("LDT remap for PTI", ldt_base, ldt_end);
        b.push(
            "direct mapping of all physical memory (page_offset_base)",
            page_offset,
            page_offset + direct_size,
        );
        b.push("vmalloc/ioremap space (vmalloc_base)", vmalloc, vmalloc + vmalloc_size);
        b.push("virtual memory map (vmemmap_base)", vmemmap, vmemmap + vmemmap_size);
        b.push("KASAN shadow memory", kasan_start, kasan_end);
        b.push("cpu_entry_area mapping", 0xffff_fe00_0000_0000, 0xffff_fe80_0000_0000);
        b.push("%esp fixup stacks", 0xffff_ff00_0000_0000, 0xffff_ff80_0000_0000);
        b.push("EFI region mapping space", 0xffff_ffef_0000_0000, 0xffff_ffff_0000_0000);
        b.push(
            "kernel text mapping, mapped to physical address 0",
            0xffff_ffff_8000_0000,
            0xffff_ffff_a000_0000,
        );
        b.push("module mapping space", 0xffff_ffff_a000_0000, 0xffff_ffff_ff00_0000);
        b.push("kernel-internal fixmap range", fixaddr_start, vsyscall);
        b.push("legacy vsyscall ABI", vsyscall, vsyscall + PAGE_SIZE);
        b.push("... unused hole", 0xffff_ffff_ffe0_0000, 0);
        KernelLayout {
            arch: if l5 { Arch::X86_64FiveLevel } else { Arch::X86_64 },
            regions: b.regions,
            n: b.n,
            page_offset,
            direct_size,
            vmemmap,
            vmemmap_size,
            vmalloc_start: vmalloc,
            vmalloc_end: vmalloc + vmalloc_size,
            struct_page_size: STRUCT_PAGE_SIZE,
            top: u64::MAX,
            highmem: 0,
            i386_extra: None,
        }
    }

    /// arm64 with 4 KiB pages, as `memory.h` and `pgtable.h` lay it out since 6.9:
    /// `_PAGE_OFFSET`, `_PAGE_END`, 2 GiB of modules, vmalloc up to `VMEMMAP_START - 8M`,
    /// vmemmap ending at -1 GiB and sized for the linear map's pages at 64 bytes each, PCI
    /// I/O 8 MiB above it, the fixmap below `FIXADDR_TOP` (-8 MiB); no KASAN.
    fn arm64(va_bits: u32) -> KernelLayout {
        let page_offset = (!0u64) << va_bits;
        let page_end = (!0u64) << (va_bits - 1);
        let modules_end = page_end + 2 * GB;
        let vmemmap_size = ((page_end - page_offset) >> 12) * STRUCT_PAGE_SIZE;
        let vmemmap_end = 0u64.wrapping_sub(GB);
        let vmemmap_start = vmemmap_end - vmemmap_size;
        let vmalloc_end = vmemmap_start - 8 * MB;
        let pci_io_start = vmemmap_end + 8 * MB;
        let pci_io_end = pci_io_start + 16 * MB;
        let fixaddr_top = 0u64.wrapping_sub(8 * MB);
        // The fixmap's slots (early ioremap, text poking, the page-table fixmaps): their
        // number depends on the configuration; 4 MiB here.
        let fixaddr_start = fixaddr_top - 4 * MB;
        let mut b = Builder::new();
        b.push("user", 0, 1u64 << va_bits);
        b.push("... non-canonical hole", 1u64 << va_bits, page_offset);
        b.push("kernel logical memory map", page_offset, page_end);
        b.push("modules", page_end, modules_end);
        b.push("vmalloc", modules_end, vmalloc_end);
        b.push("[guard region]", vmalloc_end, vmemmap_start);
        b.push("vmemmap", vmemmap_start, vmemmap_end);
        b.push("[guard region]", vmemmap_end, pci_io_start);
        b.push("PCI I/O space", pci_io_start, pci_io_end);
        b.push("fixed mappings (top down)", fixaddr_start, fixaddr_top);
        b.push("[guard region]", fixaddr_top, 0);
        KernelLayout {
            arch: if va_bits == 39 { Arch::Arm64Va39 } else { Arch::Arm64Va48 },
            regions: b.regions,
            n: b.n,
            page_offset,
            direct_size: page_end - page_offset,
            vmemmap: vmemmap_start,
            vmemmap_size,
            vmalloc_start: modules_end,
            vmalloc_end,
            struct_page_size: STRUCT_PAGE_SIZE,
            top: u64::MAX,
            highmem: 0,
            i386_extra: None,
        }
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.n]
    }

    /// The region holding `addr`.
    pub fn region_of(&self, addr: u64) -> Option<&Region> {
        self.regions().iter().find(|r| r.contains(addr))
    }

    /// The direct-map address of frame `pfn` (`pfn_to_kaddr`).
    pub fn pfn_to_kaddr(&self, pfn: u64) -> u64 {
        self.page_offset + pfn * PAGE_SIZE
    }

    /// The kernel address of host address `host` of a machine's simulated memory (its
    /// frame in the direct map), if it is in it.
    pub(crate) fn host_to_kaddr(&self, phys: &crate::physmem::PhysMem, host: usize) -> Option<u64> {
        let pfn = phys.virt_to_pfn(host);
        (pfn < phys.nr_frames()).then(|| self.pfn_to_kaddr(pfn as u64) + (host % PAGE_SIZE as usize) as u64)
    }

    /// The frame a direct-map address lies in (`virt_to_pfn`), if it is one.
    pub fn virt_to_pfn(&self, kaddr: u64) -> Option<u64> {
        kaddr.checked_sub(self.page_offset).filter(|&o| o < self.direct_size).map(|o| o / PAGE_SIZE)
    }

    /// The address of the `struct page` of the frame a direct-map address lies in
    /// (`virt_to_page`).
    pub fn virt_to_page(&self, kaddr: u64) -> Option<u64> {
        self.virt_to_pfn(kaddr).map(|pfn| self.vmemmap + pfn * self.struct_page_size)
    }

    /// The direct-map address of the frame whose `struct page` is at `page` (`page_to_virt`);
    /// `None` for a highmem page, which has none.
    pub fn page_to_virt(&self, page: u64) -> Option<u64> {
        page.checked_sub(self.vmemmap)
            .filter(|&o| o < self.vmemmap_size && o % self.struct_page_size == 0)
            .map(|o| o / self.struct_page_size)
            .filter(|&pfn| pfn < self.direct_size / PAGE_SIZE)
            .map(|pfn| self.pfn_to_kaddr(pfn))
    }

    /// One region a line: `name start-end size`; for 32-bit x86, then its highmem and the
    /// lines `mem_init` printed at boot until a 2020 patch dropped them (`virtual kernel
    /// memory layout:`), for the regions computed here.
    pub fn write_text(&self, w: &mut dyn Write) -> fmt::Result {
        let digits = if self.top == u64::MAX { 16 } else { 8 };
        for r in self.regions() {
            writeln!(w, "{:<58} {:0d$x}-{:0d$x} {}", r.name, r.start, r.last, Size(r.size()), d = digits)?;
        }
        if let Some(x) = self.i386_extra {
            writeln!(
                w,
                "highmem: {} of RAM above lowmem, without a kernel address until kmapped",
                Size(self.highmem as u128)
            )?;
            // The message 32-bit mem_init printed until 2020, when it went so as not to show
            // an attacker the layout; the kernel image's lines are left out.
            writeln!(w, "virtual kernel memory layout:")?;
            let line = |w: &mut dyn Write, name: &str, start: u64, end: u64, mb: bool| {
                let (size, unit) = if mb { ((end - start) >> 20, "MB") } else { ((end - start) >> 10, "kB") };
                writeln!(w, "    {name:<8}: 0x{start:08x} - 0x{end:08x}   ({size:>4} {unit})")
            };
            line(w, "fixmap", x.fixaddr_start, x.fixaddr_top, false)?;
            writeln!(
                w,
                "  cpu_entry : 0x{:08x} - 0x{:08x}   ({:>4} kB)",
                x.cea_start,
                x.cea_end,
                (x.cea_end - x.cea_start) >> 10
            )?;
            line(w, "pkmap", x.pkmap_base, x.pkmap_base + x.pkmap_size, false)?;
            line(w, "vmalloc", self.vmalloc_start, self.vmalloc_end, true)?;
            line(w, "lowmem", self.page_offset, self.page_offset + self.direct_size, true)?;
        }
        Ok(())
    }

    /// An SVG: the regions as bands on a scale of log2 of their sizes (a 16 EB hole and a
    /// 4 KiB page on one picture), named, with their starts.
    pub fn write_svg(&self, w: &mut dyn Write) -> fmt::Result {
        let weight = |r: &Region| (r.size() as f64).log2().max(12.0) - 11.0;
        let total: f64 = self.regions().iter().map(weight).sum();
        let (width, height) = (900.0, 40.0 + 24.0 * self.n as f64);
        writeln!(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">")?;
        writeln!(w, "<text x=\"10\" y=\"20\" font-size=\"14\">{} kernel address space (band height: log2 of the size)</text>", self.arch.name())?;
        let mut y = 30.0;
        let avail = height - 40.0;
        for r in self.regions() {
            let h = (weight(r) / total * avail).max(12.0);
            let hole = r.name.starts_with("...") || r.name.starts_with('[');
            let fill = if hole {
                "#eeeeee"
            } else if r.name.starts_with("user") {
                "#cfe8cf"
            } else {
                "#c8daf0"
            };
            writeln!(w, "<rect x=\"10\" y=\"{y:.1}\" width=\"260\" height=\"{h:.1}\" fill=\"{fill}\" stroke=\"#555\"/>")?;
            writeln!(
                w,
                "<text x=\"280\" y=\"{:.1}\">{:0d$x} {} {}</text>",
                y + h / 2.0 + 4.0,
                r.start,
                Size(r.size()),
                Escape(r.name),
                d = if self.top == u64::MAX { 16 } else { 8 }
            )?;
            y += h;
        }
        writeln!(w, "</svg>")
    }
}

/// A size as mm.rst writes it: the largest unit that leaves a number of at least 1.
struct Size(u128);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u128); 6] = [
            ("EB", 1 << 60),
            ("PB", 1 << 50),
            ("TB", 1 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("kB", 1 << 10),
        ];
        for (name, unit) in UNITS {
            if self.0 >= unit {
                let v = self.0 as f64 / unit as f64;
                return if v.fract() == 0.0 {
                    write!(f, "{v:.0} {name}")
                } else {
                    write!(f, "{v:.2} {name}")
                };
            }
        }
        write!(f, "{} B", self.0)
    }
}

struct Escape<'a>(&'a str);

impl fmt::Display for Escape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '&' => f.write_str("&amp;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}
