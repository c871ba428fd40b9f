//! Expiry: a node older than its pool's `expire-after` is replaced.
//!
//! Expiry is forceful, as in Karpenter v1: budgets pace it (the `expired`
//! reason), but `do-not-disrupt` does not block it; the termination flow
//! waits for such pods at most the pool's `termination-grace-period`.

use jiff::Timestamp;

use crate::ir::{Duration as IrDuration, Pool};

/// When a node of `pool` created at `created` expires (None: never).
pub fn expires_at(pool: &Pool, created: Timestamp) -> Option<Timestamp> {
    match pool.disruption.expire_after {
        IrDuration::Finite(d) => {
            let d = jiff::SignedDuration::try_from(d).ok()?;
            created.checked_add(d).ok()
        }
        IrDuration::Never => None,
    }
}

/// Whether a node of `pool` created at `created` has expired at `now`.
pub fn is_expired(pool: &Pool, created: Timestamp, now: Timestamp) -> bool {
    expires_at(pool, created).is_some_and(|t| t <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(expire: &str) -> Pool {
        let text =
            format!("pool general {{\n  disruption {{\n    expire-after {expire}\n  }}\n}}\n");
        let file = crate::policy::parse("test.policy", &text)
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        crate::policy::compile(&[file])
            .unwrap_or_else(|d| panic!("{}", d.render(100)))
            .0
            .pools
            .remove(0)
    }

    #[test]
    fn expires_at_expire_after_since_creation() {
        let p = pool("24h");
        let created: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        assert!(!is_expired(
            &p,
            created,
            "2026-03-02T09:59:59Z".parse().unwrap()
        ));
        assert!(is_expired(
            &p,
            created,
            "2026-03-02T10:00:00Z".parse().unwrap()
        ));
        assert_eq!(
            expires_at(&p, created),
            Some("2026-03-02T10:00:00Z".parse().unwrap())
        );
        let never = pool("Never");
        assert!(!is_expired(
            &never,
            created,
            "2999-01-01T00:00:00Z".parse().unwrap()
        ));
    }
}
