//! `nodewright check`.

use std::process::ExitCode;

/// Arguments of `nodewright check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

/// Runs `nodewright check`.
pub fn run(_args: CheckArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`nodewright check` is not available yet"))
}
