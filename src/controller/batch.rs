//! Batching pod events into solves.
//!
//! A Deployment scaled to 500 replicas creates its pods over a second or
//! two; solving after the first one would launch a node for it alone. Like
//! Karpenter, a batch closes once events have been quiet for `idle`, or
//! `max` after it opened, whichever comes first.

use std::time::{Duration, Instant};

/// Opens a batch on the first event and says when it is due.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    idle: Duration,
    max: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Batcher {
    /// A batcher that waits `idle` after the last event, at most `max` after the first.
    pub(super) fn new(idle: Duration, max: Duration) -> Batcher {
        Batcher {
            idle,
            max,
            first: None,
            last: None,
        }
    }

    /// Records a pod event at `now`.
    pub(super) fn event(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the open batch is due; None when no batch is open.
    pub(super) fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.idle).min(first + self.max))
    }

    /// True (and the batch is closed) when a batch is open and due at `now`.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        match self.due() {
            Some(d) if d <= now => {
                self.first = None;
                self.last = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_period_closes_a_batch_and_max_caps_a_busy_one() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Batcher::new(ms(1000), ms(10_000));
        assert_eq!(b.due(), None);
        assert!(!b.take(t0));
        b.event(t0);
        assert_eq!(b.due(), Some(t0 + ms(1000)));
        assert!(!b.take(t0 + ms(999)));
        // Events every 500 ms keep it open until the 10 s cap.
        for i in 1..=30 {
            b.event(t0 + ms(500 * i));
        }
        assert_eq!(b.due(), Some(t0 + ms(10_000)));
        assert!(b.take(t0 + ms(10_000)));
        assert_eq!(b.due(), None, "taking closes the batch");
        b.event(t0 + ms(20_000));
        assert!(b.take(t0 + ms(21_000)));
    }
}
