//! The simulated kernel (see issue: kernel-sim).
