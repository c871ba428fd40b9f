//! `nodewright explain`: for one pod, every pool and the instance types each
//! one rejects, grouped by reason.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::solver::explain::explain_pod;
use crate::solver::{SolveInput, solve};

use super::inputs;

/// Arguments of `nodewright explain`.
#[derive(Debug, clap::Args)]
pub(super) struct ExplainArgs {
    /// Policy files or folders.
    #[arg(long, required = true, num_args = 1..)]
    pub policy: Vec<PathBuf>,
    /// Kubernetes YAML with the pending work.
    #[arg(long, required = true, num_args = 1..)]
    pub workload: Vec<PathBuf>,
    /// Existing Node objects with their bound pods.
    #[arg(long, num_args = 1..)]
    pub nodes: Vec<PathBuf>,
    /// `embedded` or a catalog file.
    #[arg(long, default_value = "embedded")]
    pub catalog: String,
    /// Override a workload's replica count.
    #[arg(long, value_parser = inputs::parse_replicas)]
    pub replicas: Vec<(String, usize)>,
    /// The most pods the workload may ask for (replicas, parallelism and
    /// bare pods, over all objects); a count past it is an error at the object.
    #[arg(long, value_name = "N", default_value_t = crate::workload::DEFAULT_MAX_PODS)]
    pub max_pods: usize,
    /// The pod: `namespace/name` or `name`.
    pub pod: String,
}

/// Runs `nodewright explain`.
pub(super) fn run(args: ExplainArgs) -> miette::Result<ExitCode> {
    let policy = inputs::load_policy(&args.policy)?;
    let workload =
        inputs::load_workload(&args.workload, &args.nodes, &args.replicas, args.max_pods)?;
    let catalog = inputs::load_catalog(&args.catalog)?;
    let scorer = inputs::load_scorer(&policy)?;
    let input = SolveInput {
        policy: &policy,
        catalog: &catalog,
        workload: &workload,
        scorer: scorer.as_ref().map(|s| s as &dyn crate::scoring::Scorer),
        unavailable: None,
    };
    let plan = solve(&input);
    let Some(e) = explain_pod(&input, &plan, &args.pod) else {
        return Err(miette::miette!(
            help = "pods are named as `plan` lists them, e.g. default/web-0",
            "no pending pod called {}",
            args.pod
        ));
    };
    println!("{}", e.pod);
    match &e.placed {
        Some(p) => println!("  placed on {p}"),
        None => println!("  unschedulable"),
    }
    for r in &e.reasons {
        println!("  - {r}");
    }
    Ok(ExitCode::SUCCESS)
}
