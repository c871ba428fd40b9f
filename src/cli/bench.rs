//! `nodewright bench`.

use std::process::ExitCode;

/// Arguments of `nodewright bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs `nodewright bench`.
pub fn run(_args: BenchArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`nodewright bench` is not available yet"))
}
