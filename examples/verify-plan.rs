//! The scheduler oracle on one input: plans as `nodewright plan` does, then
//! lets the real kube-scheduler judge the plan (tests/support/oracle.rs says how).
//!
//! ```text
//! export NODEWRIGHT_KUBE_BIN="$(bash scripts/kube-bins.sh)"
//! cargo run --release --example verify-plan -- --policy P --workload W [--nodes N] [--catalog C]
//! ```
//!
//! Prints one line, `N/M pods bound; K refused: …`, and exits non-zero on any refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test harness run as an example: a failed step aborts it with its message"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[path = "../tests/support/kube.rs"]
mod kube;
#[path = "../tests/support/oracle.rs"]
mod oracle;

/// Has kube-scheduler check a plan: every planned pod must bind to its planned node.
#[derive(Debug, Parser)]
#[command(name = "verify-plan")]
struct Args {
    /// Policy files or folders (repeat the flag for more).
    #[arg(long, required = true)]
    policy: Vec<PathBuf>,
    /// Kubernetes YAML with the pending work (repeat the flag for more).
    #[arg(long, required = true)]
    workload: Vec<PathBuf>,
    /// Existing Node objects with their bound pods (repeat the flag for more).
    #[arg(long)]
    nodes: Vec<PathBuf>,
    /// `embedded` or a catalog JSON file.
    #[arg(long, default_value = "embedded")]
    catalog: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let inputs = oracle::Inputs {
        policy: args.policy,
        workload: args.workload,
        nodes: args.nodes,
        catalog: (args.catalog != "embedded").then(|| PathBuf::from(&args.catalog)),
        replicas: Default::default(),
    };
    let prepared = match oracle::Prepared::load(&inputs) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cluster = tokio::task::spawn_blocking(oracle::Cluster::start)
        .await
        .expect("start the control plane");
    let (_plan, report) = oracle::check(&cluster, &prepared).await;
    println!("{}", report.summary());
    if report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
