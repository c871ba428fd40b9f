//! The compiled, syntax-independent form of a policy set.
//!
//! Policy text (`crate::policy`) and Karpenter YAML (`crate::import`) both
//! compile into these types; the catalog, solver, scoring and launcher only
//! ever see the IR. Two inputs that mean the same thing compare equal here,
//! whatever their spelling or source spans.

pub mod cond;
pub mod cost;
pub mod duration;
pub mod labels;
pub mod origin;
pub mod policy;
pub mod quantity;
pub mod requirements;
pub mod resources;

pub use cond::{Attrs, CmpOp, Cond, Subject};
pub use cost::{CapacityRule, CeilingMetric, CostAction, CostRule};
pub use duration::{Duration, DurationError};
pub use origin::Origin;
pub use policy::*;
pub use quantity::{Quantity, QuantityError};
pub use requirements::{Operator, Requirement, Requirements, ValueSet};
pub use resources::Resources;
