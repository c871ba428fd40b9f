//! `nodewright ec2 ...`.

use std::process::ExitCode;

/// Subcommands of `nodewright ec2`.
#[derive(Debug, clap::Subcommand)]
pub enum Ec2Command {}

/// Runs `nodewright ec2 ...`.
pub fn run(cmd: Ec2Command) -> miette::Result<ExitCode> {
    match cmd {}
}
