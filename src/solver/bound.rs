//! A fractional lower bound on the cost of any plan, for benchmarks.
//!
//! Every plan must buy, for each resource r, at least the pods' total request
//! of r, and no offering sells r cheaper than its price / room_r. So
//! `max_r Σ_pods request_r × min_offering(price / room_r)` bounds every plan
//! from below. (Pricing each class at its own binding resource, as first
//! proposed, over-counts when complementary pods share nodes: a CPU-heavy and
//! a memory-heavy pod together cost less than each on its own node share.)

use super::SolveInput;
use super::tables::{D, Tables, Variant};

/// The bound in $/hour (classes that fit nowhere add nothing).
pub fn fractional_lower_bound(input: &SolveInput<'_>) -> f64 {
    let mut t = Tables::new(input);
    let relaxed = Variant {
        pref_node: 0,
        prefer_rules: 0,
        pref_pod: 0,
        soft_spread: false,
    };
    let mut per_resource = [0.0f64; D];
    for (c, class) in input.workload.classes.iter().enumerate() {
        let mut req = t.dims.rv(&class.requests);
        req[3] = req[3].max(1);
        // Cheapest $ per unit of each resource among offerings this class can use.
        let mut best = [f64::INFINITY; D];
        let mut any = false;
        for p in 0..t.pools.len() {
            let bits = t.class_bits(p, c, &relaxed);
            let tab = &t.pools[p];
            for o in bits.iter() {
                let room = &tab.net[o];
                if req.iter().zip(room.iter()).any(|(r, m)| r > m) {
                    continue;
                }
                any = true;
                for (b, m) in best.iter_mut().zip(room.iter()) {
                    if *m > 0 {
                        *b = b.min(tab.price[o] / *m as f64);
                    }
                }
            }
        }
        if !any {
            continue;
        }
        for ((acc, r), b) in per_resource.iter_mut().zip(req.iter()).zip(best.iter()) {
            if *r > 0 && b.is_finite() {
                *acc += *r as f64 * b * class.count() as f64;
            }
        }
    }
    per_resource.iter().copied().fold(0.0, f64::max)
}
