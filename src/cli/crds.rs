//! `nodewright crds`: the CustomResourceDefinitions the controller needs, as
//! YAML, generated from their Rust types. `deploy/crds/` holds this output
//! (a test fails when it differs):
//! `nodewright crds > deploy/crds/nodewright.io_nodeclaims.yaml`.

use std::process::ExitCode;

/// `nodewright crds`.
#[derive(Debug, clap::Args)]
pub(super) struct CrdsArgs {}

/// Prints the NodeClaim CRD.
#[cfg(feature = "controller")]
pub(super) fn run(_: CrdsArgs) -> miette::Result<ExitCode> {
    let yaml = crate::controller::nodeclaim::crd_yaml().map_err(|e| {
        miette::miette!(
            help = "this is a bug in nodewright; please report it",
            "rendering the NodeClaim CRD: {e}"
        )
    })?;
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}

/// Without the controller there are no custom resources to print.
#[cfg(not(feature = "controller"))]
pub(super) fn run(_: CrdsArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!(
        help = "rebuild with `--features controller` (on by default)",
        "this nodewright was built without the controller"
    ))
}
