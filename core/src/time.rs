//! Time as the host hands it in: core never reads a clock.

use std::fmt;

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as passed in by the host.
///
/// Wall-clock time, because it is also the timestamp a message carries. Core never lets it run
/// backwards: a `now` older than one already seen is treated as the newest seen (see
/// [`Core`](crate::Core)), so a host whose clock steps back cannot reorder deadlines or messages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// This timestamp plus `d`, saturating at the far future.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(millis(d)))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl From<SystemTime> for Timestamp {
    /// Converts a wall-clock reading the host took; times before the epoch become the epoch.
    fn from(t: SystemTime) -> Self {
        Timestamp(t.duration_since(UNIX_EPOCH).map_or(0, millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Whole milliseconds in `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(u64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(1)).as_unix_millis(),
            u64::MAX
        );
        assert_eq!(Timestamp::EPOCH.saturating_since(t), Duration::ZERO);
        assert_eq!(
            Timestamp::from_unix_millis(1_500).saturating_since(Timestamp::from_unix_millis(500)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn converts_from_system_time() {
        let t = UNIX_EPOCH + Duration::from_millis(1_234);
        assert_eq!(Timestamp::from(t).as_unix_millis(), 1_234);
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(Timestamp::from(before), Timestamp::EPOCH);
    }
}
