//! Every workload runs to completion on ptalloc and on glibc, makes the same number of
//! allocator calls on both, and reads back what it wrote (the same checksum wherever the
//! result does not depend on thread scheduling); the runner rejects bad arguments.

use std::alloc::System;
use std::process::Command;

use ptalloc::PtAlloc;
use ptalloc_benches::workloads::{Params, Workload, WORKLOADS};

#[test]
fn workloads_agree_on_ptalloc_and_glibc() {
    let p = Params { threads: 2, scale: 0.02, seed: 7 };
    for w in WORKLOADS {
        let name = w.name();
        let ours = w.run(&PtAlloc, &p);
        let glibc = w.run(&System, &p);
        assert!(ours.calls > 0, "{name}: no allocator calls");
        assert_eq!(ours.calls, glibc.calls, "{name}: calls");
        assert!(ours.peak_live > 0 && glibc.peak_live > 0, "{name}: no live bytes");
        // larson and fragmentation do the same things in the same order on any allocator
        // (the others' live bytes and checksums depend on how the threads interleave).
        if matches!(w, Workload::Larson | Workload::Fragmentation) {
            assert_eq!(ours.peak_live, glibc.peak_live, "{name}: peak live bytes");
            assert_eq!(ours.checksum, glibc.checksum, "{name}: checksum");
        }
    }
    assert!(Workload::named("no-such-workload").is_none());
}

#[test]
fn compare_rejects_bad_arguments() {
    for args in [&["--bogus"][..], &["--runs", "zero"][..], &["--only", "no-such-workload"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_compare")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "compare {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "compare {args:?}: {err}");
    }
}
