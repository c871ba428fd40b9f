//! `nodewright catalog ...`.

use std::process::ExitCode;

/// Subcommands of `nodewright catalog`.
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {}

/// Runs `nodewright catalog ...`.
pub fn run(cmd: CatalogCommand) -> miette::Result<ExitCode> {
    match cmd {}
}
