//! The `nodewright` command line. Kept thin: each subcommand lives in `nodewright::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nodewright::cli;

/// mimalloc instead of the system allocator: decoding the embedded catalog,
/// solving and building plans allocate tens of thousands of small strings
/// and vectors, and glibc's malloc was a fifth of those profiles.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Plan(cli::plan::PlanArgs),
    /// Explain, for one pod, every pool and instance type rejected and why.
    Explain(cli::explain::ExplainArgs),
    /// Check policy files and scripts; print diagnostics.
    Check(cli::check::CheckArgs),
    /// Format policy files canonically.
    Fmt(cli::fmt::FmtArgs),
    /// Convert Karpenter YAML into policy text.
    Import(cli::import::ImportArgs),
    /// Browse the EC2 instance catalog.
    #[command(subcommand)]
    Catalog(cli::catalog::CatalogCommand),
    /// Talk to the EC2 API (resolve node classes).
    #[command(subcommand)]
    Ec2(cli::ec2::Ec2Command),
    /// Run the built-in solver benchmarks.
    Bench(cli::bench::BenchArgs),
    /// Run in the cluster: watch pending pods, launch nodes, remove empty ones, hot-reload policies.
    Controller(cli::controller::ControllerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    nodewright::scoring::set_default_time_budget(nodewright::scoring::TimeBudget {
        per_call: std::time::Duration::from_millis(cli.script_call_budget),
        per_plan: std::time::Duration::from_millis(cli.script_plan_budget),
    });
    let result = match cli.command {
        Command::Plan(a) => cli::plan::run(a),
        Command::Explain(a) => cli::explain::run(a),
        Command::Check(a) => cli::check::run(a),
        Command::Fmt(a) => cli::fmt::run(a),
        Command::Import(a) => cli::import::run(a),
        Command::Catalog(c) => cli::catalog::run(c),
        Command::Ec2(c) => cli::ec2::run(c),
        Command::Bench(a) => cli::bench::run(a),
        Command::Controller(a) => cli::controller::run(a),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
    }
}
