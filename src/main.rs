//! The `nodewright` command line. Kept thin: parsing and every subcommand live in
//! `nodewright::cli`.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: decoding the embedded catalog,
/// solving and building plans allocate tens of thousands of small strings
/// and vectors, and glibc's malloc was a fifth of those profiles.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    nodewright::cli::main()
}
