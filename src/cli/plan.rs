//! `nodewright plan`.

use std::process::ExitCode;

/// Arguments of `nodewright plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {}

/// Runs `nodewright plan`.
pub fn run(_args: PlanArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`nodewright plan` is not available yet"))
}
