//! C++'s global `operator new` and `operator delete`, every replaceable form (plain, array,
//! `nothrow`, C++17 aligned, C++14 sized), so that a C++ program's allocations reach ptalloc
//! directly. Without them libstdc++'s own operators run and call `malloc`/`free` through
//! the PLT: a `new` + `delete` costs the C pair plus two or three indirect jumps and the
//! wrappers' own instructions. A definition in the program itself still wins (the
//! executable comes before every preloaded library in the lookup order), as C++ requires.
//!
//! Allocation failure is the C++ runtime's business: the new-handler loop, `std::bad_alloc`.
//! A Rust frame must never be unwound (this library is built with `panic = "abort"`: an
//! exception reaching one aborts), so each `new` is a naked function. It calls the Rust
//! attempt (`try_*`, ptalloc's `malloc`/`memalign` with the recorder's test), returns its
//! block, and on null *jumps* — its frame gone — to the next definition of the same
//! operator in the lookup order (libstdc++'s or libc++'s), which calls ptalloc's `malloc`
//! again, runs the handler and throws from there, straight into the program's frames. The
//! next definition is looked up with `dlsym(RTLD_NEXT)` on the first failure only.
//!
//! The `delete` forms never throw: they are plain `free` (the chunk knows its size and
//! alignment, so the sized and aligned forms ignore theirs, as glibc's `free_sized` does).

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use ptalloc::FdWriter;

use crate::{free, malloc, memalign};

/// The mangled names of the `new` forms, in the order of the ids the trampolines pass.
const NEW_NAMES: [&[u8]; 8] = [
    b"_Znwm\0",
    b"_Znam\0",
    b"_ZnwmRKSt9nothrow_t\0",
    b"_ZnamRKSt9nothrow_t\0",
    b"_ZnwmSt11align_val_t\0",
    b"_ZnamSt11align_val_t\0",
    b"_ZnwmSt11align_val_tRKSt9nothrow_t\0",
    b"_ZnamSt11align_val_tRKSt9nothrow_t\0",
];

/// The next definition of each `new` form, once looked up (0: not yet).
static NEXT: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

/// A `new` of `size` bytes: ptalloc's malloc, null on failure. libstdc++ asks `malloc` for
/// at least one byte; ptalloc's `malloc(0)` returns a unique block already. An internal
/// symbol of its own, because the trampoline's call to the exported `malloc` would go
/// through the PLT (it is interposable); this one is a direct call.
extern "C" fn try_new(size: usize) -> *mut c_void {
    malloc(size)
}

/// An aligned `new`: null on failure, and for an alignment that is not a power of two
/// (which the C++ runtime then reports as it does for its own).
extern "C" fn try_new_aligned(size: usize, align: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    memalign(align, size)
}

/// The address of the next definition of `new` form `id`, for the trampoline to jump to.
/// Aborts with a message if there is none: a throwing `new` may not return null, and
/// without a C++ runtime nothing can throw `std::bad_alloc`.
extern "C" fn next_new(id: usize) -> usize {
    let id = id.min(NEW_NAMES.len() - 1);
    let known = NEXT[id].load(Ordering::Acquire);
    if known != 0 {
        return known;
    }
    // SAFETY: a NUL-terminated name; RTLD_NEXT searches the objects after this library. dlsym
    // may allocate (through ptalloc): no lock of ours is held here.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, NEW_NAMES[id].as_ptr() as *const c_char) } as usize;
    if f == 0 {
        let name = core::str::from_utf8(&NEW_NAMES[id][..NEW_NAMES[id].len() - 1]).unwrap_or("new");
        let mut out = FdWriter::new(2);
        let _ = core::fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "ptalloc: {name}: out of memory, and no C++ runtime loaded to throw std::bad_alloc\n"
            ),
        );
        out.flush();
        // SAFETY: abort has no preconditions and does not return.
        unsafe { libc::abort() }
    }
    NEXT[id].store(f, Ordering::Release);
    f
}

/// A `new` form: call `$try` with the arguments; return its block, or restore the
/// arguments and jump to the next definition of form `$id`. Three argument registers are
/// kept whatever the form (24 bytes, which also aligns the stack for the calls).
macro_rules! operator_new {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*), $try:path, $id:expr) => {
        $(#[$doc])*
        #[no_mangle]
        #[unsafe(naked)]
        pub extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            core::arch::naked_asm!(
                "sub rsp, 24",
                "mov [rsp], rdi",
                "mov [rsp + 8], rsi",
                "mov [rsp + 16], rdx",
                "call {attempt}",
                "test rax, rax",
                "jz 2f",
                "add rsp, 24",
                "ret",
                "2:",
                "mov edi, {id}",
                "call {next}",
                "mov r11, rax",
                "mov rdi, [rsp]",
                "mov rsi, [rsp + 8]",
                "mov rdx, [rsp + 16]",
                "add rsp, 24",
                "jmp r11",
                attempt = sym $try,
                next = sym next_new,
                id = const $id,
            )
        }
    };
}

operator_new!(
    /// `operator new(size_t)`.
    _Znwm(size: usize), try_new, 0
);
operator_new!(
    /// `operator new[](size_t)`.
    _Znam(size: usize), try_new, 1
);
operator_new!(
    /// `operator new(size_t, const std::nothrow_t&)`.
    _ZnwmRKSt9nothrow_t(size: usize, nothrow: *const c_void), try_new, 2
);
operator_new!(
    /// `operator new[](size_t, const std::nothrow_t&)`.
    _ZnamRKSt9nothrow_t(size: usize, nothrow: *const c_void), try_new, 3
);
operator_new!(
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t(size: usize, align: usize), try_new_aligned, 4
);
operator_new!(
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t(size: usize, align: usize), try_new_aligned, 5
);
operator_new!(
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, nothrow: *const c_void), try_new_aligned, 6
);
operator_new!(
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, nothrow: *const c_void), try_new_aligned, 7
);

/// Every `delete` form is `free` of its pointer.
macro_rules! operator_delete {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// `p` is null or a block of a `new` form of this allocator, not freed since
            /// (as C++ requires).
            #[no_mangle]
            pub unsafe extern "C" fn $name(p: *mut c_void $(, $arg: $ty)*) {
                $(let _ = $arg;)*
                // SAFETY: the caller's promise, which is free's.
                unsafe { free(p) }
            }
        )*
    };
}

operator_delete! {
    /// `operator delete(void*)`.
    _ZdlPv();
    /// `operator delete[](void*)`.
    _ZdaPv();
    /// `operator delete(void*, size_t)`.
    _ZdlPvm(size: usize);
    /// `operator delete[](void*, size_t)`.
    _ZdaPvm(size: usize);
    /// `operator delete(void*, const std::nothrow_t&)`.
    _ZdlPvRKSt9nothrow_t(nothrow: *const c_void);
    /// `operator delete[](void*, const std::nothrow_t&)`.
    _ZdaPvRKSt9nothrow_t(nothrow: *const c_void);
    /// `operator delete(void*, std::align_val_t)`.
    _ZdlPvSt11align_val_t(align: usize);
    /// `operator delete[](void*, std::align_val_t)`.
    _ZdaPvSt11align_val_t(align: usize);
    /// `operator delete(void*, size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t(size: usize, align: usize);
    /// `operator delete[](void*, size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t(size: usize, align: usize);
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, nothrow: *const c_void);
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, nothrow: *const c_void);
}
