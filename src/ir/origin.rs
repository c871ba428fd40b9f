//! Where an IR item came from. A leaf of `ir`: every other IR module may
//! point at it, and it points at nothing, so `cost`, `requirements` and
//! `policy` do not form a cycle through it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Where an IR item came from, for diagnostics and `explain`.
///
/// Deliberately equal to every other `Origin`: two policy sets that mean the
/// same thing compare equal whether they came from policy text or from
/// Karpenter YAML, and whatever their spans.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Origin {
    pub file: Arc<str>,
    /// Byte offset and length in `file`.
    pub offset: usize,
    pub len: usize,
    /// 1-based line and column of `offset`.
    pub line: usize,
    pub column: usize,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}
impl Eq for Origin {}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
