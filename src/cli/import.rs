//! `nodewright import`.

use std::process::ExitCode;

/// Arguments of `nodewright import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {}

/// Runs `nodewright import`.
pub fn run(_args: ImportArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`nodewright import` is not available yet"))
}
