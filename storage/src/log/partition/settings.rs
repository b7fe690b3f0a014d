//! Changing a running log's settings (Kafka's dynamic topic configs: AlterConfigs and
//! IncrementalAlterConfigs take effect without a restart).
//!
//! What may change: `segment_bytes`, `segment_ms`, `retention_ms`, `retention_bytes`, `fsync`
//! and `flush_messages` (`flush.ms` / `flush.messages`), `index_interval_bytes`,
//! `max_batch_bytes` (`max.message.bytes`) and `preallocate`. Each applies from the next
//! operation that reads it, as in Kafka: a smaller `segment.bytes` rolls at the next append
//! that crosses it, a new retention at the next retention pass, a new flush interval from now.
//! The rest (write mode, recovery mode, the direct cache, locking, replication, the idle close
//! and the retention check interval, which are the process's) cannot change on a running log.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::log::config::{FsyncPolicy, LogConfig};

use super::state::Inner;

impl Inner {
    pub fn reconfigure(&self, new: LogConfig) -> Result<()> {
        new.validate()?;
        let old = self.config();
        let fixed = [
            ("write_mode", old.write_mode == new.write_mode),
            ("recovery", old.recovery == new.recovery),
            (
                "direct_cache_bytes",
                old.direct_cache_bytes == new.direct_cache_bytes,
            ),
            ("lock_dir", old.lock_dir == new.lock_dir),
            ("replicated", old.replicated == new.replicated),
            (
                "idle_file_close",
                old.idle_file_close == new.idle_file_close,
            ),
            (
                "retention_check_interval",
                old.retention_check_interval == new.retention_check_interval,
            ),
        ];
        if let Some((name, _)) = fixed.iter().find(|(_, same)| !same) {
            return Err(Error::Config(format!(
                "{name} cannot change while the log is open"
            )));
        }
        // As the leader, so no append is written meanwhile: the active segment can hold what
        // the new settings let it grow to before any append is sized by them.
        self.with_leader(|inner, core| {
            core.active.grow_map(new.max_segment_len());
            *inner.settings.lock() = new;
            Ok(())
        })?;
        if old.fsync != new.fsync {
            let mut d = self.deadlines.lock();
            d.flush = match new.fsync {
                FsyncPolicy::Interval(i) => Some(Instant::now() + i),
                _ => None,
            };
            let next = [d.flush, d.retention, d.sweep].into_iter().flatten().min();
            drop(d);
            if let Some(at) = next {
                let me: std::sync::Weak<dyn super::super::runtime::Timed> = self.me.clone();
                self.runtime.wake_at(at, me);
            }
        }
        tracing::debug!(dir = %self.dir.display(), ?new, "log settings changed");
        Ok(())
    }
}
