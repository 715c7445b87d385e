//! Loading an ELF program (Linux's `fs/binfmt_elf.c`, x86-64): `load_elf_binary`,
//! `load_elf_interp` and `create_elf_tables`.
//!
//! The headers are parsed here by hand: the simulated kernel's paths depend on `libc`
//! alone, and a loader needs only the ELF header and the program headers. The checks and
//! their errors are Linux's: a bad magic, type, machine or class is `ENOEXEC` (no other
//! format is known, `#!` scripts included); program headers of the wrong entry size, none,
//! more than a page of them or cut short are `ENOEXEC`; an interpreter path cut short is
//! `EIO`, not NUL-terminated or of a bad length `ENOEXEC`; an interpreter that cannot be
//! opened fails as its `open` does, one that is not ELF for this machine is `ELIBBAD`.
//! Segments that cannot be laid out (no `PT_LOAD`, `p_filesz > p_memsz`, beyond the
//! address space, offsets not congruent with addresses) are refused with `EINVAL` before
//! anything changes, where Linux finds them after its point of no return and kills the
//! process.
//!
//! Layout, with randomisation off: an `ET_EXEC` program at its addresses (relative to the
//! start of the simulated user range, which stands for address 0); an `ET_DYN` program
//! with an interpreter (PIE) at `ELF_ET_DYN_BASE` (two thirds of the user range) aligned to
//! its largest `p_align`; one without (static PIE) where `mmap` puts it, with the brk moved
//! to `ELF_ET_DYN_BASE`; each `PT_LOAD` mapped privately from the file with its
//! permissions, the rest of its last page zeroed (`padzero`) and anonymous pages after it
//! for the bss (`vm_brk_flags`); the interpreter top-down in the mmap area; then the vDSO;
//! then the stack's tables: the platform string, 16 random bytes, and below them `argc`,
//! `argv`, `envp` and the auxiliary vector, 16-byte aligned.

use core::ffi::CStr;

use crate::exec::{clear_user, copy_to_user, Strings};
use crate::file::{File, FMODE_READ};
use crate::machine::State;
use crate::page::{PAGE_MASK, PAGE_SIZE};
use crate::shmem::InodePtr;
use crate::Errno;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const PHDR_SIZE: usize = 56;
/// At most a page of program headers (`ELF_MIN_ALIGN`).
const MAX_PHDRS: usize = PAGE_SIZE / PHDR_SIZE;
/// `BINPRM_BUF_SIZE`: how much of the file exec reads first.
pub const BINPRM_BUF_SIZE: usize = 256;
const PATH_MAX: u64 = 4096;

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_RSEQ_FEATURE_SIZE: u64 = 27;
const AT_RSEQ_ALIGN: u64 = 28;
const AT_EXECFN: u64 = 31;
const AT_SYSINFO_EHDR: u64 = 33;
const AT_MINSIGSTKSZ: u64 = 51;

/// `ELF_PLATFORM` on x86-64 (`utsname()->machine`).
const PLATFORM: &[u8] = b"x86_64\0";

#[derive(Clone, Copy, Debug, Default)]
pub struct Ehdr {
    pub e_type: u16,
    pub e_machine: u16,
    pub e_entry: u64,
    pub e_phoff: u64,
    pub e_phentsize: u16,
    pub e_phnum: u16,
    class: u8,
    magic_ok: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

fn le(b: &[u8], off: usize, n: usize) -> u64 {
    (0..n).fold(0u64, |v, i| v | (b[off + i] as u64) << (8 * i))
}

impl Ehdr {
    /// The header in the first bytes of a file (zeros where the file was shorter).
    pub fn parse(b: &[u8; BINPRM_BUF_SIZE]) -> Ehdr {
        Ehdr {
            magic_ok: b[..4] == *b"\x7fELF",
            class: b[4],
            e_type: le(b, 16, 2) as u16,
            e_machine: le(b, 18, 2) as u16,
            e_entry: le(b, 24, 8),
            e_phoff: le(b, 32, 8),
            e_phentsize: le(b, 54, 2) as u16,
            e_phnum: le(b, 56, 2) as u16,
        }
    }

    /// `elf_check_arch` for a 64-bit x86 program.
    fn arch_ok(&self) -> bool {
        self.e_machine == EM_X86_64 && self.class == 2
    }
}

/// The program headers of a file.
pub struct Phdrs {
    n: usize,
    p: [Phdr; MAX_PHDRS],
}

impl Phdrs {
    fn iter(&self) -> impl Iterator<Item = &Phdr> {
        self.p[..self.n].iter()
    }

    fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.iter().filter(|p| p.p_type == PT_LOAD)
    }

    /// `total_mapping_size`: from the first `PT_LOAD`'s page to the end of the last.
    fn total_mapping_size(&self) -> u64 {
        let min = self.loads().map(|p| p.p_vaddr & PAGE_MASK as u64).min();
        let max = self.loads().map(|p| p.p_vaddr.wrapping_add(p.p_memsz)).max();
        match (min, max) {
            (Some(a), Some(b)) => b.wrapping_sub(a),
            _ => 0,
        }
    }

    /// `maximum_alignment`: the largest power-of-two `p_align`, at least a page.
    fn maximum_alignment(&self) -> u64 {
        let a = self.loads().map(|p| p.p_align).filter(|a| a.is_power_of_two()).max().unwrap_or(0);
        page_align(a)
    }
}

fn page_align(x: u64) -> u64 {
    x.wrapping_add(PAGE_SIZE as u64 - 1) & PAGE_MASK as u64
}
fn pageoff(x: u64) -> u64 {
    x & (PAGE_SIZE as u64 - 1)
}
fn pagestart(x: u64) -> u64 {
    x & PAGE_MASK as u64
}

/// `elf_read`: all of `buf` from `pos`, or `EIO`.
fn elf_read(st: &mut State, inode: InodePtr, buf: &mut [u8], pos: u64) -> Result<(), Errno> {
    match crate::file::kernel_read(st, inode, buf, pos) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) => Err(Errno(libc::EIO)),
        Err(e) => Err(e),
    }
}

/// `load_elf_phdrs`: `None` where Linux's returns NULL.
fn load_elf_phdrs(st: &mut State, inode: InodePtr, eh: &Ehdr) -> Option<Phdrs> {
    if eh.e_phentsize as usize != PHDR_SIZE {
        return None;
    }
    let size = PHDR_SIZE * eh.e_phnum as usize;
    if size == 0 || size > 65536 || size > PAGE_SIZE {
        return None;
    }
    let mut raw = [0u8; PAGE_SIZE];
    elf_read(st, inode, &mut raw[..size], eh.e_phoff).ok()?;
    let mut out = Phdrs { n: eh.e_phnum as usize, p: [Phdr::default(); MAX_PHDRS] };
    for (i, p) in out.p.iter_mut().take(out.n).enumerate() {
        let b = &raw[i * PHDR_SIZE..(i + 1) * PHDR_SIZE];
        *p = Phdr {
            p_type: le(b, 0, 4) as u32,
            p_flags: le(b, 4, 4) as u32,
            p_offset: le(b, 8, 8),
            p_vaddr: le(b, 16, 8),
            p_filesz: le(b, 32, 8),
            p_memsz: le(b, 40, 8),
            p_align: le(b, 48, 8),
        };
    }
    Some(out)
}

fn make_prot(flags: u32) -> i32 {
    let mut prot = 0;
    if flags & PF_R != 0 {
        prot |= libc::PROT_READ;
    }
    if flags & PF_W != 0 {
        prot |= libc::PROT_WRITE;
    }
    if flags & PF_X != 0 {
        prot |= libc::PROT_EXEC;
    }
    prot
}

/// A program and its interpreter, checked and ready to be laid out.
pub(crate) struct Binary {
    pub ehdr: Ehdr,
    pub phdrs: Phdrs,
    pub interp: Option<(InodePtr, Ehdr, Phdrs)>,
    pub exec_stack: bool,
}

/// Everything `load_elf_binary` checks before its point of no return, and what this
/// simulation checks there too (see the module comment). Takes a reference to the
/// interpreter's inode, which `Binary::release` (or the exec) drops.
pub(crate) fn check_binary(
    st: &mut State,
    inode: InodePtr,
    buf: &[u8; BINPRM_BUF_SIZE],
) -> Result<Binary, Errno> {
    let ehdr = Ehdr::parse(buf);
    if !ehdr.magic_ok || (ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN) || !ehdr.arch_ok() {
        return Err(Errno(libc::ENOEXEC));
    }
    let phdrs = load_elf_phdrs(st, inode, &ehdr).ok_or(Errno(libc::ENOEXEC))?;
    let mut interp = None;
    if let Some(pi) = phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        if pi.p_filesz > PATH_MAX || pi.p_filesz < 2 {
            return Err(Errno(libc::ENOEXEC));
        }
        let mut path = [0u8; PATH_MAX as usize];
        let path = &mut path[..pi.p_filesz as usize];
        elf_read(st, inode, path, pi.p_offset)?;
        let Ok(cpath) = CStr::from_bytes_with_nul(path) else {
            return Err(Errno(libc::ENOEXEC));
        };
        let ii = crate::file::open_exec(st, cpath)?;
        let checked = (|| {
            let mut ib = [0u8; BINPRM_BUF_SIZE];
            elf_read(st, ii, &mut ib[..64], 0)?;
            let ie = Ehdr::parse(&ib);
            if !ie.magic_ok || !ie.arch_ok() {
                return Err(Errno(libc::ELIBBAD));
            }
            let ip = load_elf_phdrs(st, ii, &ie).ok_or(Errno(libc::ELIBBAD))?;
            if ie.e_type != ET_EXEC && ie.e_type != ET_DYN {
                return Err(Errno::EINVAL);
            }
            check_loads(st, &ip)?;
            Ok((ie, ip))
        })();
        match checked {
            Ok((ie, ip)) => interp = Some((ii, ie, ip)),
            Err(e) => {
                // SAFETY: the reference open_exec took, not used again.
                unsafe { crate::file::put_exec_inode(st, ii) };
                return Err(e);
            }
        }
    }
    let exec_stack = phdrs.iter().find(|p| p.p_type == PT_GNU_STACK).is_some_and(|p| p.p_flags & PF_X != 0);
    let b = Binary { ehdr, phdrs, interp, exec_stack };
    if let Err(e) = check_loads(st, &b.phdrs) {
        // SAFETY: nothing of `b` is used again.
        unsafe { b.release(st) };
        return Err(e);
    }
    Ok(b)
}

/// The checks Linux makes while mapping, made before anything is mapped.
fn check_loads(st: &State, ph: &Phdrs) -> Result<(), Errno> {
    let user = (st.mm.task_size - st.host.base()) as u64;
    if ph.total_mapping_size() == 0 {
        return Err(Errno::EINVAL);
    }
    for p in ph.loads() {
        if p.p_filesz > p.p_memsz || p.p_memsz > user || user - p.p_memsz < p.p_vaddr {
            return Err(Errno::EINVAL);
        }
        if pageoff(p.p_offset) != pageoff(p.p_vaddr) {
            return Err(Errno::EINVAL);
        }
    }
    Ok(())
}

impl Binary {
    /// Drop the interpreter's reference.
    ///
    /// # Safety
    /// The free rule (see `kptr`) for the interpreter's inode.
    pub(crate) unsafe fn release(self, st: &mut State) {
        if let Some((ii, _, _)) = self.interp {
            // SAFETY: the caller's promise.
            unsafe { crate::file::put_exec_inode(st, ii) };
        }
    }
}

/// `elf_map`: the segment's file pages at `addr` (the first with the whole image's size,
/// the rest of it unmapped again).
fn elf_map(
    st: &mut State,
    file: File,
    addr: u64,
    p: &Phdr,
    prot: i32,
    flags: i32,
    total: u64,
) -> Result<u64, Errno> {
    let size = page_align(p.p_filesz + pageoff(p.p_vaddr));
    let off = p.p_offset - pageoff(p.p_vaddr);
    let addr = pagestart(addr);
    if size == 0 {
        return Ok(addr);
    }
    let len = if total != 0 { page_align(total) } else { size };
    // SAFETY: the new image's own mappings: MAP_FIXED only over parts of it this exec laid
    // out, nothing of which anyone refers to yet.
    let map = unsafe {
        crate::mmap::do_mmap(st, Some(file), addr as usize, len as usize, prot, flags, (off >> 12) as usize)
    }? as u64;
    if total != 0 && len > size {
        let (mm, mut env) = st.vma_env();
        // SAFETY: as above: the part of the reservation beyond the segment.
        unsafe { crate::vma::do_munmap(mm, &mut env, (map + size) as usize, (len - size) as usize) }?;
    }
    Ok(map)
}

/// Zero the rest of the page after `addr` (`padzero`).
fn padzero(st: &mut State, addr: u64) -> Result<(), Errno> {
    let n = pageoff(addr);
    if n == 0 {
        return Ok(());
    }
    clear_user(st, addr as usize, PAGE_SIZE - n as usize)
}

/// Anonymous pages `[addr, addr + len)` for a bss (`vm_brk_flags`).
fn vm_brk_flags(st: &mut State, addr: u64, len: u64, exec: bool) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let (mm, mut env) = st.vma_env();
    // SAFETY: the new image's own range, which nothing refers to yet.
    unsafe { crate::vma::do_munmap(mm, &mut env, addr as usize, len as usize) }?;
    let prev = mm.find_vma_prev(addr as usize).1;
    let extra = if exec { crate::mm::VM_EXEC } else { 0 };
    crate::vma::do_brk_flags(mm, &mut env, prev, addr as usize, len as usize, extra)
}

/// `elf_load`: a segment's file pages, its zeroed tail and its bss.
fn elf_load(
    st: &mut State,
    file: File,
    addr: u64,
    p: &Phdr,
    prot: i32,
    flags: i32,
    total: u64,
) -> Result<u64, Errno> {
    let (map, zero_start, zero_end);
    if p.p_filesz != 0 {
        map = elf_map(st, file, addr, p, prot, flags, total)?;
        zero_start = map + pageoff(p.p_vaddr) + p.p_filesz;
        zero_end = map + pageoff(p.p_vaddr) + p.p_memsz;
        if p.p_memsz > p.p_filesz && padzero(st, zero_start).is_err() && prot & libc::PROT_WRITE != 0 {
            return Err(Errno::EFAULT);
        }
    } else {
        map = pagestart(addr);
        zero_start = map;
        zero_end = zero_start + pageoff(p.p_vaddr) + p.p_memsz;
    }
    if p.p_memsz > p.p_filesz {
        let (zs, ze) = (page_align(zero_start), page_align(zero_end));
        vm_brk_flags(st, zs, ze - zs, prot & libc::PROT_EXEC != 0)?;
    }
    Ok(map)
}

/// `load_elf_interp`: returns the interpreter's load address.
fn load_elf_interp(
    st: &mut State,
    inode: InodePtr,
    eh: &Ehdr,
    ph: &Phdrs,
    no_base: u64,
) -> Result<u64, Errno> {
    let file = File { inode, f_mode: FMODE_READ, f_flags: libc::O_RDONLY };
    let mut total = ph.total_mapping_size();
    let base = st.host.base() as u64;
    let mut load_addr: u64 = if eh.e_type == ET_EXEC { base } else { 0 };
    let mut set = false;
    for p in ph.loads() {
        let mut flags = libc::MAP_PRIVATE;
        let vaddr = p.p_vaddr;
        if eh.e_type == ET_EXEC || set {
            flags |= libc::MAP_FIXED;
        } else if no_base != 0 && eh.e_type == ET_DYN {
            load_addr = vaddr.wrapping_neg();
        }
        let map = elf_load(st, file, load_addr.wrapping_add(vaddr), p, make_prot(p.p_flags), flags, total)?;
        total = 0;
        if !set && eh.e_type == ET_DYN {
            load_addr = map.wrapping_sub(pagestart(vaddr));
            set = true;
        }
    }
    Ok(load_addr)
}

/// What `load_elf_binary` leaves for the views and the caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecImage {
    /// Where the program starts (the interpreter's entry if it has one).
    pub entry: usize,
    /// The program's own entry (`AT_ENTRY`).
    pub e_entry: usize,
    pub load_bias: usize,
    /// The interpreter's load address (`AT_BASE`), 0 without one.
    pub interp_base: usize,
    pub vdso: usize,
    /// The stack pointer at the entry point (where `argc` is).
    pub sp: usize,
}

/// `ELF_ET_DYN_BASE`: two thirds of the user range.
fn elf_et_dyn_base(st: &State) -> u64 {
    let base = st.host.base() as u64;
    base + (st.mm.task_size as u64 - base) / 3 * 2
}

/// Lay out `b` (checked by `check_binary`) from `inode`, after the old image is gone and
/// the stack holds the strings: the part of `load_elf_binary` after `setup_arg_pages`.
pub(crate) fn load_elf_binary(
    st: &mut State,
    inode: InodePtr,
    b: &Binary,
    s: &Strings,
    bprm_p: usize,
    bprm_exec: usize,
) -> Result<ExecImage, Errno> {
    let file = File { inode, f_mode: FMODE_READ, f_flags: libc::O_RDONLY };
    let eh = &b.ehdr;
    let base = st.host.base() as u64;
    let mut load_bias: u64 = if eh.e_type == ET_EXEC { base } else { 0 };
    let mut first = true;
    let (mut start_code, mut end_code, mut start_data, mut end_data, mut elf_brk) =
        (u64::MAX, 0u64, 0u64, 0u64, 0u64);
    let mut phdr_addr = 0u64;
    for p in b.phdrs.loads() {
        let prot = make_prot(p.p_flags);
        let mut flags = libc::MAP_PRIVATE;
        let vaddr = p.p_vaddr;
        let mut total = 0;
        if !first {
            flags |= libc::MAP_FIXED;
        } else if eh.e_type == ET_EXEC {
            flags |= crate::mmap::MAP_FIXED_NOREPLACE;
        } else {
            total = b.phdrs.total_mapping_size();
            let alignment = b.phdrs.maximum_alignment();
            if b.interp.is_some() {
                load_bias = elf_et_dyn_base(st);
                if alignment != 0 {
                    load_bias &= !(alignment - 1);
                }
                flags |= crate::mmap::MAP_FIXED_NOREPLACE;
            } else if alignment > PAGE_SIZE as u64 {
                load_bias = elf_load(st, file, 0, p, prot, flags, total)?;
                let (mm, mut env) = st.vma_env();
                // SAFETY: the reservation just made, which nothing refers to.
                unsafe {
                    crate::vma::do_munmap(mm, &mut env, load_bias as usize, page_align(total) as usize)
                }?;
                load_bias &= !(alignment - 1);
                flags |= crate::mmap::MAP_FIXED_NOREPLACE;
            } else {
                load_bias = 0;
            }
            load_bias = pagestart(load_bias.wrapping_sub(vaddr));
        }
        let map = elf_load(st, file, load_bias.wrapping_add(vaddr), p, prot, flags, total)?;
        if first {
            first = false;
            if eh.e_type == ET_DYN {
                load_bias =
                    load_bias.wrapping_add(map.wrapping_sub(pagestart(load_bias.wrapping_add(vaddr))));
            }
        }
        if p.p_offset <= eh.e_phoff && eh.e_phoff < p.p_offset + p.p_filesz {
            phdr_addr = eh.e_phoff - p.p_offset + p.p_vaddr;
        }
        let k = p.p_vaddr;
        if p.p_flags & PF_X != 0 && k < start_code {
            start_code = k;
        }
        start_data = start_data.max(k);
        let k = p.p_vaddr + p.p_filesz;
        if p.p_flags & PF_X != 0 && end_code < k {
            end_code = k;
        }
        end_data = end_data.max(k);
        elf_brk = elf_brk.max(p.p_vaddr + p.p_memsz);
    }
    let e_entry = eh.e_entry.wrapping_add(load_bias);
    let phdr_addr = phdr_addr.wrapping_add(load_bias);
    let mut elf_brk = elf_brk.wrapping_add(load_bias);
    let (start_code, end_code) = (start_code.wrapping_add(load_bias), end_code.wrapping_add(load_bias));
    let (start_data, end_data) = (start_data.wrapping_add(load_bias), end_data.wrapping_add(load_bias));
    let mut loaded =
        ExecImage { e_entry: e_entry as usize, load_bias: load_bias as usize, ..ExecImage::default() };
    match &b.interp {
        Some((ii, ie, ip)) => {
            let load_addr = load_elf_interp(st, *ii, ie, ip, load_bias)?;
            loaded.interp_base = load_addr as usize;
            loaded.entry = load_addr.wrapping_add(ie.e_entry) as usize;
        }
        None => loaded.entry = e_entry as usize,
    }
    loaded.vdso = crate::vdso::map_vdso(st)?;
    let at = AuxInfo {
        phdr: phdr_addr,
        phnum: eh.e_phnum as u64,
        base: loaded.interp_base as u64,
        entry: e_entry,
        vdso: loaded.vdso as u64,
        execfn: bprm_exec as u64,
    };
    loaded.sp = create_elf_tables(st, s, bprm_p, &at)?;
    let mm = &mut st.mm;
    mm.start_code = start_code as usize;
    mm.end_code = end_code as usize;
    mm.start_data = start_data as usize;
    mm.end_data = end_data as usize;
    mm.start_stack = loaded.sp;
    if eh.e_type == ET_DYN && b.interp.is_none() {
        // A loader run directly: its brk goes where a PIE would have been.
        elf_brk = elf_et_dyn_base(st);
    }
    let brk = page_align(elf_brk) as usize;
    st.mm.start_brk = brk;
    st.mm.brk = brk;
    Ok(loaded)
}

struct AuxInfo {
    phdr: u64,
    phnum: u64,
    base: u64,
    entry: u64,
    vdso: u64,
    execfn: u64,
}

/// A value of the host's own auxiliary vector, for what describes the CPU and the kernel
/// build (the simulated machine's CPU is the host's).
fn host_aux(t: u64, default: u64) -> u64 {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    let v = unsafe { libc::getauxval(t) };
    if v == 0 {
        default
    } else {
        v
    }
}

/// `create_elf_tables`: the stack below the strings at `p`; returns the stack pointer.
fn create_elf_tables(st: &mut State, s: &Strings, p: usize, a: &AuxInfo) -> Result<usize, Errno> {
    let mut p = p & !0xf;
    p -= PLATFORM.len();
    let u_platform = p;
    copy_to_user(st, u_platform, PLATFORM)?;
    let mut rand = [0u8; 16];
    // SAFETY: filling a local buffer; getrandom does not allocate.
    unsafe { libc::getrandom(rand.as_mut_ptr().cast(), rand.len(), 0) };
    p -= rand.len();
    let u_rand = p;
    copy_to_user(st, u_rand, &rand)?;
    // SAFETY: plain system calls reading the caller's credentials.
    let (uid, euid, gid, egid) =
        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    let aux: [(u64, u64); 23] = [
        (AT_SYSINFO_EHDR, a.vdso),
        (AT_MINSIGSTKSZ, host_aux(AT_MINSIGSTKSZ, 0xd30)),
        (AT_HWCAP, host_aux(AT_HWCAP, 0)),
        (AT_PAGESZ, PAGE_SIZE as u64),
        (AT_CLKTCK, 100),
        (AT_PHDR, a.phdr),
        (AT_PHENT, PHDR_SIZE as u64),
        (AT_PHNUM, a.phnum),
        (AT_BASE, a.base),
        (AT_FLAGS, 0),
        (AT_ENTRY, a.entry),
        (AT_UID, uid as u64),
        (AT_EUID, euid as u64),
        (AT_GID, gid as u64),
        (AT_EGID, egid as u64),
        (AT_SECURE, 0),
        (AT_RANDOM, u_rand as u64),
        (AT_HWCAP2, host_aux(AT_HWCAP2, 0)),
        (AT_EXECFN, a.execfn),
        (AT_PLATFORM, u_platform as u64),
        (AT_RSEQ_FEATURE_SIZE, host_aux(AT_RSEQ_FEATURE_SIZE, 28)),
        (AT_RSEQ_ALIGN, host_aux(AT_RSEQ_ALIGN, 32)),
        (AT_NULL, 0),
    ];
    let ei_index = aux.len() * 2;
    let argc = s.argc();
    let items = (argc + 1) + (s.envp.len() + 1) + 1;
    let sp = (p - ei_index * 8 - items * 8) & !15;
    // argc, the argv pointers, the envp pointers, then the vector.
    let mut at = sp;
    let mut write = |st: &mut State, v: u64| -> Result<(), Errno> {
        copy_to_user(st, at, &v.to_le_bytes())?;
        at += 8;
        Ok(())
    };
    write(st, argc as u64)?;
    let mut str_at = st.mm.arg_start;
    for i in 0..argc {
        write(st, str_at as u64)?;
        str_at += s.argv.get(i).map_or(1, |a| a.to_bytes_with_nul().len());
    }
    write(st, 0)?;
    st.mm.arg_end = str_at;
    st.mm.env_start = str_at;
    for e in s.envp {
        write(st, str_at as u64)?;
        str_at += e.to_bytes_with_nul().len();
    }
    write(st, 0)?;
    st.mm.env_end = str_at;
    for (t, v) in aux {
        write(st, t)?;
        write(st, v)?;
    }
    let saved = &mut st.mm.saved_auxv;
    for (i, (t, v)) in aux.iter().enumerate() {
        saved.words[2 * i] = *t;
        saved.words[2 * i + 1] = *v;
    }
    saved.len = ei_index;
    Ok(sp)
}
