//! Quick end-to-end checks of the allocator on the real kernel.

#[global_allocator]
static GLOBAL: ptalloc::PtAlloc = ptalloc::PtAlloc;

use ptalloc::model::{Mix, Model};

#[test]
fn basic_malloc_free() {
    let m = ptalloc::linux();
    let mut v = Vec::new();
    for i in 0..10000usize {
        let p = m.malloc(i % 3000);
        assert!(!p.is_null());
        unsafe { core::ptr::write_bytes(p, 0xaa, i % 3000) };
        v.push(p);
    }
    m.check_heap().unwrap();
    for p in v {
        unsafe { m.free(p) };
    }
    m.check_heap().unwrap();
}

#[test]
fn model_short() {
    let model = Model::new(ptalloc::linux(), 500);
    let mix = Mix {
        slots: 500,
        ..Mix::default()
    };
    let stats = model.run_random(&mix, 1, 200_000, 1000).unwrap();
    println!("{stats:?}");
    model.drain(&mut Default::default()).unwrap();
    ptalloc::linux().check_heap().unwrap();
}
