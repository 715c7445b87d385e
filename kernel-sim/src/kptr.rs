//! `KPtr<T>`: a pointer to a kernel object that lives in slab memory.
//!
//! The simulation's VMAs, anon_vmas and inodes are slab objects in the direct map; the
//! tree and lists that connect them are raw links. A `KPtr` is such a link made usable:
//! it dereferences to a shared reference, and every such object's fields are `Cell`s, so
//! any number of references may exist while the machine lock is held.

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
    /// outlives every use of the pointer, and all of `T`'s fields are `Cell`s.
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
        // SAFETY: by `from_addr`'s contract the object is live and made of Cells, and its
        // slab page stays mapped in the direct map while the machine exists.
        unsafe { self.0.as_ref() }
    }
}
