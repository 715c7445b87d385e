//! The workloads with ptalloc as the Rust global allocator: everything in this program,
//! the workload's blocks and its bookkeeping alike, comes from it. (`workload-system` is
//! also the one to run under `LD_PRELOAD`: its allocator is whatever `malloc` resolves to.)

#[global_allocator]
static GLOBAL: ptalloc::PtAlloc = ptalloc::PtAlloc;

fn main() {
    ptalloc_benches::cli::main(&GLOBAL);
}
