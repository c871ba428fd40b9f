//! The `nodewright` command line: parsing, dispatch and the subcommands. `src/main.rs`
//! only calls [`main`]; each subcommand moves data between files, the pure stages and
//! the terminal. Nothing here is library surface beyond [`main`].
//!
//! Exit codes: 0 success, 1 findings (errors in `check`, unformatted files,
//! unschedulable pods where documented), 2 usage or input errors.

mod bench;
mod catalog;
mod check;
mod consolidate;
mod controller;
mod crds;
mod ec2;
mod explain;
mod fmt;
mod import;
mod inputs;
mod plan;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The help heading of the flags every subcommand takes, so that each subcommand's
/// `--help` lists its own flags first, not interleaved with these.
const GLOBAL: &str = "Global options";

/// Decides which EC2 instances to launch for pending Kubernetes pods, driven by policy files.
#[derive(Parser)]
#[command(name = "nodewright", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `nodewright=debug`.
    #[arg(
        long,
        global = true,
        env = "NODEWRIGHT_LOG",
        default_value = "warn",
        help_heading = GLOBAL
    )]
    log: String,
    /// Wall-clock budget of one scoring-script call, in milliseconds (docs/scoring.md).
    #[arg(
        long,
        global = true,
        env = "NODEWRIGHT_SCRIPT_CALL_BUDGET_MS",
        default_value_t = 10,
        help_heading = GLOBAL
    )]
    script_call_budget: u64,
    /// Scoring-script time one plan may spend, in milliseconds; past it the plan is unscored.
    #[arg(
        long,
        global = true,
        env = "NODEWRIGHT_SCRIPT_PLAN_BUDGET_MS",
        default_value_t = 5000,
        help_heading = GLOBAL
    )]
    script_plan_budget: u64,
    /// Log format: `text` for people, `json` for log pipelines (one object per line).
    #[arg(long, global = true, env = "NODEWRIGHT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, help_heading = GLOBAL)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Plan offline: which nodes to launch for a workload, what they cost, where each pod goes.
    Plan(plan::PlanArgs),
    /// Explain where a pod, or a workload's pods, went, and every pool and instance type rejected and why.
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
    /// Print a shell completion script (e.g. `nodewright completions bash > /etc/bash_completion.d/nodewright`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of nodewright, or of one subcommand (`nodewright man plan`).
    Man {
        /// A subcommand; the top-level page when omitted.
        command: Option<String>,
    },
    /// Print the controller's CustomResourceDefinitions (NodeClaim) as YAML, for `kubectl apply -f -`.
    Crds(crds::CrdsArgs),
}

/// Parses the command line, sets up logging and runs the subcommand: the whole binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
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
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "nodewright", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { command } => man(command.as_deref()),
        Command::Crds(a) => crds::run(a),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; colour only when a person is likely to read them there:
/// a terminal, and `NO_COLOR` (no-color.org) unset or empty.
fn init_logging(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// Writes the man page of the CLI, or of `sub`, to stdout.
fn man(sub: Option<&str>) -> miette::Result<ExitCode> {
    let root = <Cli as clap::CommandFactory>::command();
    let cmd = match sub {
        None => root,
        Some(name) => {
            let names: Vec<String> = root
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
            match root.find_subcommand(name) {
                Some(c) => c.clone().name(format!("nodewright-{name}")),
                None => {
                    return Err(miette::miette!(
                        help = format!("subcommands: {}", names.join(", ")),
                        "no subcommand called {name}"
                    ));
                }
            }
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| miette::miette!("rendering the man page: {e}"))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| miette::miette!("writing the man page: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
