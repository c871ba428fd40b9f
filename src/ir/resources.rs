//! Resource vectors: what a pod requests, a node offers, or a pool may use.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::quantity::Quantity;

/// Resource amounts in integral base units.
///
/// CPU is in millicores; memory and ephemeral storage in bytes; pods and
/// extended resources (`nvidia.com/gpu`, `aws.amazon.com/neuron`, ...) in counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_milli: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub extended: BTreeMap<String, i64>,
}

impl Resources {
    /// Nothing.
    pub fn zero() -> Self {
        Self::default()
    }

    /// Sets the named resource from a quantity (`cpu` keeps milli-units; others are rounded up to whole units).
    pub fn set(&mut self, name: &str, q: Quantity) {
        match name {
            "cpu" => self.cpu_milli = q.milli(),
            "memory" => self.memory = q.units_ceil(),
            "ephemeral-storage" => self.ephemeral_storage = q.units_ceil(),
            "pods" => self.pods = q.units_ceil(),
            other => {
                self.extended.insert(other.to_string(), q.units_ceil());
            }
        }
    }

    /// The named resource (0 when absent).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.cpu_milli,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.pods,
            other => self.extended.get(other).copied().unwrap_or(0),
        }
    }

    /// Every non-zero resource, by Kubernetes name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        [
            ("cpu", self.cpu_milli),
            ("memory", self.memory),
            ("ephemeral-storage", self.ephemeral_storage),
            ("pods", self.pods),
        ]
        .into_iter()
        .chain(self.extended.iter().map(|(k, v)| (k.as_str(), *v)))
        .filter(|(_, v)| *v != 0)
    }

    /// Element-wise sum.
    pub fn add(&mut self, o: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_add(o.cpu_milli);
        self.memory = self.memory.saturating_add(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
        self.pods = self.pods.saturating_add(o.pods);
        for (k, v) in &o.extended {
            let e = self.extended.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Element-wise difference (may go negative).
    pub fn sub(&mut self, o: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_sub(o.cpu_milli);
        self.memory = self.memory.saturating_sub(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(o.ephemeral_storage);
        self.pods = self.pods.saturating_sub(o.pods);
        for (k, v) in &o.extended {
            let e = self.extended.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
    }

    /// `n` times this vector.
    pub fn times(&self, n: i64) -> Resources {
        Resources {
            cpu_milli: self.cpu_milli.saturating_mul(n),
            memory: self.memory.saturating_mul(n),
            ephemeral_storage: self.ephemeral_storage.saturating_mul(n),
            pods: self.pods.saturating_mul(n),
            extended: self
                .extended
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_mul(n)))
                .collect(),
        }
    }

    /// Element-wise maximum (init containers vs. the sum of app containers).
    pub fn max(&self, o: &Resources) -> Resources {
        let mut out = Resources {
            cpu_milli: self.cpu_milli.max(o.cpu_milli),
            memory: self.memory.max(o.memory),
            ephemeral_storage: self.ephemeral_storage.max(o.ephemeral_storage),
            pods: self.pods.max(o.pods),
            extended: self.extended.clone(),
        };
        for (k, v) in &o.extended {
            let e = out.extended.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
        out
    }

    /// Whether `self` (a request) fits within `capacity`, resource by resource.
    /// A resource the capacity does not list counts as 0.
    pub fn fits_in(&self, capacity: &Resources) -> bool {
        self.first_exceeding(capacity).is_none()
    }

    /// The first resource for which `self` exceeds `capacity`, for explanations.
    pub fn first_exceeding(&self, capacity: &Resources) -> Option<&str> {
        if self.cpu_milli > capacity.cpu_milli {
            return Some("cpu");
        }
        if self.memory > capacity.memory {
            return Some("memory");
        }
        if self.ephemeral_storage > capacity.ephemeral_storage && self.ephemeral_storage > 0 {
            return Some("ephemeral-storage");
        }
        if self.pods > capacity.pods {
            return Some("pods");
        }
        self.extended
            .iter()
            .find(|(k, v)| **v > 0 && **v > capacity.extended.get(*k).copied().unwrap_or(0))
            .map(|(k, _)| k.as_str())
    }
}

/// Renders a resource amount the way `kubectl describe` would.
pub fn format_amount(name: &str, v: i64) -> String {
    match name {
        "cpu" => {
            if v % 1000 == 0 {
                format!("{}", v / 1000)
            } else {
                format!("{v}m")
            }
        }
        "memory" | "ephemeral-storage" => {
            const GI: f64 = (1u64 << 30) as f64;
            const MI: f64 = (1u64 << 20) as f64;
            let f = v as f64;
            if f.abs() >= GI {
                format!("{:.1}Gi", f / GI)
            } else {
                format!("{:.0}Mi", f / MI)
            }
        }
        _ => v.to_string(),
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .iter()
            .map(|(k, v)| format!("{k}={}", format_amount(k, v)))
            .collect();
        write!(f, "{}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_exceeds() {
        let mut req = Resources::zero();
        req.set("cpu", Quantity::parse("500m").unwrap());
        req.set("nvidia.com/gpu", Quantity::parse("1").unwrap());
        let mut cap = Resources::zero();
        cap.set("cpu", Quantity::parse("2").unwrap());
        assert_eq!(req.first_exceeding(&cap), Some("nvidia.com/gpu"));
        cap.set("nvidia.com/gpu", Quantity::parse("4").unwrap());
        assert!(req.fits_in(&cap));
        assert_eq!(req.times(4).cpu_milli, 2000);
    }
}
