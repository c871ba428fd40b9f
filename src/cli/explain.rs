//! `nodewright explain`.

use std::process::ExitCode;

/// Arguments of `nodewright explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {}

/// Runs `nodewright explain`.
pub fn run(_args: ExplainArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`nodewright explain` is not available yet"))
}
