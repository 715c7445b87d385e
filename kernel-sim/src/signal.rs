//! The page-fault entry: a `SIGSEGV` handler that turns host faults in a machine's user
//! range into simulated page faults, and delivers the simulated kernel's verdict.
//!
//! Installed once (with `SA_SIGINFO | SA_ONSTACK`, so it also runs on the alternate stack
//! Rust gives each thread) when the first machine boots. For a fault in a registered
//! machine's range it takes the machine lock and calls `handle_user_fault`. Everything on
//! this path is async-signal-safe: no allocation, a futex lock, raw system calls, `errno`
//! saved and restored. `SA_NODEFER` is deliberately not set: a fault inside the handler
//! itself is a simulator bug, and with `SIGSEGV` blocked the host kernel kills the process
//! at once instead of recursing.
//!
//! Outcomes:
//! - resolved: return, and the access retries against the new host mapping;
//! - `SIGSEGV` (`SEGV_MAPERR` outside any VMA, `SEGV_ACCERR` against the VMA's protection):
//!   print a line like the kernel's `segfault at` message, then deliver the signal to the
//!   handler that was installed before ours (Rust's stack-overflow handler, or the
//!   program's own) or, if that was `SIG_DFL`/`SIG_IGN`, reset `SIGSEGV` to `SIG_DFL` and
//!   return: the access faults again and the process dies of `SIGSEGV` like a real one;
//! - `SIGBUS` (`BUS_ADRERR`, a shared mapping beyond its object): the same with `SIGBUS`;
//! - out of memory: the OOM killer's message on stderr, then `SIGKILL` to the process, as
//!   Linux's OOM killer would do to the only process there is.
//!
//! Faults outside every machine are passed on to the previous handler the same way
//! (`SIG_DFL` reset and retried, or re-raised if the signal was sent by a process).

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use crate::fault::{Access, FaultError, SEGV_MAPERR};
use crate::machine::Machine;
use ptalloc::{errno, set_errno};

use crate::util::StackWriter;

pub const MAX_MACHINES: usize = 64;

#[allow(clippy::declare_interior_mutable_const)]
const NO_MACHINE: AtomicPtr<Machine> = AtomicPtr::new(core::ptr::null_mut());
static MACHINES: [AtomicPtr<Machine>; MAX_MACHINES] = [NO_MACHINE; MAX_MACHINES];

const NOT_INSTALLED: u8 = 0;
const INSTALLING: u8 = 1;
const INSTALLED: u8 = 2;
static HANDLER_STATE: AtomicU8 = AtomicU8::new(NOT_INSTALLED);

/// The `SIGSEGV` disposition found when ours was installed; written once before ours is.
struct OldAction(UnsafeCell<core::mem::MaybeUninit<libc::sigaction>>);
// SAFETY: written once by the installing thread before the handler that reads it exists.
unsafe impl Sync for OldAction {}
static OLD_SEGV: OldAction = OldAction(UnsafeCell::new(core::mem::MaybeUninit::zeroed()));

/// Find a free registry slot for `m` (installing the handler first).
pub(crate) fn register(m: &'static Machine) -> Option<usize> {
    install_handler();
    for (i, slot) in MACHINES.iter().enumerate() {
        let p = m as *const Machine as *mut Machine;
        if slot.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Some(i);
        }
    }
    None
}

pub(crate) fn unregister(slot: usize) {
    MACHINES[slot].store(core::ptr::null_mut(), Ordering::Release);
}

fn find_machine(addr: usize) -> Option<&'static Machine> {
    for slot in &MACHINES {
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: registered machines stay alive until unregistered.
            let m = unsafe { &*p };
            if m.contains(addr) {
                return Some(m);
            }
        }
    }
    None
}

fn install_handler() {
    loop {
        match HANDLER_STATE.compare_exchange(NOT_INSTALLED, INSTALLING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(INSTALLED) => return,
            Err(_) => core::hint::spin_loop(),
        }
    }
    // SAFETY: reading the current disposition into our static before anyone can read it,
    // then installing ours. sigaction is async-signal-safe and does not allocate.
    unsafe {
        libc::sigaction(libc::SIGSEGV, core::ptr::null(), (*OLD_SEGV.0.get()).as_mut_ptr());
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = segv_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, core::ptr::null_mut());
        // The TLB shootdown's IPI (`tlb`): restarting what it interrupts, never blocked by
        // the fault handler (whose mask is empty), so a process waiting for the machine
        // lock in it still answers the holder's request.
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = tlb_handler as *const () as usize;
        sa.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(crate::tlb::tlb_signal(), &sa, core::ptr::null_mut());
    }
    HANDLER_STATE.store(INSTALLED, Ordering::Release);
}

/// The hardware error code, instruction and stack pointer of the faulting context.
///
/// # Safety
/// `ctx` is null or the `ucontext_t` of the signal being handled.
unsafe fn fault_regs(ctx: *mut libc::c_void) -> (usize, usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if ctx.is_null() {
            return (0, 0, 0);
        }
        // SAFETY: the caller's promise; the kernel keeps the context alive while the
        // handler runs.
        let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
        let g = &uc.uc_mcontext.gregs;
        (
            g[libc::REG_ERR as usize] as usize,
            g[libc::REG_RIP as usize] as usize,
            g[libc::REG_RSP as usize] as usize,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // Without the error code every fault is taken as a write.
        let _ = ctx;
        (2, 0, 0)
    }
}

/// # Safety
/// Called by the kernel as an `SA_SIGINFO` handler: `info` and `ctx` are the signal's
/// `siginfo_t` and `ucontext_t`.
unsafe extern "C" fn segv_handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let saved = errno();
    // SAFETY: `info` is the signal's siginfo_t (this function's contract).
    let (addr, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
    if code > 0 {
        if let Some(m) = find_machine(addr) {
            // SAFETY: `ctx` is the signal's context.
            let (err, ip, sp) = unsafe { fault_regs(ctx) };
            if m.mmap_lock().held_by_me() {
                kernel_fault(addr, ip);
            }
            let access = Access { write: err & 2 != 0, exec: err & 16 != 0 };
            let r = {
                let mut st = m.lock();
                crate::fault::handle_user_fault(&mut st, addr, access)
            };
            match r {
                Ok(()) => {}
                Err(FaultError::Segv(c)) => {
                    report(
                        "segfault",
                        addr,
                        ip,
                        sp,
                        err,
                        if c == SEGV_MAPERR { "SEGV_MAPERR" } else { "SEGV_ACCERR" },
                    );
                    // SAFETY: `ctx` is the signal's context.
                    unsafe { deliver(libc::SIGSEGV, c, addr, ctx) };
                }
                Err(FaultError::Bus) => {
                    report("bus error", addr, ip, sp, err, "BUS_ADRERR");
                    // SAFETY: `ctx` is the signal's context.
                    unsafe { deliver(libc::SIGBUS, crate::fault::BUS_ADRERR, addr, ctx) };
                }
                Err(FaultError::Oom) => {
                    // Another process killed and its memory back: the access retries.
                    if !m.out_of_memory() {
                        oom_kill(m, addr)
                    }
                }
            }
            set_errno(saved);
            return;
        }
    }
    set_errno(saved);
    // SAFETY: `info` and `ctx` are the signal's.
    unsafe { chain(sig, info, ctx) };
}

/// The TLB shootdown signal: every machine this process is on flushes what its mailbox
/// asks (a request for none of them is a stale signal, and does nothing).
extern "C" fn tlb_handler(_sig: libc::c_int) {
    let saved = errno();
    for slot in &MACHINES {
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: registered machines stay alive until unregistered.
            unsafe { &*p }.handle_tlb_request();
        }
    }
    set_errno(saved);
}

#[cold]
fn report(what: &str, addr: usize, ip: usize, sp: usize, err: usize, code: &str) {
    let mut w = StackWriter::<200>::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ =
        writeln!(w, "kernel-sim[{pid}]: {what} at {addr:x} ip {ip:016x} sp {sp:016x} error {err:x} ({code})");
    w.emit();
}

#[cold]
fn kernel_fault(addr: usize, ip: usize) -> ! {
    crate::util::bug(
        "fault in the user range while holding the machine lock (the simulator touched user memory)",
        addr,
        ip,
    )
}

#[cold]
fn oom_kill(m: &Machine, addr: usize) -> ! {
    let c = {
        let mut st = m.lock();
        st.phys.vmstat.oom_kill += 1;
        st.counters()
    };
    let kb = |pages: usize| pages * (crate::page::PAGE_SIZE / 1024);
    let mut w = StackWriter::<400>::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = writeln!(
        w,
        "kernel-sim: page fault at {addr:#x}: no free page frame above any zone's min watermark\n\
         Out of memory: Killed process {pid} (ksim) total-vm:{}kB, anon-rss:{}kB, file-rss:{}kB, shmem-rss:{}kB, pgtables:{}kB oom_score_adj:0",
        kb(c.total_vm),
        kb(c.rss_anon),
        kb(c.rss_file),
        kb(c.rss_shmem),
        c.pgtables_bytes / 1024
    );
    w.emit();
    // SAFETY: SIGKILL to ourselves; it cannot be caught, so this does not return.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
        libc::_exit(137)
    }
}

fn is_default_or_ignored(sa: &libc::sigaction) -> bool {
    sa.sa_sigaction == libc::SIG_DFL || sa.sa_sigaction == libc::SIG_IGN
}

fn set_default(sig: libc::c_int) {
    // SAFETY: installing SIG_DFL; sigaction is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, core::ptr::null_mut());
    }
}

/// Send `sig` to this thread now, with `SIG_DFL`, so the process dies of it.
fn raise_default(sig: libc::c_int) {
    set_default(sig);
    // SAFETY: unblocking the signal and sending it to the calling thread.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, core::ptr::null_mut());
        libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::syscall(libc::SYS_gettid), sig);
    }
}

/// Run the handler of disposition `sa` as the kernel would.
///
/// # Safety
/// `sa` came from the kernel and holds a handler (not `SIG_DFL` or `SIG_IGN`); `info` and
/// `ctx` are valid for it while it runs.
unsafe fn call_handler(
    sa: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    if sa.sa_flags & libc::SA_RESETHAND != 0 {
        set_default(sig);
    }
    if sa.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, sa_sigaction is the address of a three-argument handler
        // the program installed; it gets what the kernel would give it.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { core::mem::transmute(sa.sa_sigaction) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO, sa_sigaction is the address of a plain handler.
        let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(sa.sa_sigaction) };
        f(sig);
    }
}

/// Deliver a simulated fault signal as the kernel would have.
///
/// # Safety
/// `ctx` is the context of the signal being handled (the program's handler gets it).
unsafe fn deliver(sig: libc::c_int, code: i32, addr: usize, ctx: *mut libc::c_void) {
    let prev = if sig == libc::SIGSEGV {
        // SAFETY: OLD_SEGV was written before our handler was installed.
        unsafe { (*OLD_SEGV.0.get()).assume_init() }
    } else {
        // SAFETY: reading the current disposition.
        unsafe {
            let mut cur: libc::sigaction = core::mem::zeroed();
            libc::sigaction(sig, core::ptr::null(), &mut cur);
            cur
        }
    };
    if is_default_or_ignored(&prev) {
        if sig == libc::SIGSEGV {
            // The access faults again on the host with SIG_DFL: a real segfault.
            set_default(sig);
        } else {
            raise_default(sig);
        }
        return;
    }
    // SAFETY: a zeroed siginfo_t filled with the fields a fault signal carries.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    info.si_signo = sig;
    info.si_code = code;
    // SAFETY: si_addr sits right after si_signo, si_errno, si_code and padding on Linux.
    unsafe { set_si_addr(&mut info, addr) };
    // SAFETY: `prev` came from the kernel and is neither SIG_DFL nor SIG_IGN (above); `info`
    // lives until the call returns, and `ctx` is the signal's (this function's contract).
    unsafe { call_handler(&prev, sig, &mut info, ctx) };
}

/// # Safety
/// `info` is a Linux `siginfo_t`.
unsafe fn set_si_addr(info: &mut libc::siginfo_t, addr: usize) {
    let base = info as *mut libc::siginfo_t as *mut u8;
    // On 64-bit Linux the union of fields starts at offset 16; si_addr is its first member.
    // SAFETY: offset 16 lies within the 128-byte siginfo_t.
    unsafe { (base.add(16) as *mut usize).write(addr) };
}

/// Pass a fault that is not ours to the handler installed before us.
///
/// # Safety
/// `info` and `ctx` are those of the signal being handled.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: OLD_SEGV was written before our handler was installed.
    let prev = unsafe { (*OLD_SEGV.0.get()).assume_init() };
    // SAFETY: `info` is valid for the duration of the handler.
    let code = unsafe { (*info).si_code };
    if prev.sa_sigaction == libc::SIG_IGN && code <= 0 {
        return;
    }
    if is_default_or_ignored(&prev) {
        if code <= 0 {
            // Sent by a process: the instruction will not fault again, so raise it.
            raise_default(sig);
        } else {
            set_default(sig);
        }
        return;
    }
    // SAFETY: `prev` came from the kernel and is neither SIG_DFL nor SIG_IGN (above);
    // `info` and `ctx` are the signal's (this function's contract).
    unsafe { call_handler(&prev, sig, info, ctx) };
}
