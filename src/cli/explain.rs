//! `nodewright explain`: for one pod, every pool and the instance types each
//! one rejects, grouped by reason.

use std::process::ExitCode;

use crate::solver::explain::{explain_pod, explain_workload};
use crate::solver::{SolveInput, solve};

use super::inputs;

/// Arguments of `nodewright explain`.
#[derive(Debug, clap::Args)]
pub(super) struct ExplainArgs {
    /// What to plan: policy, workload, existing nodes and catalog.
    #[command(flatten)]
    pub inputs: inputs::PlanInputs,
    /// The pod (`namespace/name` or `name`, as `plan` lists it), or a workload
    /// whose pods are explained together (`[namespace/][Kind/]name`, e.g.
    /// `shop/web` or `Deployment/web`). It may come before or after the flags.
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
    if let Some(e) = explain_pod(&input, &plan, &args.pod) {
        println!("{}", e.pod);
        match &e.placed {
            Some(p) => println!("  placed on {p}"),
            None => println!("  unschedulable"),
        }
        for r in &e.reasons {
            println!("  - {r}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let groups = explain_workload(&input, &plan, &args.pod);
    if groups.is_empty() {
        return Err(miette::miette!(
            help = "name a pod as `plan` lists it (e.g. shop/web-7d4f9-abcde), or a workload \
                    as [namespace/][Kind/]name (e.g. shop/web, Deployment/web)",
            "no pending pod or workload called {}",
            args.pod
        ));
    }
    for g in &groups {
        println!("{} ({} pending pods)", g.workload, g.pods);
        for (at, n) in &g.placed {
            if at == "unschedulable" {
                println!("  {n} unschedulable");
            } else {
                println!("  {n} placed on {at}");
            }
        }
        for r in &g.reasons {
            println!("  - {r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
