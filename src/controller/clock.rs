//! Where a pass's time goes: wall and CPU time of the pass, the time from
//! a batch closing to the pass's last launch, and the wall time of each
//! part of the pass.
//!
//! The figures feed `pass_seconds`, `pass_cpu_seconds`,
//! `batch_to_last_launch_seconds` and `pass_phase_seconds`, which the
//! controller benchmark (`benches/controller.rs`) reads. CPU time is the
//! process's (`clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`): a pass's task
//! moves between the runtime's threads at each await, so no thread's clock
//! covers it. Watch events arriving during the pass are counted with it.

use std::time::{Duration, Instant};

use super::metrics::Metrics;

/// What started a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// A batch of pod events closed at this instant.
    Batch(Instant),
    /// The resync interval (or the first pass).
    Resync,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Batch(_) => "batch",
            Trigger::Resync => "resync",
        }
    }
}

/// The clock of one pass.
#[derive(Debug)]
pub(super) struct PassClock {
    trigger: Trigger,
    started: Instant,
    cpu: Option<cpu_time::ProcessTime>,
    mark: Instant,
    cpu_mark: Option<cpu_time::ProcessTime>,
    /// Launches run concurrently, each recording when it returned.
    last_launch: std::sync::Mutex<Option<Instant>>,
    /// Each part's name, wall time and process CPU time.
    phases: Vec<(&'static str, Duration, Option<Duration>)>,
}

impl Default for PassClock {
    fn default() -> PassClock {
        PassClock::start(Trigger::Resync)
    }
}

impl PassClock {
    /// Starts the clocks of a pass.
    pub(super) fn start(trigger: Trigger) -> PassClock {
        let now = Instant::now();
        let cpu = cpu_time::ProcessTime::try_now().ok();
        PassClock {
            trigger,
            started: now,
            cpu,
            mark: now,
            cpu_mark: cpu,
            last_launch: std::sync::Mutex::new(None),
            phases: Vec::new(),
        }
    }

    /// Ends the part of the pass named `phase` (it began at the previous mark).
    pub(super) fn phase(&mut self, phase: &'static str) {
        let now = Instant::now();
        let cpu = cpu_time::ProcessTime::try_now().ok();
        let cpu_took = match (self.cpu_mark, cpu) {
            (Some(a), Some(b)) => Some(b.duration_since(a)),
            _ => None,
        };
        self.phases.push((phase, now - self.mark, cpu_took));
        self.mark = now;
        self.cpu_mark = cpu;
    }

    /// Records that a launch returned now.
    pub(super) fn launched(&self) {
        if let Ok(mut l) = self.last_launch.lock() {
            *l = Some(Instant::now());
        }
    }

    /// From the batch closing to the last launch, when both happened.
    pub(super) fn batch_to_last_launch(&self) -> Option<Duration> {
        let last = self.last_launch.lock().ok().and_then(|l| *l);
        match (self.trigger, last) {
            (Trigger::Batch(closed), Some(l)) => Some(l.saturating_duration_since(closed)),
            _ => None,
        }
    }

    /// Stops the clocks, records the figures in `m` and logs them at debug.
    pub(super) fn finish(self, m: &Metrics) {
        let wall = self.started.elapsed();
        let cpu = self.cpu.and_then(|c| c.try_elapsed().ok());
        let label = [("trigger", self.trigger.label())];
        m.pass_seconds
            .get_or_create(&label)
            .observe(wall.as_secs_f64());
        if let Some(cpu) = cpu {
            m.pass_cpu_seconds
                .get_or_create(&label)
                .observe(cpu.as_secs_f64());
        }
        let to_launch = self.batch_to_last_launch();
        if let Some(d) = to_launch {
            m.batch_to_last_launch_seconds.observe(d.as_secs_f64());
        }
        for (phase, d, cpu) in &self.phases {
            m.pass_phase_seconds
                .get_or_create(&[("phase", phase)])
                .observe(d.as_secs_f64());
            if let Some(cpu) = cpu {
                m.pass_phase_cpu_seconds
                    .get_or_create(&[("phase", phase)])
                    .observe(cpu.as_secs_f64());
            }
        }
        tracing::debug!(
            "{} pass: {wall:.3?} wall, {} CPU{}; {}",
            self.trigger.label(),
            cpu.map(|c| format!("{c:.3?}"))
                .unwrap_or_else(|| "?".into()),
            to_launch
                .map(|d| format!(", last launch {d:.3?} after the batch closed"))
                .unwrap_or_default(),
            summary(&self.phases),
        );
    }
}

/// `snapshot 12ms (CPU 11ms), solve 40ms (CPU 40ms), ...`
fn summary(phases: &[(&'static str, Duration, Option<Duration>)]) -> String {
    phases
        .iter()
        .map(|(p, d, cpu)| match cpu {
            Some(c) => format!("{p} {d:.1?} (CPU {c:.1?})"),
            None => format!("{p} {d:.1?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn only_a_batch_pass_that_launched_measures_batch_to_launch() {
        let closed = Instant::now();
        let mut c = PassClock::start(Trigger::Batch(closed));
        assert_eq!(c.batch_to_last_launch(), None, "nothing launched yet");
        c.phase("snapshot");
        c.launched();
        let first = c.batch_to_last_launch();
        std::thread::sleep(Duration::from_millis(2));
        c.launched();
        let last = c.batch_to_last_launch();
        assert!(
            last > first,
            "the last launch counts: {first:?} then {last:?}"
        );

        let resync = PassClock::start(Trigger::Resync);
        resync.launched();
        assert_eq!(resync.batch_to_last_launch(), None);

        let mut r = Registry::with_prefix("nodewright");
        let m = Metrics::new(r.sub_registry_with_prefix("controller"));
        c.finish(&m);
        resync.finish(&m);
        let mut text = String::new();
        encode(&mut text, &r).unwrap_or_else(|e| panic!("{e}"));
        for line in [
            "nodewright_controller_pass_seconds_count{trigger=\"batch\"} 1",
            "nodewright_controller_pass_seconds_count{trigger=\"resync\"} 1",
            "nodewright_controller_pass_cpu_seconds_count{trigger=\"batch\"} 1",
            "nodewright_controller_batch_to_last_launch_seconds_count 1",
            "nodewright_controller_pass_phase_seconds_count{phase=\"snapshot\"} 1",
            "nodewright_controller_pass_phase_cpu_seconds_count{phase=\"snapshot\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
