//! The special mappings exec installs on x86-64 (Linux's `arch/x86/entry/vdso/vma.c`):
//! `[vvar]` and `[vvar_vclock]`, the kernel's data pages the vDSO reads, and `[vdso]`, its
//! code, placed together top-down in the mmap area after the interpreter (`map_vdso`).
//!
//! The sizes are Linux 6.18's on x86-64: four pages of vvar, two of vclock, and the vDSO
//! image as large as the host kernel's own (read from the image the host mapped into this
//! process, `AT_SYSINFO_EHDR`). The pages themselves are not provided: the vvar pages and
//! the code read as zero here, since nothing runs the simulated program's code.

use crate::machine::State;
use crate::mm::{
    SPECIAL_VDSO, SPECIAL_VVAR, SPECIAL_VVAR_VCLOCK, VM_DONTDUMP, VM_DONTEXPAND, VM_EXEC, VM_IO, VM_MAYEXEC,
    VM_MAYREAD, VM_MAYWRITE, VM_PFNMAP, VM_READ, VM_SOFTDIRTY,
};
use crate::page::PAGE_SIZE;
use crate::Errno;

pub const VVAR_PAGES: usize = 4;
pub const VCLOCK_PAGES: usize = 2;
/// The vDSO's size when the host's cannot be read.
const DEFAULT_TEXT_PAGES: usize = 2;

/// Pages of the host's vDSO image: the end of its highest `PT_LOAD`, rounded up.
fn host_vdso_pages() -> usize {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if base == 0 {
        return DEFAULT_TEXT_PAGES;
    }
    let rd = |off: usize, n: usize| -> u64 {
        let mut v = 0u64;
        for i in 0..n {
            // SAFETY: the host kernel maps its vDSO image readable at `base`; the offsets
            // read lie within its ELF and program headers, themselves inside the image.
            let b = unsafe { ((base + off + i) as *const u8).read() };
            v |= (b as u64) << (8 * i);
        }
        v
    };
    if rd(0, 4) != 0x464c_457f {
        return DEFAULT_TEXT_PAGES;
    }
    let (phoff, phentsize, phnum) = (rd(32, 8) as usize, rd(54, 2) as usize, rd(56, 2) as usize);
    if phentsize != 56 || phnum == 0 || phnum > 16 || phoff > PAGE_SIZE {
        return DEFAULT_TEXT_PAGES;
    }
    let mut end = 0;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if rd(ph, 4) == 1 {
            end = end.max(rd(ph + 16, 8) + rd(ph + 40, 8));
        }
    }
    if end == 0 {
        DEFAULT_TEXT_PAGES
    } else {
        (end as usize).div_ceil(PAGE_SIZE)
    }
}

/// Install `[vvar]`, `[vvar_vclock]` and `[vdso]` (`map_vdso`). Returns the vDSO's address
/// (`AT_SYSINFO_EHDR`).
pub(crate) fn map_vdso(st: &mut State) -> Result<usize, Errno> {
    let text = host_vdso_pages();
    let len = (VVAR_PAGES + VCLOCK_PAGES + text) * PAGE_SIZE;
    let addr = crate::mmap::get_unmapped_area(st, 0, len, 0, false)?;
    let data = VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP;
    let code = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
    let text_start = addr + (VVAR_PAGES + VCLOCK_PAGES) * PAGE_SIZE;
    let parts = [
        (addr, VVAR_PAGES, data, SPECIAL_VVAR),
        (addr + VVAR_PAGES * PAGE_SIZE, VCLOCK_PAGES, data, SPECIAL_VVAR_VCLOCK),
        (text_start, text, code, SPECIAL_VDSO),
    ];
    let (mm, mut env) = st.vma_env();
    for (start, pages, flags, kind) in parts {
        // _install_special_mapping adds these to every special mapping.
        let flags = flags | mm.def_flags | VM_DONTEXPAND | VM_SOFTDIRTY;
        let v = crate::vma::vm_area_alloc(&mut env)?;
        v.vm_start.set(start);
        v.vm_end.set(start + pages * PAGE_SIZE);
        v.vm_flags.set(flags);
        v.vm_pgoff.set(0);
        v.vm_special.set(kind);
        crate::vma::vma_link(mm, v);
        mm.vm_stat_account(flags, pages as isize);
    }
    Ok(text_start)
}
