//! One log line per policy reload, with the number of nodes it drifts.
//!
//! The reloader (below the controller) swaps a new version in and knows what
//! changed in the policy; only the controller knows the nodes. So the
//! controller logs the swap's line (`Version::summary`, the reloader told
//! not to: `ReloadOptions::caller_logs_swaps`) when it first observes the
//! new version, completed with how many of its nodes the version drifts:
//! the leader at its next pass, from the disruption pass's drift check
//! (`disrupt::drift`, counted by `disruption::decide`); a follower, which
//! runs no pass, as soon as the swap happens, without a count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Whether `version` is newer than every version announced so far; marks it
/// announced. Exactly one caller gets `true` per version, whichever of the
/// reload watcher (a follower) and the pass (the leader) comes first.
pub(super) fn first_to_announce(announced: &AtomicU64, version: u64) -> bool {
    announced.fetch_max(version, Ordering::AcqRel) < version
}

/// The reload's line: the reloader's summary and the drift count.
pub(super) fn with_drift(summary: &str, drifted: usize, total: usize) -> String {
    format!("{summary}; {drifted} of {total} nodes drift")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_is_announced_once_and_never_an_older_one() {
        let a = AtomicU64::new(1);
        assert!(!first_to_announce(&a, 1), "the first version is no reload");
        assert!(first_to_announce(&a, 2));
        assert!(!first_to_announce(&a, 2), "the pass after the watcher");
        // Two swaps between passes: the later one is announced, the earlier
        // one is not announced after it.
        assert!(first_to_announce(&a, 4));
        assert!(!first_to_announce(&a, 3));
    }

    #[test]
    fn the_line_says_how_many_nodes_drift() {
        let s = "policy v1 -> v2: pools added none, removed none, changed general; scripts changed none";
        assert_eq!(with_drift(s, 3, 5), format!("{s}; 3 of 5 nodes drift"));
        assert_eq!(with_drift(s, 1, 1), format!("{s}; 1 of 1 nodes drift"));
        assert_eq!(with_drift(s, 0, 0), format!("{s}; 0 of 0 nodes drift"));
    }
}
