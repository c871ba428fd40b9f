//! The `nodewright` command line: parsing, dispatch and the subcommands. `src/main.rs`
//! only calls [`main`]; each subcommand moves data between files, the pure stages and
//! the terminal. Nothing here is library surface beyond [`main`].
//!
//! Exit codes: 0 success, 1 findings (errors in `check`, unformatted files,
//! unschedulable pods where documented), 2 usage or input errors.

mod bench;
mod catalog;
mod check;
mod controller;
mod ec2;
mod explain;
mod fmt;
mod import;
mod inputs;
mod plan;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Decides which EC2 instances to launch for pending Kubernetes pods, driven by policy files.
#[derive(Parser)]
#[command(name = "nodewright", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `nodewright=debug`.
    #[arg(long, global = true, env = "NODEWRIGHT_LOG", default_value = "warn")]
    log: String,
    /// Wall-clock budget of one scoring-script call, in milliseconds (docs/scoring.md).
    #[arg(
        long,
        global = true,
        env = "NODEWRIGHT_SCRIPT_CALL_BUDGET_MS",
        default_value_t = 10
    )]
    script_call_budget: u64,
    /// Scoring-script time one plan may spend, in milliseconds; past it the plan is unscored.
    #[arg(
        long,
        global = true,
        env = "NODEWRIGHT_SCRIPT_PLAN_BUDGET_MS",
        default_value_t = 5000
    )]
    script_plan_budget: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plan offline: which nodes to launch for a workload, what they cost, where each pod goes.
    Plan(plan::PlanArgs),
    /// Explain, for one pod, every pool and instance type rejected and why.
    Explain(explain::ExplainArgs),
    /// Check policy files and scripts; print diagnostics.
    Check(check::CheckArgs),
    /// Format policy files canonically.
    Fmt(fmt::FmtArgs),
    /// Convert Karpenter YAML into policy text.
    Import(import::ImportArgs),
    /// Browse the EC2 instance catalog.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Talk to the EC2 API (resolve node classes).
    #[command(subcommand)]
    Ec2(ec2::Ec2Command),
    /// Run the built-in solver benchmarks.
    Bench(bench::BenchArgs),
    /// Run in the cluster: watch pending pods, launch nodes, remove empty ones, hot-reload policies.
    Controller(Box<controller::ControllerArgs>),
}

/// Parses the command line, sets up logging and runs the subcommand: the whole binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    crate::scoring::set_default_time_budget(crate::scoring::TimeBudget {
        per_call: std::time::Duration::from_millis(cli.script_call_budget),
        per_plan: std::time::Duration::from_millis(cli.script_plan_budget),
    });
    let result = match cli.command {
        Command::Plan(a) => plan::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Check(a) => check::run(a),
        Command::Fmt(a) => fmt::run(a),
        Command::Import(a) => import::run(a),
        Command::Catalog(c) => catalog::run(c),
        Command::Ec2(c) => ec2::run(c),
        Command::Bench(a) => bench::run(a),
        Command::Controller(a) => controller::run(*a),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
    }
}
