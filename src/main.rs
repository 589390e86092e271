//! The `cordon` binary: parse arguments, hand over to `cli::run`.

fn main() -> std::process::ExitCode {
    cordon::cli::run()
}
