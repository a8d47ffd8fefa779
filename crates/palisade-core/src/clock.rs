//! Injected time and randomness, so tests move the clock instead of sleeping.

use std::sync::Mutex;
use time::OffsetDateTime;

/// The source of "now" for every decision that depends on time (expiry, lockout, retention).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// Wall-clock time in UTC.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves when a test tells it to, plus an optional fixed tick on every reading, so
/// that events in one test get distinct, ordered timestamps (and ids) without sleeping.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
    tick: time::Duration,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self { now: Mutex::new(start), tick: time::Duration::ZERO }
    }

    /// A clock that also advances by `tick` each time it is read.
    pub fn ticking(start: OffsetDateTime, tick: time::Duration) -> Self {
        Self { now: Mutex::new(start), tick }
    }

    pub fn advance(&self, by: time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let reading = *now;
        *now += self.tick;
        reading
    }
}

/// The source of unpredictable bytes for ids and secrets.
pub trait Randomness: Send + Sync + 'static {
    fn fill(&self, dest: &mut [u8]);
}

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRandomness;

impl Randomness for SystemRandomness {
    fn fill(&self, dest: &mut [u8]) {
        // A failing OS RNG leaves us unable to mint secrets safely: stopping is the only safe answer.
        getrandom::getrandom(dest).expect("the operating system's random number generator failed");
    }
}
