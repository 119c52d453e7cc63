//! [`SimConfig`]: the simulated network's latency model and fault parameters, and the [`Fault`]s a node
//! can be given.

use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

use crate::config::ConfigError;

/// A closed range of durations `[min, max]`, sampled uniformly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Shortest duration.
    pub min: Duration,
    /// Longest duration (a `max` below `min` is treated as `min`).
    pub max: Duration,
}

impl Span {
    /// The range `[min, max]`.
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// Bounds in nanoseconds, `max` raised to `min` if it is below it.
    fn bounds_ns(&self) -> (u64, u64) {
        let min = u64::try_from(self.min.as_nanos()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max.as_nanos()).unwrap_or(u64::MAX);
        (min, max.max(min))
    }

    /// Draws a duration uniformly from the range.
    pub fn sample(&self, rng: &mut StdRng) -> Duration {
        let (min, max) = self.bounds_ns();
        Duration::from_nanos(if min == max {
            min
        } else {
            rng.random_range(min..=max)
        })
    }

    /// The duration at position `h / 2^64` of the range: maps a uniform 64-bit hash to a uniform duration.
    pub fn at(&self, h: u64) -> Duration {
        let (min, max) = self.bounds_ns();
        let width = u128::from(max - min) + 1;
        let offset = (width * u128::from(h)) >> 64;
        Duration::from_nanos(min.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX)))
    }

    fn validate(&self, key: &'static str) -> Result<(), ConfigError> {
        if self.max < self.min {
            return Err(ConfigError {
                key,
                reason: format!("max {:?} is below min {:?}", self.max, self.min),
            });
        }
        Ok(())
    }
}

/// How long a message takes from one node to another (one way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    /// Every pair of nodes has its own fixed, symmetric one-way latency, drawn uniformly from the range by
    /// hashing the network seed with the two nodes' indices (so it does not depend on the order in which
    /// links are used). The default, 5 to 50 ms, models nodes spread over a region.
    UniformPerLink(Span),
    /// Every message draws its own latency uniformly from the range (per-link FIFO order still holds: a
    /// message is never delivered before one sent earlier on the same link).
    UniformPerMessage(Span),
}

impl Latency {
    /// The range latencies are drawn from.
    pub fn span(&self) -> Span {
        match self {
            Latency::UniformPerLink(s) | Latency::UniformPerMessage(s) => *s,
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::UniformPerLink(Span::new(
            Duration::from_millis(5),
            Duration::from_millis(50),
        ))
    }
}

/// Parameters of a simulated network. Every field has a default (the issue's).
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// One-way latency of every message (default: per link, uniform 5 to 50 ms).
    pub latency: Latency,
    /// Probability that a message into or out of a [`Fault::Drop`] node is lost (default 0.5). With both
    /// ends faulty, each end loses it independently. Values outside `[0, 1]` are clamped.
    pub drop_rate: f64,
    /// Extra delay a [`Fault::Delay`] node adds to each message into or out of it, drawn per message
    /// (default uniform 0 to 3 s, so some exceed the default 5 s request timeout on a round trip). With
    /// both ends faulty, both draws are added.
    pub delay: Span,
    /// A [`Fault::Disconnect`] node goes offline at a moment drawn uniformly from this long after the
    /// fault is set (default 10 s).
    pub disconnect_window: Duration,
    /// Messages queued on one link (one direction between two nodes) before senders wait (default 64).
    pub link_queue: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Latency::default(),
            drop_rate: 0.5,
            delay: Span::new(Duration::ZERO, Duration::from_secs(3)),
            disconnect_window: Duration::from_secs(10),
            link_queue: 64,
        }
    }
}

impl SimConfig {
    /// Checks the values: ranges with `min <= max`, `drop_rate` in `[0, 1]`, `link_queue > 0`.
    ///
    /// [`SimNetwork::new`](super::SimNetwork::new) accepts any config and normalises it (clamps the drop
    /// rate, treats a `max` below `min` as `min`, a zero queue as 1); call this to be told instead.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.latency.span().validate("sim.latency")?;
        self.delay.validate("sim.delay")?;
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return Err(ConfigError {
                key: "sim.drop_rate",
                reason: format!("{} is not a probability in [0, 1]", self.drop_rate),
            });
        }
        if self.link_queue == 0 {
            return Err(ConfigError {
                key: "sim.link_queue",
                reason: "must be greater than 0".into(),
            });
        }
        Ok(())
    }

    /// The config with out-of-range values made usable (see [`SimConfig::validate`]).
    pub(crate) fn normalised(mut self) -> Self {
        self.drop_rate = if self.drop_rate.is_nan() {
            0.0
        } else {
            self.drop_rate.clamp(0.0, 1.0)
        };
        self.link_queue = self.link_queue.max(1);
        self
    }
}

/// A fault applied to one node (see [`SimNetwork::set_fault`](super::SimNetwork::set_fault)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Fault {
    /// Healthy.
    #[default]
    None,
    /// Each message into or out of the node is lost with probability [`SimConfig::drop_rate`].
    Drop,
    /// Each message into or out of the node is delayed by an extra draw from [`SimConfig::delay`].
    Delay,
    /// The node goes offline at a random moment within [`SimConfig::disconnect_window`].
    Disconnect,
}

impl Fault {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Fault::None => 0,
            Fault::Drop => 1,
            Fault::Delay => 2,
            Fault::Disconnect => 3,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Fault {
        match v {
            1 => Fault::Drop,
            2 => Fault::Delay,
            3 => Fault::Disconnect,
            _ => Fault::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn spans_sample_inside_their_bounds() {
        let span = Span::new(Duration::from_millis(5), Duration::from_millis(50));
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let d = span.sample(&mut rng);
            assert!(d >= span.min && d <= span.max, "{d:?}");
        }
        assert_eq!(span.at(0), span.min);
        assert_eq!(span.at(u64::MAX), span.max);
        let fixed = Span::new(Duration::from_millis(7), Duration::from_millis(7));
        assert_eq!(fixed.sample(&mut rng), fixed.min);
        assert_eq!(fixed.at(12345), fixed.min);
        // A max below min is treated as min.
        let inverted = Span::new(Duration::from_millis(9), Duration::from_millis(1));
        assert_eq!(inverted.sample(&mut rng), inverted.min);
        assert_eq!(inverted.at(u64::MAX), inverted.min);
    }

    #[test]
    fn validation_names_the_bad_key() {
        assert!(SimConfig::default().validate().is_ok());
        let bad = SimConfig {
            drop_rate: 1.5,
            ..SimConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "sim.drop_rate");
        assert_eq!(bad.normalised().drop_rate, 1.0);
        let bad = SimConfig {
            delay: Span::new(Duration::from_secs(2), Duration::from_secs(1)),
            ..SimConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "sim.delay");
        let bad = SimConfig {
            link_queue: 0,
            ..SimConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "sim.link_queue");
        assert_eq!(bad.normalised().link_queue, 1);
    }

    #[test]
    fn faults_round_trip_through_their_code() {
        for f in [Fault::None, Fault::Drop, Fault::Delay, Fault::Disconnect] {
            assert_eq!(Fault::from_u8(f.to_u8()), f);
        }
    }
}
