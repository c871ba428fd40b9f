//! Conditions in placement and cost rules: small boolean expressions over a
//! pod's attributes or a candidate node's attributes.
//!
//! Rules keep their pod-side and node-side conditions apart so the solver can
//! evaluate the pod side once per pod class and compile the node side into a
//! bitset over catalog offerings.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What a comparison reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subject {
    /// The pod's namespace.
    PodNamespace,
    /// The pod's name.
    PodName,
    /// A pod label, by key.
    PodLabel(String),
    /// The pod's priorityClassName.
    PodPriorityClass,
    /// The pod's numeric priority.
    PodPriority,
    /// The kind of the pod's controller (Deployment, StatefulSet, Job, DaemonSet, ...).
    PodOwnerKind,
    /// The name of the pod's controller.
    PodOwnerName,
    /// A label of the candidate node: instance-type labels, zone, capacity
    /// type, and the pool (`karpenter.sh/nodepool`).
    NodeLabel(String),
    /// The candidate offering's hourly price after earlier cost rules.
    NodePrice,
}

impl Subject {
    /// True for subjects read from the pod.
    pub fn is_pod(&self) -> bool {
        !matches!(self, Subject::NodeLabel(_) | Subject::NodePrice)
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    In,
    NotIn,
    Lt,
    Le,
    Gt,
    Ge,
    Exists,
    NotExists,
}

/// A boolean condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cond {
    True,
    False,
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Cmp {
        subject: Subject,
        op: CmpOp,
        values: Vec<String>,
    },
}

/// Something a condition can read: a pod, a node candidate, or both.
pub trait Attrs {
    /// The subject's value, or None when absent (an unset label, no owner, ...).
    fn get(&self, subject: &Subject) -> Option<Cow<'_, str>>;
}

impl Cond {
    /// Shorthand for a single comparison.
    pub fn cmp(subject: Subject, op: CmpOp, values: &[&str]) -> Cond {
        Cond::Cmp {
            subject,
            op,
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Evaluates against `attrs`. An absent attribute is unequal to everything.
    pub fn eval(&self, attrs: &dyn Attrs) -> bool {
        match self {
            Cond::True => true,
            Cond::False => false,
            Cond::All(cs) => cs.iter().all(|c| c.eval(attrs)),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(attrs)),
            Cond::Not(c) => !c.eval(attrs),
            Cond::Cmp {
                subject,
                op,
                values,
            } => {
                let v = attrs.get(subject);
                compare(v.as_deref(), *op, values)
            }
        }
    }

    /// True when every comparison reads only the pod.
    pub fn is_pod_only(&self) -> bool {
        self.all_subjects(&|s| s.is_pod())
    }

    /// True when every comparison reads only the node.
    pub fn is_node_only(&self) -> bool {
        self.all_subjects(&|s| !s.is_pod())
    }

    fn all_subjects(&self, f: &dyn Fn(&Subject) -> bool) -> bool {
        match self {
            Cond::True | Cond::False => true,
            Cond::All(cs) | Cond::Any(cs) => cs.iter().all(|c| c.all_subjects(f)),
            Cond::Not(c) => c.all_subjects(f),
            Cond::Cmp { subject, .. } => f(subject),
        }
    }
}

fn compare(v: Option<&str>, op: CmpOp, values: &[String]) -> bool {
    let first = values.first().map(|s| s.as_str());
    match op {
        CmpOp::Exists => v.is_some(),
        CmpOp::NotExists => v.is_none(),
        CmpOp::Eq => v.is_some() && v == first,
        CmpOp::Ne => v.is_none() || v != first,
        CmpOp::In => v.is_some_and(|v| values.iter().any(|x| x == v)),
        CmpOp::NotIn => v.is_none_or(|v| values.iter().all(|x| x != v)),
        CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
            let (Some(a), Some(b)) = (
                v.and_then(|s| s.parse::<f64>().ok()),
                first.and_then(|s| s.parse::<f64>().ok()),
            ) else {
                return false;
            };
            match op {
                CmpOp::Lt => a < b,
                CmpOp::Le => a <= b,
                CmpOp::Gt => a > b,
                _ => a >= b,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Labels(BTreeMap<String, String>);
    impl Attrs for Labels {
        fn get(&self, s: &Subject) -> Option<Cow<'_, str>> {
            match s {
                Subject::NodeLabel(k) => self.0.get(k).map(|v| Cow::Borrowed(v.as_str())),
                _ => None,
            }
        }
    }

    #[test]
    fn evaluates() {
        let mut m = BTreeMap::new();
        m.insert("g".to_string(), "6".to_string());
        let l = Labels(m);
        let gt5 = Cond::cmp(Subject::NodeLabel("g".into()), CmpOp::Gt, &["5"]);
        assert!(gt5.eval(&l));
        let missing = Cond::cmp(Subject::NodeLabel("x".into()), CmpOp::NotIn, &["a"]);
        assert!(missing.eval(&l));
        assert!(!Cond::Not(Box::new(gt5.clone())).eval(&l));
        assert!(gt5.is_node_only() && !gt5.is_pod_only());
    }
}
