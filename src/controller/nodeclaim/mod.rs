//! NodeClaims: one custom resource per node the controller launches, its
//! whole record of that node from plan to removal.
//!
//! A claim is written before CreateFleet and read back from the API server
//! on every pass, so a restarted controller (or another replica) knows every
//! node in flight without asking EC2. Its lifecycle, each step a pure
//! function of the claim and its Node (`lifecycle`):
//!
//! ```text
//!  plan ──create──▶ (no conditions) ──CreateFleet──▶ Launched ──Node with the──▶ Registered
//!                      │ launch fails                  │      provider ID         │
//!                      ▼                               │ no Node within           │ Ready, startup taints
//!                   deleted                            │ registration TTL         │ gone, extended
//!                                                      ▼                          ▼ resources reported
//!                                         terminated + deleted               Initialized (+ Ready)
//! ```
//!
//! Until a claim is Initialized it counts as the room it will be (its
//! planned allocatable, carrying its pods), so nothing else is launched for
//! its pods while the node boots. Removal (ours or a `kubectl delete`)
//! terminates the instance, then lifts the `nodewright.io/termination`
//! finalizer from the Node and the claim.

pub(super) mod lifecycle;
pub mod types;

pub use types::{NodeClaim, NodeClaimSpec, NodeClaimStatus};

/// Finalizer on our Nodes and NodeClaims: their instance is terminated before they go.
pub const FINALIZER: &str = "nodewright.io/termination";
/// Node label: the pool the node was launched for.
pub const LABEL_POOL: &str = "nodewright.io/pool";
/// Node label: the claim the node is.
pub const LABEL_CLAIM: &str = "nodewright.io/claim";
/// Node label, `"true"` once the node registered for its claim.
pub const LABEL_REGISTERED: &str = "nodewright.io/registered";
/// Node label, `"true"` once the node is initialized.
pub const LABEL_INITIALIZED: &str = "nodewright.io/initialized";

/// The CRD as YAML, exactly as committed under `deploy/crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    serde_yaml_ng::to_string(&NodeClaim::crd())
}

#[cfg(test)]
mod tests {
    /// Where the committed CRD lives, relative to the repository root.
    const COMMITTED: &str = "deploy/crds/nodewright.io_nodeclaims.yaml";

    #[test]
    fn the_committed_crd_is_the_generated_one() {
        let generated = super::crd_yaml().unwrap_or_else(|e| panic!("{e}"));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{COMMITTED} differs from the NodeClaim type; regenerate it with\n  \
             cargo run -- crds > {COMMITTED}"
        );
    }

    #[test]
    fn the_crd_prints_the_columns_kubectl_shows() {
        use kube::CustomResourceExt;
        let crd = super::NodeClaim::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let cols: Vec<(&str, i32)> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.priority.unwrap_or(0)))
            .collect();
        assert_eq!(
            cols,
            [
                ("Type", 0),
                ("Capacity", 0),
                ("Zone", 0),
                ("Node", 0),
                ("Ready", 0),
                ("Age", 0),
                ("ImageID", 1),
                ("ID", 1)
            ]
        );
    }
}
