//! The `cordon` binary: parse arguments, hand over to `cli::run`.

/// mimalloc instead of the system allocator: under load glibc's malloc and
/// free (with its chunk consolidation) took about 11% of the proxy's CPU in
/// `perf` (benches/README.md, "Profile"); mimalloc's thread-local free lists
/// halve that and keep idle memory lower.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cordon::cli::run()
}
