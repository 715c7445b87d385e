//! Workloads and the comparison runner (see issue: benches).
