//! STAND-IN (issue #16, until the termination flow's branch merges): the
//! contract's `terminate::request_removal`, reduced to its two writes. The
//! real one lives in `src/controller/terminate.rs`; at merge, callers switch
//! to it and this file is deleted.

use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::nodeclaim::NodeClaim;

/// Annotation naming why a claim is being removed.
const DISRUPTION_REASON: &str = "nodewright.io/disruption-reason";

/// Hands claim `claim` to termination for `reason`: records the reason on
/// it, then deletes it (its finalizer runs the termination flow). A claim
/// already gone is fine.
pub(crate) async fn request_removal(
    client: &kube::Client,
    claim: &str,
    reason: &str,
) -> Result<(), kube::Error> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let patch = serde_json::json!({ "metadata": { "annotations": { DISRUPTION_REASON: reason } } });
    match api
        .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    match api.delete(claim, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
