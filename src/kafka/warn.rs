//! Rate-limited warnings, so a client cannot flood the log.

/// Warnings about what clients send that are rate-limited: at most one line per
/// [`WARN_INTERVAL`], with how many were left out, so a client cannot flood the log.
pub(crate) static FRAME_WARNINGS: RateLimitedWarn = RateLimitedWarn::new();

/// Back-pressure on the request budget, at most one line per [`WARN_INTERVAL`].
pub(crate) static BUDGET_NOTICES: RateLimitedWarn = RateLimitedWarn::new();

/// The least time between two rate-limited warnings.
const WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A warning logged at most once per [`WARN_INTERVAL`]; the next one says how many were
/// suppressed meanwhile. Every one is logged at debug level.
#[derive(Debug)]
pub struct RateLimitedWarn {
    state: parking_lot::Mutex<Option<(std::time::Instant, u64)>>,
}

impl RateLimitedWarn {
    pub const fn new() -> Self {
        RateLimitedWarn {
            state: parking_lot::const_mutex(None),
        }
    }

    pub fn warn(&self, message: &str) {
        self.log(tracing::Level::WARN, message);
    }

    /// As [`RateLimitedWarn::warn`], at info level (normal operation worth seeing).
    pub fn info(&self, message: &str) {
        self.log(tracing::Level::INFO, message);
    }

    fn log(&self, level: tracing::Level, message: &str) {
        let now = std::time::Instant::now();
        let mut state = self.state.lock();
        match &mut *state {
            Some((last, suppressed)) if now.duration_since(*last) < WARN_INTERVAL => {
                *suppressed += 1;
                tracing::debug!("{message}");
            }
            _ => {
                let suppressed = state.map_or(0, |(_, n)| n);
                *state = Some((now, 0));
                drop(state);
                let line = if suppressed > 0 {
                    format!("{message} (and {suppressed} more like it since the last such line)")
                } else {
                    message.to_string()
                };
                if level == tracing::Level::WARN {
                    tracing::warn!("{line}");
                } else {
                    tracing::info!("{line}");
                }
            }
        }
    }
}

impl Default for RateLimitedWarn {
    fn default() -> Self {
        Self::new()
    }
}
