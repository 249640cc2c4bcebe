//! The endpoints the poller reports on, and the slot that keeps an
//! endpoint's last good data with the time it was fetched.

use std::time::{Duration, Instant};

/// An endpoint as the exporter's self-metrics name it (`endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// API version detection (`/ping` of each version).
    Version,
    Jobs,
    JobsState,
    Job,
    Nodes,
    Partitions,
    Shares,
    Diag,
    Associations,
    Qos,
}

impl Endpoint {
    /// The `endpoint` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Version => "version",
            Endpoint::Jobs => "jobs",
            Endpoint::JobsState => "jobs_state",
            Endpoint::Job => "job",
            Endpoint::Nodes => "nodes",
            Endpoint::Partitions => "partitions",
            Endpoint::Shares => "shares",
            Endpoint::Diag => "diag",
            Endpoint::Associations => "associations",
            Endpoint::Qos => "qos",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An endpoint's last good data and when it was fetched (or confirmed
/// unchanged); served as stale after failures until it is too old.
#[derive(Debug, Clone)]
pub struct Slot<T>(Option<(T, Instant)>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(None)
    }
}

impl<T> Slot<T> {
    /// Keeps `value` as fetched `at`.
    pub fn keep(&mut self, value: T, at: Instant) {
        self.0 = Some((value, at));
    }

    /// The kept data is current as of `at` (unchanged, or not due).
    pub fn touch(&mut self, at: Instant) {
        if let Some((_, t)) = self.0.as_mut() {
            *t = at;
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.0.as_ref().map(|(v, _)| v)
    }

    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }

    /// Drops data older than `max`; true if it did.
    pub fn expire(&mut self, max: Duration) -> bool {
        if self.0.as_ref().is_some_and(|(_, at)| at.elapsed() > max) {
            self.0 = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keeps_touches_and_expires() {
        let mut s: Slot<u32> = Slot::default();
        assert!(!s.is_some());
        s.touch(Instant::now()); // nothing kept: stays empty
        assert_eq!(s.get(), None);
        let old = Instant::now() - Duration::from_secs(100);
        s.keep(7, old);
        assert_eq!(s.get(), Some(&7));
        assert!(!s.expire(Duration::from_secs(200)));
        s.touch(Instant::now());
        assert!(!s.expire(Duration::from_secs(50)), "touched: current");
        s.keep(8, old);
        assert!(s.expire(Duration::from_secs(50)));
        assert!(!s.is_some());
    }

    #[test]
    fn labels_are_stable() {
        assert_eq!(Endpoint::JobsState.as_str(), "jobs_state");
        assert_eq!(Endpoint::Qos.to_string(), "qos");
    }
}
