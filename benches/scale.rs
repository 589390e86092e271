//! Placeholder, replaced by the benchmark of the same name.
fn main() {}
