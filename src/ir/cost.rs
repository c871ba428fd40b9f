//! Cost rules: what an offering really costs this user, and capacity overlays.
//!
//! Rules apply in policy order (files sorted by path, then source order), each
//! to the offerings its node-side condition matches. Karpenter's NodeOverlay
//! price and capacity adjustments compile to these too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cond::{Attrs, Cond};
use super::origin::Origin;
use super::quantity::Quantity;

/// What a cost rule does to a matching offering's hourly price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CostAction {
    /// Replace the price (a reserved-instance or negotiated rate; NodeOverlay `price`).
    SetPrice(f64),
    /// Multiply the price: 0.72 for a 28% discount, 1.2 for a 20% penalty.
    Scale(f64),
    /// Add to the price (may be negative; NodeOverlay `priceAdjustment: "-0.05"`).
    Add(f64),
    /// Spot price as a fraction of the on-demand price of the same type and zone.
    /// With `only_when_unknown`, applies only where no real spot price is known.
    SpotFromOnDemand { ratio: f64, only_when_unknown: bool },
    /// Exclude offerings whose price per unit exceeds `max`.
    Ceiling { metric: CeilingMetric, max: f64 },
}

/// What a price ceiling divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CeilingMetric {
    PricePerHour,
    PricePerVcpu,
    PricePerGib,
}

impl CeilingMetric {
    /// The policy-language spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            CeilingMetric::PricePerHour => "price",
            CeilingMetric::PricePerVcpu => "price-per-vcpu",
            CeilingMetric::PricePerGib => "price-per-gib",
        }
    }
}

/// One cost rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRule {
    /// Node-side condition; `Cond::True` for every offering.
    pub when: Cond,
    pub action: CostAction,
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// Adds capacity (typically an extended resource) to matching instance types
/// (NodeOverlay `capacity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityRule {
    pub when: Cond,
    pub add: BTreeMap<String, Quantity>,
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// What `effective_price` needs to know about one offering.
pub struct PriceInput<'a> {
    /// Node-side attributes (labels, zone, capacity type, pool).
    pub attrs: &'a dyn Attrs,
    /// The catalog's price, if any.
    pub price: Option<f64>,
    /// Whether `price` is a real spot price rather than the catalog's estimate.
    pub price_known: bool,
    /// The on-demand price of the same type (same zone) if known.
    pub on_demand_price: Option<f64>,
    pub is_spot: bool,
    pub vcpus: f64,
    pub memory_gib: f64,
}

/// The result of applying cost rules to one offering.
#[derive(Debug, Clone, PartialEq)]
pub enum PriceOutcome {
    /// The price to optimise.
    Price(f64),
    /// No price known and no rule set one: the offering is not usable.
    Unpriced,
    /// A ceiling rule excluded it.
    Excluded { rule: usize, reason: String },
}

/// Applies `rules` in order to one offering.
pub fn effective_price(rules: &[CostRule], input: &PriceInput<'_>) -> PriceOutcome {
    let mut price = input.price;
    let mut known = input.price_known;
    for (i, rule) in rules.iter().enumerate() {
        if !rule.when.eval(input.attrs) {
            continue;
        }
        match &rule.action {
            CostAction::SetPrice(p) => {
                price = Some(*p);
                known = true;
            }
            CostAction::Scale(f) => price = price.map(|p| p * f),
            CostAction::Add(a) => price = price.map(|p| (p + a).max(0.0)),
            CostAction::SpotFromOnDemand {
                ratio,
                only_when_unknown,
            } => {
                if input.is_spot
                    && (!known || !*only_when_unknown)
                    && let Some(od) = input.on_demand_price
                {
                    price = Some(od * ratio);
                    known = true;
                }
            }
            CostAction::Ceiling { metric, max } => {
                let Some(p) = price else { continue };
                let per = match metric {
                    CeilingMetric::PricePerHour => p,
                    CeilingMetric::PricePerVcpu => p / input.vcpus.max(f64::MIN_POSITIVE),
                    CeilingMetric::PricePerGib => p / input.memory_gib.max(f64::MIN_POSITIVE),
                };
                if per > *max {
                    return PriceOutcome::Excluded {
                        rule: i,
                        reason: format!("{} {per:.4} > ceiling {max}", metric.as_str()),
                    };
                }
            }
        }
    }
    match price {
        Some(p) => PriceOutcome::Price(p),
        None => PriceOutcome::Unpriced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::cond::{CmpOp, Subject};
    use std::borrow::Cow;

    struct Fam(&'static str);
    impl Attrs for Fam {
        fn get(&self, s: &Subject) -> Option<Cow<'_, str>> {
            match s {
                Subject::NodeLabel(k) if k == crate::ir::labels::INSTANCE_FAMILY => {
                    Some(Cow::Borrowed(self.0))
                }
                _ => None,
            }
        }
    }

    #[test]
    fn discounts_then_ceiling() {
        let fam = Cond::cmp(
            Subject::NodeLabel(crate::ir::labels::INSTANCE_FAMILY.into()),
            CmpOp::In,
            &["m6i"],
        );
        let rules = vec![
            CostRule {
                when: fam,
                action: CostAction::Scale(0.72),
                origin: None,
            },
            CostRule {
                when: Cond::True,
                action: CostAction::Ceiling {
                    metric: CeilingMetric::PricePerVcpu,
                    max: 0.045,
                },
                origin: None,
            },
        ];
        let input = |a: &'static Fam| PriceInput {
            attrs: a,
            price: Some(0.192),
            price_known: true,
            on_demand_price: Some(0.192),
            is_spot: false,
            vcpus: 4.0,
            memory_gib: 16.0,
        };
        static M6I: Fam = Fam("m6i");
        static M5: Fam = Fam("m5");
        match effective_price(&rules, &input(&M6I)) {
            PriceOutcome::Price(p) => assert!((p - 0.13824).abs() < 1e-9),
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            effective_price(&rules, &input(&M5)),
            PriceOutcome::Excluded { rule: 1, .. }
        ));
    }
}
