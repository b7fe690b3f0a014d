//! What an operator changes on a running broker (Kafka's admin APIs): a topic grown by more
//! partitions, a topic's configs altered, records deleted from the front of a partition. Each
//! takes effect at once, survives a restart, and is refused whole if any part of it is
//! invalid, as in Kafka.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_storage::meta::{MAX_PARTITIONS, TopicMeta};

use super::config::TopicConfig;
use super::error::{BrokerError, ErrorKind, err};
use super::{Broker, Partition, Topic};

impl Broker {
    /// Grows topic `name` to `count` partitions (Kafka's CreatePartitions). Keys then map by
    /// the new count, as in Kafka. The metadata file with the new count is written first, then
    /// the partitions are created (a crash in between leaves partitions the next start creates
    /// empty); a directory already there for a new partition (left by an earlier topic of this
    /// name) is refused before anything changes, and if a partition fails to open the old
    /// count is written back and the new ones removed. Returns the old count.
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<i32, BrokerError> {
        let _g = self.admin.lock();
        let topic = self.existing_topic(name)?;
        let old = topic.partitions.len() as i32;
        if count <= old {
            return Err(err(
                ErrorKind::InvalidPartitions,
                if count == old {
                    format!("topic {name:?} already has {old} partitions")
                } else {
                    format!(
                        "topic {name:?} has {old} partitions, more than the {count} asked for: partitions can only be added"
                    )
                },
            ));
        }
        if count > MAX_PARTITIONS {
            return Err(err(
                ErrorKind::InvalidPartitions,
                format!("number of partitions must be at most {MAX_PARTITIONS}, got {count}"),
            ));
        }
        for p in old..count {
            let dir = self.partition_dir(name, p);
            if dir.exists() {
                return Err(err(
                    ErrorKind::Storage,
                    format!(
                        "{} already exists, left by an earlier topic of this name; remove it to add the partition",
                        dir.display()
                    ),
                ));
            }
        }
        if validate_only {
            return Ok(old);
        }
        let producer_expiration_ms = self
            .config
            .producer_id_expiration_ms()
            .map_err(|e| err(ErrorKind::InvalidConfig, format!("{e:#}")))?;
        let meta = |partitions| TopicMeta {
            name: name.to_string(),
            partitions,
            id: format!("{:032x}", topic.id),
            configs: topic.config.overrides.clone(),
            hosted: topic.hosted_list(),
        };
        self.write_meta(&meta(count))?;
        let mut added: Vec<Arc<Partition>> = Vec::new();
        for p in old..count {
            let partition = Arc::new(Partition::open(
                name,
                p,
                self.partition_dir(name, p),
                topic.config.log,
                self.backend.clone(),
                producer_expiration_ms,
                self.checkpointed_high_watermark(name, p),
            ));
            let offline = partition.offline();
            added.push(partition);
            if let Some(o) = offline {
                let message = format!(
                    "adding partition {p} to {name} failed, so none was added: {}",
                    o.reason
                );
                if let Err(e) = self.write_meta(&meta(old)) {
                    tracing::error!(topic = name, error = %e, "writing back the old partition count failed: the next start opens the new partitions empty");
                }
                self.remove_partitions(name, added);
                return Err(err(ErrorKind::Storage, message));
            }
        }
        let mut partitions = topic.partitions.clone();
        partitions.extend(added);
        self.topics.write().insert(
            name.to_string(),
            Arc::new(Topic {
                name: topic.name.clone(),
                id: topic.id,
                partitions,
                config: topic.config.clone(),
            }),
        );
        tracing::info!(topic = name, from = old, to = count, "added partitions");
        Ok(old)
    }

    /// Replaces topic `name`'s config overrides with `overrides` (what AlterConfigs sets;
    /// IncrementalAlterConfigs computes it from the current ones). Validated as at creation;
    /// persisted in the topic's metadata file; then every partition's log takes the new
    /// settings at once ([`strata_storage::log::PartitionLog::reconfigure`]), and produce
    /// uses the new compression, timestamp type and largest batch from the next request.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let _g = self.admin.lock();
        let topic = self.existing_topic(name)?;
        let config = TopicConfig::resolve(&self.topic_defaults(), overrides.clone())
            .map_err(|e| err(ErrorKind::InvalidConfig, format!("{e:#}")))?;
        if validate_only || overrides == topic.config.overrides {
            return Ok(());
        }
        self.write_meta(&TopicMeta {
            name: name.to_string(),
            partitions: topic.partitions.len() as i32,
            id: format!("{:032x}", topic.id),
            configs: overrides,
            hosted: topic.hosted_list(),
        })?;
        for p in &topic.partitions {
            // An offline partition takes them when it is reopened (it reads the topic's).
            if let Ok(log) = p.log()
                && let Err(e) = log.reconfigure(config.log)
            {
                tracing::warn!(partition = %format!("{name}-{}", p.index), error = %e, "a partition did not take the new settings; it takes them when reopened");
            }
        }
        self.topics.write().insert(
            name.to_string(),
            Arc::new(Topic {
                name: topic.name.clone(),
                id: topic.id,
                partitions: topic.partitions.clone(),
                config,
            }),
        );
        tracing::info!(topic = name, "topic configs changed");
        Ok(())
    }

    /// Moves the log start offset of `topic`-`partition` up to `offset` (Kafka's
    /// DeleteRecords; -1 means the high watermark), durably before it returns. Returns the new
    /// log start offset (Kafka's low watermark).
    pub fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<u64, BrokerError> {
        let p = self.partition(topic, partition).ok_or_else(|| {
            err(
                ErrorKind::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            )
        })?;
        let log = p.log()?;
        let target = match offset {
            -1 => log.high_watermark(),
            o if o < 0 => {
                return Err(err(
                    ErrorKind::OffsetOutOfRange,
                    format!("offset {o} is not an offset or -1 (the high watermark)"),
                ));
            }
            o => o as u64,
        };
        match log.delete_records_before(target) {
            Ok(start) => Ok(start),
            Err(strata_storage::Error::OffsetOutOfRange { log_end, .. }) => Err(err(
                ErrorKind::OffsetOutOfRange,
                format!("offset {target} is past the high watermark {log_end}"),
            )),
            Err(e) => Err(err(ErrorKind::Storage, e.to_string())),
        }
    }

    /// Swaps `topic` for one with `config` (same partitions and id).
    pub(super) fn replace_topic_config(&self, topic: &Topic, config: TopicConfig) {
        self.topics.write().insert(
            topic.name.clone(),
            Arc::new(Topic {
                name: topic.name.clone(),
                id: topic.id,
                partitions: topic.partitions.clone(),
                config,
            }),
        );
    }

    fn existing_topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(reason) = self.damaged_topic(name) {
            return Err(err(
                ErrorKind::Storage,
                format!("topic {name:?} is offline: its metadata file is damaged ({reason})"),
            ));
        }
        self.topic(name).ok_or_else(|| {
            err(
                ErrorKind::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            )
        })
    }

    fn write_meta(&self, meta: &TopicMeta) -> Result<(), BrokerError> {
        strata_storage::meta::write_topic(self.backend.as_ref(), &self.config.data_dir(), meta)
            .map_err(|e| err(ErrorKind::Storage, e.to_string()))
    }
}

/// The leader epoch of every partition of a single broker: it has led them all since they
/// were created (Metadata reports it; cluster part 2 makes it change).
pub const SINGLE_BROKER_LEADER_EPOCH: i32 = 0;

impl Broker {
    /// Where leader epoch `epoch` ends in `topic`-`partition` (Kafka's OffsetForLeaderEpoch,
    /// KIP-101/KIP-279): `(epoch, end offset)`, the largest epoch at or below the one asked for
    /// and the start of the next, or the log end for the latest; `(-1, -1)` for an epoch newer
    /// than any. `current_leader_epoch` (-1: unchecked) must be the partition's, as in Kafka:
    /// older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
    pub fn end_offset_for_epoch(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64), BrokerError> {
        let p = self.partition(topic, partition).ok_or_else(|| {
            err(
                ErrorKind::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            )
        })?;
        let log = p.log()?;
        let logged = log.leader_epochs().last().map(|e| e.epoch);
        // In a cluster the quorum's epoch may be newer than any batch (no append since the
        // leader changed): Kafka's leader records it at election; here it is the partition's.
        let current = logged
            .unwrap_or(SINGLE_BROKER_LEADER_EPOCH)
            .max(p.leader_epoch().unwrap_or(SINGLE_BROKER_LEADER_EPOCH));
        if current_leader_epoch >= 0 && current_leader_epoch < current {
            return Err(err(
                ErrorKind::FencedLeaderEpoch,
                format!("leader epoch {current_leader_epoch} is older than {current}"),
            ));
        }
        if current_leader_epoch > current {
            return Err(err(
                ErrorKind::UnknownLeaderEpoch,
                format!("leader epoch {current_leader_epoch} is newer than {current}"),
            ));
        }
        if let Some(l) = logged
            && epoch > l
            && epoch <= current
        {
            // The current epoch, which no batch carries yet: it ends at the log end.
            return Ok((epoch, log.log_end_offset() as i64));
        }
        if logged.is_none() {
            // One epoch since the log began: it ends at the log end.
            return Ok(if epoch == SINGLE_BROKER_LEADER_EPOCH || epoch == current {
                (epoch, log.log_end_offset() as i64)
            } else {
                (-1, -1)
            });
        }
        let e = log.end_offset_for_epoch(epoch);
        Ok((e.epoch, e.end_offset))
    }
}
