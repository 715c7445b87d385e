//! `PtAlloc`: ptalloc as a Rust global allocator.
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: ptalloc::PtAlloc = ptalloc::PtAlloc;
//!
//! fn main() {
//!     let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
//!     assert_eq!(v[999], "999");
//!     assert!(ptalloc::linux().stats().brk_calls > 0);
//! }
//! ```

use core::alloc::{GlobalAlloc, Layout};

use crate::chunk::MALLOC_ALIGNMENT;
use crate::linux::LinuxKernel;
use crate::malloc::Malloc;

// SAFETY: the only Malloc<LinuxKernel> in the process.
static LINUX: Malloc<LinuxKernel> = unsafe { Malloc::new(LinuxKernel) };

/// The process's allocator on the real kernel, shared by [`PtAlloc`] and `libptalloc.so`.
#[inline(always)]
pub fn linux() -> &'static Malloc<LinuxKernel> {
    &LINUX
}

/// ptalloc on the Linux kernel, as a [`GlobalAlloc`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PtAlloc;

// SAFETY: every block comes from ptalloc's malloc/memalign with at least the layout's size
// and alignment, and is released with free.
unsafe impl GlobalAlloc for PtAlloc {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGNMENT {
            LINUX.malloc(layout.size())
        } else {
            LINUX.memalign(layout.align(), layout.size())
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above and is not null (GlobalAlloc's contract).
        unsafe { LINUX.free_nonnull(ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGNMENT {
            LINUX.calloc(1, layout.size())
        } else {
            let p = LINUX.memalign(layout.align(), layout.size());
            if !p.is_null() {
                // SAFETY: a fresh block of at least layout.size() bytes.
                unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGNMENT {
            // SAFETY: `ptr` is ours; new_size > 0 by GlobalAlloc's contract, so this never frees.
            return unsafe { LINUX.realloc(ptr, new_size) };
        }
        // SAFETY: `ptr` is a live block of ours.
        if new_size <= unsafe { LINUX.usable_size(ptr) } {
            return ptr;
        }
        let new = LINUX.memalign(layout.align(), new_size);
        if !new.is_null() {
            // SAFETY: distinct live blocks, each at least min(old, new) bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                LINUX.free(ptr);
            }
        }
        new
    }
}
