//! A kernel stack for the deep paths (reclaim, the OOM reaper).
//!
//! The fault handler runs on the thread's alternate signal stack, which Rust's runtime makes
//! 8 KiB; the host's signal frame takes a good part of it. Reclaim (the LRU scan, the
//! reverse map, the TLB shootdown) and tearing down a killed process's address space need
//! more, so they run on a stack of their own, as Linux runs them on a kernel stack rather
//! than the user's. One per machine in each host process (a private mapping, so a forked
//! process has its own copy at the same address) suffices: only the holder of the machine
//! lock uses it, and a path already on it calls straight through. While on it the thread's
//! alternate signal stack is switched off, or a signal arriving then would be given a frame
//! on top of the fault handler's frames there.

use crate::machine::State;

/// Size of the kernel stack.
pub const KSTACK_SIZE: usize = 256 << 10;

/// Map a kernel stack (with a guard page below it); its top, or 0 if the host refused.
pub(crate) fn kstack_alloc() -> usize {
    let guard = crate::page::PAGE_SIZE;
    // SAFETY: a fresh anonymous mapping; nothing is replaced.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            KSTACK_SIZE + guard,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return 0;
    }
    // SAFETY: the lowest page of our own mapping becomes the guard.
    unsafe { libc::mprotect(p, guard, libc::PROT_NONE) };
    p as usize + guard + KSTACK_SIZE
}

struct Call<'a> {
    st: &'a mut State,
    f: &'a mut dyn FnMut(&mut State) -> usize,
    ret: usize,
    /// The thread's signal mask before the switch (signals are blocked across it).
    mask: libc::sigset_t,
}

/// Block every signal but the synchronous ones (a fault there is a bug either way), and
/// return the mask that was.
fn block_async_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain C struct, filled by the calls; pthread_sigmask only reads
    // and writes these locals.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        for s in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP] {
            libc::sigdelset(&mut all, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: restoring a mask pthread_sigmask gave us.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, core::ptr::null_mut()) };
}

extern "C" fn trampoline(arg: *mut u8) {
    // SAFETY: `arg` is the `Call` that `on_kernel_stack` passed, alive and not otherwise
    // used until this returns.
    let c = unsafe { &mut *(arg as *mut Call<'_>) };
    // The fault handler's frames are on the alternate signal stack, which the host would
    // take as free for a signal arriving now (the stack pointer is no longer in it): an
    // `SA_ONSTACK` handler's frame would overwrite them. Off while here, so such a signal
    // is delivered on this stack.
    // SAFETY: an all-zero stack_t is a valid value of the plain C struct; sigaltstack only
    // reads and writes these locals, and disabling is allowed off the alternate stack.
    let mut old: libc::stack_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let disabled = unsafe {
        let off = libc::stack_t { ss_sp: core::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
        libc::sigaltstack(&off, &mut old) == 0
    };
    // Signals were blocked across the switch (see `on_kernel_stack`); with the alternate
    // stack off they may come again, on this stack.
    set_mask(&c.mask);
    c.ret = (c.f)(c.st);
    let _ = block_async_signals();
    if disabled && old.ss_flags & libc::SS_DISABLE == 0 {
        old.ss_flags &= !libc::SS_ONSTACK;
        // SAFETY: restoring the stack the thread had, from our local copy.
        unsafe { libc::sigaltstack(&old, core::ptr::null_mut()) };
    }
}

/// Give the kernel stack back (at the machine's shutdown).
pub(crate) fn kstack_free(top: usize) {
    if top == 0 {
        return;
    }
    let guard = crate::page::PAGE_SIZE;
    // SAFETY: the mapping `kstack_alloc` made, which nothing runs on any more.
    unsafe { libc::munmap((top - KSTACK_SIZE - guard) as *mut libc::c_void, KSTACK_SIZE + guard) };
}

/// Run `f(st)` on the machine's kernel stack (directly if already on it, or without one).
pub(crate) fn on_kernel_stack(st: &mut State, f: &mut dyn FnMut(&mut State) -> usize) -> usize {
    let top = st.kstack_top;
    if top == 0 || st.on_kstack || !cfg!(target_arch = "x86_64") {
        return f(st);
    }
    st.on_kstack = true;
    // From before the switch until the alternate stack is off, and from before it is back
    // until after the switch back, a signal for an `SA_ONSTACK` handler would be given a
    // frame over the fault handler's: blocked meanwhile.
    let mask = block_async_signals();
    let mut call = Call { st, f, ret: 0, mask };
    let arg = &mut call as *mut Call<'_> as *mut u8;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `top` is the 16-byte aligned top of a stack this process mapped for the
    // machine, which nothing else uses now (the machine lock is held and `on_kstack` was
    // clear). The old stack pointer is kept in r12, which the callee preserves, and
    // restored after the call; `trampoline` is an `extern "C"` function that neither
    // unwinds (the paths it runs do not panic) nor returns elsewhere.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {f}",
            "mov rsp, r12",
            top = in(reg) top,
            f = in(reg) trampoline as extern "C" fn(*mut u8),
            in("rdi") arg,
            out("r12") _,
            clobber_abi("C"),
        );
    }
    set_mask(&call.mask);
    call.st.on_kstack = false;
    call.ret
}
