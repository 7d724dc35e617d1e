//! Benchmarks (see README).
fn main() {}
