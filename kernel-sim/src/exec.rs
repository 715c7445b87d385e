//! `execve` (Linux's `fs/exec.c`): the binary's parameters (`linux_binprm`), the argument
//! and environment strings copied to the top of a new stack, the old address space torn
//! down, and the stack moved into place and grown (`setup_arg_pages`). The ELF format's
//! part — mapping the program and its interpreter, the tables on the stack — is
//! `binfmt_elf`; the vDSO is `vdso`.
//!
//! The point of no return is where Linux's is (`begin_new_exec`): everything that can be
//! refused — the file, its headers, the interpreter's, the size of the arguments — is
//! checked before the old image goes, so a refused exec changes nothing. Randomisation is
//! off (`ADDR_NO_RANDOMIZE`): the stack top is `TASK_SIZE`, no random stack or brk offset.

use core::ffi::CStr;

use crate::machine::State;
use crate::mm::{VmFlags, VM_EXEC, VM_STACK_FLAGS};
use crate::page::{PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::Errno;

/// `MAX_ARG_STRLEN`: the longest single argument or environment string.
pub const MAX_ARG_STRLEN: usize = 32 * PAGE_SIZE;
/// `_STK_LIM`: the default stack limit, of which at most three quarters hold arguments.
const STK_LIM: usize = 8 << 20;
/// `ARG_MAX`: what arguments may always use, whatever the stack limit.
const ARG_MAX: usize = 32 * PAGE_SIZE;
/// How much `setup_arg_pages` grows the stack below the strings (`stack_expand`).
pub const STACK_EXPAND: usize = 128 << 10;

/// The strings of an exec, from the caller (`bprm->argc`, `envc`, the strings).
pub struct Strings<'a> {
    pub filename: &'a CStr,
    pub argv: &'a [&'a CStr],
    pub envp: &'a [&'a CStr],
}

impl Strings<'_> {
    /// argv as the kernel copies it: an empty one becomes one empty string (since 5.18).
    pub fn argc(&self) -> usize {
        self.argv.len().max(1)
    }

    fn arg(&self, i: usize) -> &[u8] {
        self.argv.get(i).map_or(b"\0", |s| s.to_bytes_with_nul())
    }

    /// Bytes of the strings as copied: the file name, the environment, the arguments.
    fn bytes(&self) -> usize {
        let env: usize = self.envp.iter().map(|s| s.to_bytes_with_nul().len()).sum();
        let args: usize = (0..self.argc()).map(|i| self.arg(i).len()).sum();
        self.filename.to_bytes_with_nul().len() + env + args
    }

    /// `bprm_stack_limits` and `copy_strings`' checks: `E2BIG` if they do not fit.
    pub fn check(&self, rlim_stack: u64) -> Result<(), Errno> {
        let too_long = |s: &[u8]| s.len() > MAX_ARG_STRLEN;
        if self.envp.iter().any(|s| too_long(s.to_bytes_with_nul()))
            || (0..self.argc()).any(|i| too_long(self.arg(i)))
        {
            return Err(Errno(libc::E2BIG));
        }
        let limit = (STK_LIM / 4 * 3).min((rlim_stack.min(usize::MAX as u64) as usize) / 4).max(ARG_MAX);
        let ptr_size = (self.argv.len().max(1) + self.envp.len()) * 8;
        if limit <= ptr_size || self.bytes() > limit - ptr_size {
            return Err(Errno(libc::E2BIG));
        }
        Ok(())
    }
}

/// Write `bytes` at user address `addr` of the process, faulting its pages in for writing
/// as `copy_to_user` would, through the frames: user memory itself is never touched.
pub(crate) fn copy_to_user(st: &mut State, addr: usize, bytes: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < bytes.len() {
        let a = addr + done;
        let off = a & (PAGE_SIZE - 1);
        let n = (PAGE_SIZE - off).min(bytes.len() - done);
        let pfn = user_frame(st, a)?;
        // SAFETY: `n` bytes at `off` lie inside frame `pfn`, the process's own writable page
        // at `a` (just faulted in for writing); the bytes are the kernel's.
        unsafe { core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), st.phys.frame(pfn).add(off), n) };
        done += n;
    }
    Ok(())
}

/// Zero `len` bytes at user address `addr` (`clear_user`).
pub(crate) fn clear_user(st: &mut State, addr: usize, len: usize) -> Result<(), Errno> {
    let mut done = 0;
    while done < len {
        let a = addr + done;
        let off = a & (PAGE_SIZE - 1);
        let n = (PAGE_SIZE - off).min(len - done);
        let pfn = user_frame(st, a)?;
        // SAFETY: as in `copy_to_user`.
        unsafe { core::ptr::write_bytes(st.phys.frame(pfn).add(off), 0, n) };
        done += n;
    }
    Ok(())
}

/// The frame behind user page `addr`, faulted in for writing.
fn user_frame(st: &mut State, addr: usize) -> Result<usize, Errno> {
    crate::fault::fault_in(st, addr, true).map_err(|_| Errno::EFAULT)?;
    let e = crate::page_table::pte_lookup(&st.phys, st.mm.pgd, addr).map_or(0, |s| s.get());
    if !crate::page_table::pte_present(e) || !crate::page_table::pte_write(e) {
        return Err(Errno::EFAULT);
    }
    Ok(crate::page_table::pte_pfn(e))
}

/// Tear the old image down (`exec_mmap` with `exit_mmap`): every VMA, page and page table
/// goes, the address space's layout fields start over, and descriptors opened with
/// `O_CLOEXEC` are closed.
///
/// # Safety
/// The range rule (see `Machine`) for the whole user range, and the free rule (see `kptr`)
/// for every VMA, anon_vma, inode and page table of the old image.
pub(crate) unsafe fn exec_mmap(st: &mut State) {
    let (base, end) = (st.host.base(), st.mm.task_size);
    // The old mm is no longer the one loaded: its teardown counts no flush (lazy TLB).
    st.phys.tlb_lazy = true;
    let (mm, mut env) = st.vma_env();
    // SAFETY: the caller's promises.
    if unsafe { crate::vma::do_munmap(mm, &mut env, base, end - base) }.is_err() {
        crate::util::bug("exec: the old image could not be unmapped", base, end);
    }
    st.phys.tlb_lazy = false;
    crate::file::close_on_exec(st);
    // What the new image starts with: the (now empty) tables and the address space's
    // geometry and limits; every layout field and counter starts over.
    let old = core::mem::replace(&mut st.mm, crate::mm::Mm::empty());
    st.mm = crate::mm::Mm {
        vmas: old.vmas,
        pgd: old.pgd,
        pgtables_bytes: old.pgtables_bytes,
        task_size: old.task_size,
        mmap_min_addr: old.mmap_min_addr,
        mmap_base: old.mmap_base,
        mmap_legacy_base: old.mmap_legacy_base,
        rlimits: old.rlimits,
        min_flt: old.min_flt,
        maj_flt: old.maj_flt,
        next_anon_vma_id: old.next_anon_vma_id,
        exec_image: true,
        // A new mm for the CPUs (`exec_mmap` → `activate_mm`): a fresh context loaded here;
        // the old one's entries are never matched again.
        context: st.phys.cpus.init_new_context(),
        ..crate::mm::Mm::empty()
    };
    st.phys.cpus.drop_context(old.context.ctx_id);
    let cpu = st.phys.cpus.this_cpu;
    st.phys.cpus.switch_mm(cpu, &mut st.mm.context);
}

/// Make the stack at `stack_top` and copy the strings to its top, as `bprm_mm_init`,
/// `copy_strings` and `setup_arg_pages` leave it: `[filename][envp strings][argv strings]`
/// below a null word at the top, the VMA covering them grown by `STACK_EXPAND` (within
/// the stack rlimit). Returns `bprm->p`, the lowest string's address, and sets
/// `arg_start`; also returns where the file name is (`bprm->exec`).
pub(crate) fn setup_arg_pages(
    st: &mut State,
    s: &Strings,
    stack_top: usize,
    exec_stack: bool,
) -> Result<(usize, usize), Errno> {
    let mut p = stack_top - 8;
    let name = s.filename.to_bytes_with_nul();
    p -= name.len();
    let exec = p;
    for e in s.envp.iter().rev() {
        p -= e.to_bytes_with_nul().len();
    }
    for i in (0..s.argc()).rev() {
        p -= s.arg(i).len();
    }
    let vm_start = p & PAGE_MASK;
    let stack_size = stack_top - vm_start;
    let rlim = (st.mm.rlimits.stack.min(usize::MAX as u64) as usize) & PAGE_MASK;
    let stack_base =
        if stack_size + STACK_EXPAND > rlim { stack_top - rlim } else { vm_start - STACK_EXPAND };
    let start = stack_base.min(vm_start);
    let flags: VmFlags = VM_STACK_FLAGS | if exec_stack { VM_EXEC } else { 0 };
    let pages = (stack_top - start) >> PAGE_SHIFT;
    {
        let (mm, mut env) = st.vma_env();
        let ram = env.phys.totalram_pages();
        env.sys.vm_enough_memory(pages, ram, mm.total_vm)?;
        let v = match crate::vma::vm_area_alloc(&mut env) {
            Ok(v) => v,
            Err(e) => {
                env.sys.vm_unacct_memory(pages);
                return Err(e);
            }
        };
        v.vm_start.set(start);
        v.vm_end.set(stack_top);
        v.vm_flags.set(flags | crate::mm::VM_SOFTDIRTY);
        v.vm_pgoff.set(start >> PAGE_SHIFT);
        crate::vma::vma_link(mm, v);
        mm.vm_stat_account(flags, pages as isize);
    }
    st.mm.start_stack = p;
    st.mm.arg_start = p;
    // Copy: the arguments lowest, then the environment, then the file name.
    let mut at = p;
    for i in 0..s.argc() {
        let a = s.arg(i);
        copy_to_user(st, at, a)?;
        at += a.len();
    }
    for e in s.envp {
        let b = e.to_bytes_with_nul();
        copy_to_user(st, at, b)?;
        at += b.len();
    }
    copy_to_user(st, at, name)?;
    copy_to_user(st, stack_top - 8, &[0u8; 8])?;
    Ok((p, exec))
}

/// `execve(2)` of an ELF program of the host (`do_execveat_common` → `bprm_execve`).
///
/// # Safety
/// When it succeeds or fails after its point of no return (see the module comment), the
/// range rule (see `Machine`) for the whole user range and the free rule (see `kptr`) for
/// everything of the old image.
pub(crate) unsafe fn sys_execve(
    st: &mut State,
    path: &CStr,
    argv: &[&CStr],
    envp: &[&CStr],
) -> Result<crate::binfmt_elf::ExecImage, Errno> {
    use crate::binfmt_elf::{check_binary, load_elf_binary, BINPRM_BUF_SIZE};
    // The strings are read after the old image is gone: ones in the user range (memory of
    // that image) would be gone too. Linux copies them first; here they must be elsewhere.
    let in_user = |c: &CStr| {
        let (a, n) = (c.as_ptr() as usize, c.to_bytes_with_nul().len());
        a < st.host.end() && a + n > st.host.base()
    };
    if in_user(path) || argv.iter().any(|c| in_user(c)) || envp.iter().any(|c| in_user(c)) {
        return Err(Errno::EFAULT);
    }
    let s = Strings { filename: path, argv, envp };
    let inode = crate::file::open_exec(st, path)?;
    let checked = (|| {
        s.check(st.mm.rlimits.stack)?;
        let mut buf = [0u8; BINPRM_BUF_SIZE];
        crate::file::kernel_read(st, inode, &mut buf, 0)?;
        check_binary(st, inode, &buf)
    })();
    let b = match checked {
        Ok(b) => b,
        Err(e) => {
            // SAFETY: the reference open_exec took, not used again.
            unsafe { crate::file::put_exec_inode(st, inode) };
            return Err(e);
        }
    };
    // The point of no return.
    // SAFETY: the caller's promises.
    unsafe { exec_mmap(st) };
    let top = st.mm.task_size;
    let r = setup_arg_pages(st, &s, top, b.exec_stack)
        .and_then(|(p, exec)| load_elf_binary(st, inode, &b, &s, p, exec));
    let name = path.to_bytes();
    let base = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
    let comm = &mut st.mm.saved_auxv.comm;
    let n = base.len().min(comm.len() - 1);
    comm[..n].copy_from_slice(&base[..n]);
    // SAFETY: the interpreter's and the program's exec references; the new image's VMAs
    // hold their own.
    unsafe {
        b.release(st);
        crate::file::put_exec_inode(st, inode);
    }
    r
}
