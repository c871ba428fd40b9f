//! `nodewright explain`: for one pod, every pool and the instance types each
//! one rejects, grouped by reason.

use std::process::ExitCode;

use crate::solver::explain::explain_pod;
use crate::solver::{SolveInput, solve};

use super::inputs;

/// Arguments of `nodewright explain`.
#[derive(Debug, clap::Args)]
pub(super) struct ExplainArgs {
    /// What to plan: policy, workload, existing nodes and catalog.
    #[command(flatten)]
    pub inputs: inputs::PlanInputs,
    /// The pod: `namespace/name` or `name`.
    pub pod: String,
}

/// Runs `nodewright explain`.
pub(super) fn run(args: ExplainArgs) -> miette::Result<ExitCode> {
    let inputs::Loaded {
        policy,
        workload,
        catalog,
    } = args.inputs.load()?;
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
