//! `KPtr<T>`: a pointer to a kernel object that lives in slab memory.
//!
//! The simulation's VMAs, anon_vmas and inodes are slab objects in the direct map; the
//! tree and lists that connect them are raw links. A `KPtr` is such a link made usable:
//! it dereferences to a shared reference, and every such object's fields are `Cell`s, so
//! any number of references may exist while the machine lock is held.
//!
//! # The free rule
//!
//! A `KPtr` is `Copy` and dereferences safely, so nothing tells a stale copy from a live
//! one: it is valid from the allocation that made it until its object is freed. Freeing is
//! therefore where the care goes, as in Linux, whose rule for `kmem_cache_free` this is:
//! every function that frees a slab object, or may free one its caller could hold a `KPtr`
//! to, is an `unsafe fn`, and its caller promises the *free rule* — no `KPtr` to an object
//! the call frees is used after it. The objects a call frees are the VMAs it takes out of
//! the address space (unmapped, or merged into a neighbour, as each function says), the
//! anon_vmas and inodes whose last reference those VMAs held, and the page tables it
//! frees, whose `PteSlot`s fall under the same rule. The live structures (the VMA tree and
//! list, a VMA's `anon_vma` and `vm_file`) only ever point at live objects: a VMA is
//! unlinked before it is freed, and an anon_vma or inode is freed with its last reference.
//! The rule ends at the machine's system calls, which hold no `KPtr` or `PteSlot` and hand
//! none out of the crate.

use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

pub struct KPtr<T>(NonNull<T>, PhantomData<T>);

impl<T> Clone for KPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for KPtr<T> {}
impl<T> PartialEq for KPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for KPtr<T> {}

impl<T> core::fmt::Debug for KPtr<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KPtr({:#x})", self.addr())
    }
}

impl<T> KPtr<T> {
    /// # Safety
    /// `addr` is a live object of type `T` allocated from a slab cache of a machine that
    /// outlives every use of the pointer, and all of `T`'s fields are `Cell`s. The pointer
    /// and its copies are used only until the object is freed (the free rule, above).
    pub unsafe fn from_addr(addr: usize) -> KPtr<T> {
        match NonNull::new(addr as *mut T) {
            Some(p) => KPtr(p, PhantomData),
            None => crate::util::bug("KPtr::from_addr(0)", 0, 0),
        }
    }

    pub fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }

    pub fn ptr_eq(a: Option<KPtr<T>>, b: Option<KPtr<T>>) -> bool {
        a.map(KPtr::addr) == b.map(KPtr::addr)
    }
}

impl<T> Deref for KPtr<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: by `from_addr`'s contract the object is made of Cells and, by the free
        // rule that every freeing function's caller promises, still live; its slab page
        // stays mapped in the direct map while the machine exists.
        unsafe { self.0.as_ref() }
    }
}
