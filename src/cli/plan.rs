//! `nodewright plan`: which nodes to launch for a workload, what they cost,
//! where each pod goes, and why any pod cannot go anywhere.

use std::process::ExitCode;

use crate::solver::{SolveInput, render, solve};

use super::inputs;

/// How to print the plan.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
}

/// Arguments of `nodewright plan`.
#[derive(Debug, clap::Args)]
pub(super) struct PlanArgs {
    /// What to plan: policy, workload, existing nodes and catalog.
    #[command(flatten)]
    pub inputs: inputs::PlanInputs,
    /// `table` for people, `json` for programs (stable schema, docs/solver.md).
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// With `--output table`: list each node's pods under its row (JSON always has them).
    #[arg(long)]
    pub pods: bool,
    /// Keep running: re-plan whenever the policy files or their scripts
    /// change (a change that fails to compile is reported and the last good
    /// version keeps planning).
    #[arg(long)]
    pub watch: bool,
    /// With `--watch`: accept a policy with no pools. Without it, a change
    /// that leaves no pools (the only policy file deleted, say) is rejected
    /// and the last good version keeps planning.
    #[arg(long, requires = "watch")]
    pub allow_empty_policy: bool,
    /// Also print what consolidation would do to the cluster in `--nodes` (the moves, what
    /// replaces the nodes that go, the pods that move, the $/hour saved, and what blocked
    /// other moves); `--output json` adds a `consolidation` object.
    #[arg(long, requires = "nodes", conflicts_with = "watch")]
    pub consolidate: bool,
}

/// Runs `nodewright plan`. Exit code 1 when some pod is unschedulable.
pub(super) fn run(args: PlanArgs) -> miette::Result<ExitCode> {
    if args.watch {
        return watch(args);
    }
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
    if args.consolidate {
        let c = super::consolidate::consolidate(&policy, &catalog, &args.inputs.nodes)?;
        match args.output {
            Output::Table => {
                if !plan.nodes.is_empty() || !plan.unschedulable.is_empty() {
                    print_plan(&plan, args.output, args.pods);
                    println!();
                }
                print!("{}", super::consolidate::table(&c));
            }
            Output::Json => {
                /// The plan's JSON with the `consolidation` object after its fields.
                #[derive(serde::Serialize)]
                struct WithConsolidation<'a> {
                    #[serde(flatten)]
                    plan: &'a crate::solver::Plan,
                    consolidation: &'a crate::disrupt::consolidate::Consolidation,
                }
                let out = WithConsolidation {
                    plan: &plan,
                    consolidation: &c,
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out).map_err(|e| miette::miette!("{e}"))?
                );
            }
        }
    } else {
        print_plan(&plan, args.output, args.pods);
    }
    Ok(if plan.unschedulable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_plan(plan: &crate::solver::Plan, output: Output, pods: bool) {
    match output {
        Output::Table => print!(
            "{}",
            render::table_with(plan, render::TableOptions { pods })
        ),
        Output::Json => println!("{}", render::json(plan)),
    }
}

/// `plan --watch`: plan with the active version, then again after every swap.
fn watch(args: PlanArgs) -> miette::Result<ExitCode> {
    use crate::reload::{Outcome, ReloadOptions, Reloader, WatchOptions};
    use std::sync::{Arc, mpsc};
    let workload = args.inputs.load_workload()?;
    let catalog = inputs::load_catalog(&args.inputs.catalog)?;
    let opts = ReloadOptions {
        allow_empty: args.allow_empty_policy,
        ..ReloadOptions::default()
    };
    let reloader = Arc::new(Reloader::with_options(args.inputs.policy.clone(), opts).map_err(|d| {
        eprint!("{d}");
        miette::miette!(
            help = "the first version must compile and have a pool; `nodewright check` shows the same diagnostics",
            "the policy cannot be used"
        )
    })?);
    let (tx, rx) = mpsc::channel::<Outcome>();
    let _guard = crate::reload::watch(Arc::clone(&reloader), WatchOptions::default(), move |o| {
        let _ = tx.send(o.clone());
    })
    .map_err(|e| miette::miette!("{e}"))?;
    let plan_active = || {
        let v = reloader.active();
        let input = SolveInput {
            policy: &v.policy,
            catalog: &catalog,
            workload: &workload,
            scorer: v.scorer.as_ref().map(|s| s as &dyn crate::scoring::Scorer),
            unavailable: None,
        };
        eprintln!("planning with policy v{} ({})", v.number, &v.hash[..12]);
        print_plan(&solve(&input), args.output, args.pods);
    };
    plan_active();
    for o in rx {
        match o {
            Outcome::Swapped(line) => {
                eprintln!("{line}");
                plan_active();
            }
            Outcome::Failed(d) => {
                eprint!("{d}");
                eprintln!(
                    "the change is rejected; still planning with v{}",
                    reloader.active().number
                );
            }
            Outcome::Unchanged => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
