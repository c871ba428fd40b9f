//! The per-plan cap on scripting time.
//!
//! `TimeBudget::per_call` stops one slow call; a script whose every call
//! stays just under it could still be called tens of thousands of times in
//! one plan. `PlanBudget` wraps a scorer for one plan, adds up the time its
//! calls take, and once the plan's cap is spent answers "no opinion" at
//! once; the solver then makes the plan again unscored and says why.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{NodeLoad, OfferingView, Scorer, Verdict};

/// A scorer metered for one plan (see the module docs). Shared between the
/// threads of one plan; a new plan takes a new one.
pub struct PlanBudget<'s> {
    inner: &'s dyn Scorer,
    cap: Duration,
    spent_nanos: AtomicU64,
    over: AtomicBool,
}

impl<'s> PlanBudget<'s> {
    /// Meters `inner` with a cap of `cap` for the whole plan.
    pub fn new(inner: &'s dyn Scorer, cap: Duration) -> Self {
        PlanBudget {
            inner,
            cap,
            spent_nanos: AtomicU64::new(0),
            over: AtomicBool::new(false),
        }
    }

    /// Scripting time spent so far.
    pub fn spent(&self) -> Duration {
        Duration::from_nanos(self.spent_nanos.load(Ordering::Relaxed))
    }

    /// Whether the cap is spent: from then on every verdict is "no opinion".
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// What to tell the user once the cap is spent (None before).
    pub fn report(&self) -> Option<String> {
        self.is_over().then(|| {
            format!(
                "scoring stopped: scripts ran for {:.0?} in this plan, past the cap of {:?} \
                 (--script-plan-budget); this plan is unscored (price alone)",
                self.spent(),
                self.cap
            )
        })
    }

    fn metered(&self, f: impl FnOnce() -> Verdict) -> Verdict {
        if self.is_over() {
            return Verdict::Adjust(0.0);
        }
        let t = Instant::now();
        let v = f();
        let took = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let spent = self
            .spent_nanos
            .fetch_add(took, Ordering::Relaxed)
            .saturating_add(took);
        if Duration::from_nanos(spent) > self.cap && !self.over.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "scoring scripts ran for {:.0?} in one plan, past the cap of {:?}; \
                 the plan is made unscored (price alone)",
                Duration::from_nanos(spent),
                self.cap
            );
        }
        v
    }
}

impl Scorer for PlanBudget<'_> {
    fn score_offering(&self, offering: &OfferingView<'_>) -> Verdict {
        self.metered(|| self.inner.score_offering(offering))
    }

    fn score_node(&self, offering: &OfferingView<'_>, load: &NodeLoad<'_>) -> Verdict {
        self.metered(|| self.inner.score_node(offering, load))
    }

    fn is_load_dependent(&self) -> bool {
        self.inner.is_load_dependent()
    }

    fn plan_time_budget(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CapacityType, InstanceType};

    /// Takes a fixed time per call, so the test does not depend on the machine's speed.
    struct Slow(Duration);

    impl Scorer for Slow {
        fn score_offering(&self, _: &OfferingView<'_>) -> Verdict {
            std::thread::sleep(self.0);
            Verdict::Adjust(1.0)
        }
        fn score_node(&self, o: &OfferingView<'_>, _: &NodeLoad<'_>) -> Verdict {
            self.score_offering(o)
        }
        fn is_load_dependent(&self) -> bool {
            false
        }
    }

    #[test]
    fn past_the_cap_every_verdict_is_no_opinion() {
        let cat = crate::catalog::embedded().expect("the embedded catalog decodes");
        let it: &InstanceType = &cat.types[0];
        let view = OfferingView {
            pool: "p",
            instance_type: it,
            zone: "z",
            capacity_type: CapacityType::OnDemand,
            price: 1.0,
        };
        // Below the cap (an hour: no call takes that long), calls run and count.
        let quick = Slow(Duration::from_millis(1));
        let roomy = PlanBudget::new(&quick, Duration::from_secs(3600));
        assert_eq!(roomy.score_offering(&view), Verdict::Adjust(1.0));
        assert!(roomy.spent() >= Duration::from_millis(1));
        assert!(!roomy.is_over());
        assert!(roomy.report().is_none());
        // A sleep lasts at least its duration, so the first 20 ms call crosses a 10 ms
        // cap however loaded the machine is. The call that crosses still counts; the
        // ones after do not run.
        let slow = Slow(Duration::from_millis(20));
        let b = PlanBudget::new(&slow, Duration::from_millis(10));
        assert_eq!(b.score_offering(&view), Verdict::Adjust(1.0));
        assert!(b.is_over());
        let spent = b.spent();
        assert!(spent >= Duration::from_millis(20));
        assert_eq!(b.score_offering(&view), Verdict::Adjust(0.0));
        assert_eq!(b.spent(), spent, "a call past the cap ran");
        let report = b.report().expect("reported");
        assert!(report.contains("this plan is unscored"), "{report}");
    }
}
