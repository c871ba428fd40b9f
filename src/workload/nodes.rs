//! Existing Nodes and the pods bound to them → spare capacity.
//!
//! Free capacity is allocatable minus the requests of every non-terminal pod
//! bound to the node (`spec.nodeName`), DaemonSet pods included; the bound
//! pods are kept so that topology spread and pod affinity count them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;

use super::ExistingNode;
use super::ctx::{At, Ctx};
use super::error::{ErrorKind, WorkloadError};
use super::pods::resource_list;
use super::yaml::Path;
use crate::ir::{Taint, TaintEffect};

/// A Node object as an `ExistingNode` with nothing bound yet.
pub(super) fn node(ctx: &Ctx, at: &At, n: &core::Node) -> Result<ExistingNode, WorkloadError> {
    let name = n.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = n.metadata.labels.clone().unwrap_or_default();
    // The kubelet always sets it; hand-written Nodes often omit it.
    labels
        .entry(crate::ir::labels::HOSTNAME.to_string())
        .or_insert_with(|| name.clone());
    let spec = n.spec.clone().unwrap_or_default();
    let mut taints = Vec::new();
    for (i, t) in spec.taints.iter().flatten().enumerate() {
        let p = Path::dotted("spec.taints").idx(i).key("effect");
        let effect = TaintEffect::parse(&t.effect).ok_or_else(|| {
            ctx.error(
                at,
                &p,
                ErrorKind::Schema,
                format!("{p}: unknown taint effect `{}`", t.effect),
                Some("effects are NoSchedule, PreferNoSchedule, NoExecute".into()),
            )
        })?;
        taints.push(Taint {
            key: t.key.clone(),
            value: t.value.clone().filter(|v| !v.is_empty()),
            effect,
        });
    }
    if spec.unschedulable == Some(true) {
        // A cordoned node: the scheduler sees this taint.
        taints.push(Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            value: None,
            effect: TaintEffect::NoSchedule,
        });
    }
    let status = n.status.clone().unwrap_or_default();
    let allocatable = match (&status.allocatable, &status.capacity) {
        (Some(a), _) => resource_list(ctx, at, &Path::dotted("status.allocatable"), Some(a))?,
        (None, Some(c)) => resource_list(ctx, at, &Path::dotted("status.capacity"), Some(c))?,
        (None, None) => {
            return Err(ctx.error(
                at,
                &Path::root(),
                ErrorKind::Schema,
                format!("Node {name} has neither status.allocatable nor status.capacity"),
                Some("export nodes with `kubectl get nodes -o yaml`, which includes status".into()),
            ));
        }
    };
    Ok(ExistingNode {
        name,
        labels,
        taints,
        allocatable,
        used: crate::ir::Resources::zero(),
        pods: Vec::new(),
    })
}
