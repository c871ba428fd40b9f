//! `nodewright fmt`.

use std::process::ExitCode;

/// Arguments of `nodewright fmt`.
#[derive(Debug, clap::Args)]
pub struct FmtArgs {}

/// Runs `nodewright fmt`.
pub fn run(_args: FmtArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`nodewright fmt` is not available yet"))
}
