//! Disruption budgets, as Karpenter defines them.
//!
//! `budget N|N% [schedule CRON duration D] [reasons ...]` caps how many nodes
//! of a pool may be disrupted at once:
//! - a budget with a schedule counts only inside its window: it is active
//!   when the schedule fired at most `duration` ago (UTC, Karpenter's
//!   `Budget.IsActive`); outside the window it allows anything;
//! - a budget without reasons applies to every reason;
//! - for each reason the most restrictive active budget wins
//!   (`GetAllowedDisruptionsByReason`); a pool with no budget is unlimited;
//! - `N%` is of the pool's node count, rounded up (10% of 5 nodes is 1);
//! - nodes already being deleted count against every budget of their pool.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::ir::{Budget, BudgetNodes, DisruptionReason, Duration as IrDuration, PolicySet, Pool};

/// Whether `budget` counts at `now`: always without a schedule, else only
/// while its window is open. A schedule that does not parse (the compiler
/// rejects those) closes nothing and opens everything: it counts, the
/// restrictive reading, as Karpenter's error path does.
pub fn is_active(budget: &Budget, now: Timestamp) -> bool {
    let Some(schedule) = &budget.schedule else {
        return true;
    };
    let Ok(cron) = crate::ir::parse_schedule(schedule) else {
        return true;
    };
    let window = match budget.duration {
        Some(IrDuration::Finite(d)) => d,
        // A window that never closes once opened; `Never` is not a duration
        // a budget takes, but read it as "always active".
        Some(IrDuration::Never) => return true,
        None => std::time::Duration::ZERO,
    };
    let Ok(window) = jiff::SignedDuration::try_from(window) else {
        return true;
    };
    // The window is open when the schedule fired within the last `window`:
    // the first firing after `now - window` is no later than `now`.
    let Ok(start) = now.checked_sub(window) else {
        return true;
    };
    let civil = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    match cron.find_next_occurrence(&civil(start), false) {
        Ok(next) => next <= civil(now),
        Err(_) => false,
    }
}

/// How many nodes of `pool`, which has `total` nodes, may be disrupted at
/// once for `reason` at `now`, before subtracting the nodes being deleted.
/// None: no active budget applies, no limit.
pub fn allowed(
    pool: &Pool,
    total: usize,
    reason: DisruptionReason,
    now: Timestamp,
) -> Option<usize> {
    pool.disruption
        .budgets
        .iter()
        .filter(|b| b.reasons.is_empty() || b.reasons.contains(&reason))
        .filter(|b| is_active(b, now))
        .map(|b| nodes_of(b.nodes, total))
        .min()
}

/// A budget's size for a pool of `total` nodes: `N%` rounds up, as
/// Karpenter's `GetScaledValueFromIntOrPercent(..., true)` does.
pub fn nodes_of(nodes: BudgetNodes, total: usize) -> usize {
    match nodes {
        BudgetNodes::Percent(p) => (total * usize::from(p)).div_ceil(100),
        BudgetNodes::Count(n) => n as usize,
    }
}

/// One pool's size, as budgets count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolCount {
    /// Nodes of the pool (being deleted or not).
    pub total: usize,
    /// Nodes already being deleted or disrupted: they use up every budget.
    pub deleting: usize,
}

/// What is left of every pool's budgets in one disruption pass, per reason.
/// Taking a node for one reason uses up every other reason's budget too: a
/// node being disrupted counts against every budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetsLeft {
    /// Per pool: the limit per reason (None: unlimited) and the nodes taken.
    pools: BTreeMap<String, PoolBudget>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PoolBudget {
    limits: BTreeMap<ReasonKey, Option<usize>>,
    used: usize,
}

/// `DisruptionReason` is not `Ord`; its spelling is.
type ReasonKey = &'static str;

impl BudgetsLeft {
    /// The budgets of every pool of `policy` at `now`, given each pool's
    /// node counts (pools without nodes are omitted and have nothing to take).
    pub fn new(policy: &PolicySet, counts: &BTreeMap<String, PoolCount>, now: Timestamp) -> Self {
        let mut pools = BTreeMap::new();
        for (name, c) in counts {
            let Some(pool) = policy.pool(name) else {
                continue;
            };
            let limits = DisruptionReason::ALL
                .iter()
                .map(|r| (r.as_str(), allowed(pool, c.total, *r, now)))
                .collect();
            pools.insert(
                name.clone(),
                PoolBudget {
                    limits,
                    used: c.deleting,
                },
            );
        }
        BudgetsLeft { pools }
    }

    /// How many more nodes of `pool` may be disrupted for `reason` (None: no limit).
    pub fn left(&self, pool: &str, reason: DisruptionReason) -> Option<usize> {
        let p = self.pools.get(pool)?;
        p.limits
            .get(reason.as_str())
            .copied()
            .flatten()
            .map(|l| l.saturating_sub(p.used))
    }

    /// Takes one node of `pool` for `reason` if the budget allows; false
    /// (nothing taken) when it is used up. A pool of a policy that no longer
    /// has it has no budget: nothing is taken.
    pub fn take(&mut self, pool: &str, reason: DisruptionReason) -> bool {
        let Some(p) = self.pools.get_mut(pool) else {
            return false;
        };
        let limit = p.limits.get(reason.as_str()).copied().flatten();
        if limit.is_some_and(|l| p.used >= l) {
            return false;
        }
        p.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(disruption: &str) -> PolicySet {
        let text = format!("pool general {{\n  disruption {{\n{disruption}\n  }}\n}}\n");
        let file = crate::policy::parse("test.policy", &text)
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        crate::policy::compile(&[file])
            .unwrap_or_else(|d| panic!("{}", d.render(100)))
            .0
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn percent_rounds_up_and_counts_stay_fixed() {
        assert_eq!(nodes_of(BudgetNodes::Percent(10), 5), 1);
        assert_eq!(nodes_of(BudgetNodes::Percent(10), 12), 2);
        assert_eq!(nodes_of(BudgetNodes::Percent(10), 0), 0);
        assert_eq!(nodes_of(BudgetNodes::Percent(50), 3), 2);
        assert_eq!(nodes_of(BudgetNodes::Percent(100), 7), 7);
        assert_eq!(nodes_of(BudgetNodes::Percent(0), 7), 0);
        assert_eq!(nodes_of(BudgetNodes::Count(3), 1), 3);
    }

    #[test]
    fn the_most_restrictive_overlapping_budget_wins_per_reason() {
        let p = policy("budget 50%\nbudget 2 reasons [drifted, expired]\nbudget 0 reasons [empty]");
        let pool = &p.pools[0];
        let now = at("2026-03-02T12:00:00Z");
        assert_eq!(
            allowed(pool, 10, DisruptionReason::Underutilized, now),
            Some(5)
        );
        assert_eq!(allowed(pool, 10, DisruptionReason::Drifted, now), Some(2));
        assert_eq!(allowed(pool, 10, DisruptionReason::Expired, now), Some(2));
        assert_eq!(allowed(pool, 10, DisruptionReason::Empty, now), Some(0));
        // Only reason-specific budgets: other reasons are unlimited.
        let p = policy("budget 1 reasons [drifted]");
        assert_eq!(allowed(&p.pools[0], 10, DisruptionReason::Empty, now), None);
    }

    #[test]
    fn a_scheduled_budget_counts_only_in_its_window() {
        // Weekdays 09:00-17:00 UTC nothing may be disrupted; otherwise 10%.
        let p = policy("budget 10%\nbudget 0 schedule \"0 9 * * mon-fri\" duration 8h");
        let pool = &p.pools[0];
        let r = DisruptionReason::Drifted;
        // 2026-03-02 is a Monday.
        assert_eq!(allowed(pool, 20, r, at("2026-03-02T08:59:59Z")), Some(2));
        assert_eq!(allowed(pool, 20, r, at("2026-03-02T09:00:00Z")), Some(0));
        assert_eq!(allowed(pool, 20, r, at("2026-03-02T16:59:59Z")), Some(0));
        assert_eq!(allowed(pool, 20, r, at("2026-03-02T17:00:01Z")), Some(2));
        // Saturday: the window does not open.
        assert_eq!(allowed(pool, 20, r, at("2026-03-07T10:00:00Z")), Some(2));
    }

    #[test]
    fn a_window_crossing_midnight_stays_open_into_the_next_day() {
        // Opens 22:00 for 4h: open until 02:00 the next day.
        let p = policy("budget 0 schedule \"0 22 * * *\" duration 4h");
        let b = &p.pools[0].disruption.budgets[0];
        assert!(!is_active(b, at("2026-03-02T21:59:00Z")));
        assert!(is_active(b, at("2026-03-02T22:00:00Z")));
        assert!(is_active(b, at("2026-03-02T23:59:59Z")));
        assert!(is_active(b, at("2026-03-03T00:00:00Z")));
        assert!(is_active(b, at("2026-03-03T01:59:59Z")));
        assert!(!is_active(b, at("2026-03-03T02:00:01Z")));
        // Friday night's window, opened on a weekday, reaches into Saturday.
        let p = policy("budget 0 schedule \"30 23 * * fri\" duration 2h");
        let b = &p.pools[0].disruption.budgets[0];
        assert!(is_active(b, at("2026-03-07T01:00:00Z")));
        assert!(!is_active(b, at("2026-03-07T01:31:00Z")));
        assert!(!is_active(b, at("2026-03-06T23:29:00Z")));
    }

    #[test]
    fn macros_and_budgets_without_schedule() {
        let p = policy("budget 0 schedule \"@daily\" duration 1h");
        let b = &p.pools[0].disruption.budgets[0];
        assert!(is_active(b, at("2026-03-02T00:30:00Z")));
        assert!(!is_active(b, at("2026-03-02T01:30:00Z")));
        let p = policy("budget 3");
        assert!(is_active(
            &p.pools[0].disruption.budgets[0],
            at("2026-03-02T01:30:00Z")
        ));
    }

    #[test]
    fn deleting_nodes_use_up_every_reason_and_takes_are_shared() {
        let p = policy("budget 20%\nbudget 1 reasons [drifted]");
        let now = at("2026-03-02T12:00:00Z");
        let counts: BTreeMap<String, PoolCount> = [(
            "general".to_string(),
            PoolCount {
                total: 10,
                deleting: 1,
            },
        )]
        .into();
        let mut b = BudgetsLeft::new(&p, &counts, now);
        assert_eq!(b.left("general", DisruptionReason::Empty), Some(1));
        assert_eq!(b.left("general", DisruptionReason::Drifted), Some(0));
        assert!(!b.take("general", DisruptionReason::Drifted));
        assert!(b.take("general", DisruptionReason::Empty));
        assert!(!b.take("general", DisruptionReason::Underutilized));
        assert_eq!(b.left("general", DisruptionReason::Expired), Some(0));
        // A pool the policy does not have (or without nodes) takes nothing.
        assert!(!b.take("gone", DisruptionReason::Empty));
    }

    #[test]
    fn no_budget_means_no_limit() {
        let mut p = policy("budget 1");
        p.pools[0].disruption.budgets.clear();
        let counts: BTreeMap<String, PoolCount> = [(
            "general".to_string(),
            PoolCount {
                total: 3,
                deleting: 3,
            },
        )]
        .into();
        let mut b = BudgetsLeft::new(&p, &counts, at("2026-03-02T12:00:00Z"));
        assert_eq!(b.left("general", DisruptionReason::Empty), None);
        assert!(b.take("general", DisruptionReason::Empty));
    }

    proptest::proptest! {
        /// Whatever the budgets, counts and takes, a pool never has more
        /// nodes disrupted for a reason than its most restrictive active
        /// budget for that reason allows (nodes already deleting included).
        #[test]
        fn budgets_are_never_exceeded(
            sizes in proptest::collection::vec((0u8..=100, proptest::bool::ANY, 0u32..5), 1..4),
            reasons in proptest::collection::vec(0usize..4, 1..4),
            total in 0usize..40,
            deleting in 0usize..10,
            takes in proptest::collection::vec(0usize..4, 0..30),
        ) {
            let budgets: Vec<String> = sizes
                .iter()
                .zip(reasons.iter().cycle())
                .map(|((pct, percent, count), r)| {
                    let nodes = if *percent { format!("{pct}%") } else { count.to_string() };
                    format!("budget {nodes} reasons [{}]", DisruptionReason::ALL[*r].as_str())
                })
                .collect();
            let p = policy(&budgets.join("\n"));
            let now = at("2026-03-02T12:00:00Z");
            let deleting = deleting.min(total);
            let counts: BTreeMap<String, PoolCount> =
                [("general".to_string(), PoolCount { total, deleting })].into();
            let mut b = BudgetsLeft::new(&p, &counts, now);
            let mut taken = 0usize;
            for t in takes {
                let reason = DisruptionReason::ALL[t];
                if b.take("general", reason) {
                    taken += 1;
                    if let Some(limit) = allowed(&p.pools[0], total, reason, now) {
                        proptest::prop_assert!(deleting + taken <= limit);
                    }
                }
            }
        }
    }
}
