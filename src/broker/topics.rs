//! Topics: names, creation (all partitions or none), deletion (offsets, metadata, data), and
//! what start-up finds (damaged metadata files, directories of no topic).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_storage::meta::{MAX_PARTITIONS, TopicMeta, parse_partition_dir};

use super::config::TopicConfig;
use super::error::{BrokerError, ErrorKind, err};
use super::{Broker, Partition, groups, random_u128};

/// Kafka's rule for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be \".\" or \"..\"".into());
    }
    if name == "__consumer_offsets" {
        return Err("__consumer_offsets is reserved for committed offsets".into());
    }
    if name == "__cluster_metadata" {
        return Err("__cluster_metadata is reserved for the metadata log".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name contains {c:?}: only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}

/// The topics by name, and their names by topic id (Fetch v13+ and Produce v13 name topics by
/// id: a lookup per topic asked, not a scan).
#[derive(Debug, Default)]
pub struct TopicMap {
    pub by_name: BTreeMap<String, Arc<Topic>>,
    by_id: std::collections::HashMap<u128, String>,
}

impl TopicMap {
    pub fn insert(&mut self, name: String, topic: Arc<Topic>) {
        self.by_id.insert(topic.id, name.clone());
        if let Some(old) = self.by_name.insert(name, topic)
            && self.by_name.values().all(|t| t.id != old.id)
        {
            self.by_id.remove(&old.id);
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<Topic>> {
        let t = self.by_name.remove(name)?;
        self.by_id.remove(&t.id);
        Some(t)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Topic>> {
        self.by_name.get(name)
    }

    pub fn by_id(&self, id: u128) -> Option<&Arc<Topic>> {
        self.by_id.get(&id).and_then(|n| self.by_name.get(n))
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.by_name.values()
    }
}

/// A topic: its partitions and effective configuration.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: u128,
    pub partitions: Vec<Arc<Partition>>,
    pub config: TopicConfig,
}

impl Topic {
    /// The partitions this broker holds, `None` when it holds them all (as
    /// [`TopicMeta::hosted`] records it).
    pub fn hosted_list(&self) -> Option<Vec<i32>> {
        if self.partitions.iter().all(|p| p.is_hosted()) {
            None
        } else {
            Some(
                self.partitions
                    .iter()
                    .filter(|p| p.is_hosted())
                    .map(|p| p.index)
                    .collect(),
            )
        }
    }
}

impl Broker {
    /// Deletes committed offsets of topics that no longer exist: a crash in the middle of a
    /// topic deletion, or a data directory from a version that kept them.
    pub(super) fn forget_offsets_of_deleted_topics(&self) -> Result<()> {
        for t in self.groups.offsets.topics() {
            if self.topic(&t).is_none() && self.damaged_topic(&t).is_none() {
                self.groups.offsets.delete_topic(&t).with_context(|| {
                    format!("deleting the committed offsets of deleted topic {t:?}")
                })?;
            }
        }
        Ok(())
    }

    /// Logs every directory of the data dir that looks like a partition (`<topic>-<n>`) of no
    /// topic the broker knows: left by a crash in the middle of a topic creation or deletion,
    /// or by hand. They are kept for the operator (`strata verify` lists them too).
    pub(super) fn report_orphan_dirs(&self) -> Vec<PathBuf> {
        let data_dir = self.config.data_dir();
        let Ok(entries) = std::fs::read_dir(&data_dir) else {
            return Vec::new();
        };
        let mut orphans = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let Some((topic, index)) = name.to_str().and_then(parse_partition_dir) else {
                continue;
            };
            if name.to_str() == Some(groups::offsets::OFFSETS_DIR)
                || name.to_str() == Some(crate::cluster::log_store::METADATA_LOG_DIR)
                || self.damaged_topics.read().contains_key(topic)
            {
                continue;
            }
            let known = self
                .topic(topic)
                .is_some_and(|t| usize::try_from(index).is_ok_and(|i| i < t.partitions.len()));
            if !known {
                tracing::warn!(dir = %entry.path().display(), "partition directory of no topic: left as it is (remove it, or recreate its topic)");
                orphans.push(entry.path());
            }
        }
        orphans
    }

    /// Partitions this broker holds whose log is offline (damaged, or its disk failed or
    /// filled), as (topic, partition).
    pub fn offline_partitions(&self) -> Vec<(String, i32)> {
        self.topics()
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.offline().is_some())
                    .map(|p| (t.name.clone(), p.index))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Why a topic is offline because its metadata file is damaged, if it is.
    pub fn damaged_topic(&self, name: &str) -> Option<String> {
        self.damaged_topics.read().get(name).cloned()
    }

    /// Topics whose metadata file is damaged, with the reason.
    pub fn damaged_topics(&self) -> Vec<(String, String)> {
        self.damaged_topics
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(super) fn partition_dir(&self, topic: &str, p: i32) -> PathBuf {
        strata_storage::meta::partition_dir(&self.config.data_dir(), topic, p)
    }

    pub(super) fn open_topic(&self, meta: &TopicMeta) -> Result<Arc<Topic>> {
        let config = TopicConfig::resolve(&self.topic_defaults(), meta.configs.clone())?;
        let producer_expiration_ms = self.config.producer_id_expiration_ms()?;
        let mut partitions = Vec::new();
        for p in 0..meta.partitions {
            let dir = self.partition_dir(&meta.name, p);
            partitions.push(Arc::new(if meta.hosts(p) {
                Partition::open(
                    &meta.name,
                    p,
                    dir,
                    config.log,
                    self.backend.clone(),
                    producer_expiration_ms,
                    self.checkpointed_high_watermark(&meta.name, p),
                )
            } else {
                Partition::elsewhere(
                    &meta.name,
                    p,
                    dir,
                    self.backend.clone(),
                    producer_expiration_ms,
                )
            }));
        }
        Ok(Arc::new(Topic {
            name: meta.name.clone(),
            id: meta.id_value(),
            partitions,
            config,
        }))
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The topic whose id is `id` (ids are new for every creation, so a re-created topic's old
    /// id finds nothing).
    pub fn topic_by_id(&self, id: u128) -> Option<Arc<Topic>> {
        self.topics.read().by_id(id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let t = self.topic(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .cloned()
    }

    /// Creates a topic. Errors carry the Kafka code to answer with.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, BrokerError> {
        validate_topic_name(name).map_err(|m| err(ErrorKind::InvalidTopic, m))?;
        let partitions = if partitions == -1 {
            self.config.num_partitions().unwrap_or(1)
        } else {
            partitions
        };
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(err(
                ErrorKind::InvalidPartitions,
                format!("number of partitions must be in 1..={MAX_PARTITIONS}, got {partitions}"),
            ));
        }
        let config = TopicConfig::resolve(&self.topic_defaults(), overrides.clone())
            .map_err(|e| err(ErrorKind::InvalidConfig, format!("{e:#}")))?;
        let _g = self.admin.lock();
        if let Some(t) = self.topic(name) {
            return Err(err(
                ErrorKind::TopicAlreadyExists,
                format!("topic {:?} already exists", t.name),
            ));
        }
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.into(),
                id: 0,
                partitions: Vec::new(),
                config,
            }));
        }
        if let Some(reason) = self.damaged_topic(name) {
            return Err(err(
                ErrorKind::Storage,
                format!(
                    "topic {name:?} exists but its metadata file is damaged ({reason}); delete the topic first"
                ),
            ));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            partitions,
            id: format!("{:032x}", random_u128()),
            configs: overrides,
            hosted: None,
        };
        let storage_err = |e: anyhow::Error| err(ErrorKind::Storage, format!("{e:#}"));
        // All or nothing: the partitions first (a failure removes the ones made), then the
        // metadata file that makes the topic exist. A crash in between leaves directories of no
        // topic, which the next start reports.
        let made = self.create_partitions(&meta, &config)?;
        if let Err(e) =
            strata_storage::meta::write_topic(self.backend.as_ref(), &self.config.data_dir(), &meta)
        {
            self.remove_partitions(name, made);
            return Err(storage_err(e.into()));
        }
        let topic = Arc::new(Topic {
            name: meta.name.clone(),
            id: meta.id_value(),
            partitions: made,
            config,
        });
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// In a cluster: makes the local topic what the metadata log says (`meta`, with the
    /// partitions this broker holds in `meta.hosted`). A topic seen for the first time is
    /// created; one with more partitions, or other hosted ones, is extended (partitions kept
    /// are not reopened). A topic of this name with another id must be deleted first (the
    /// caller does: [`Broker::delete_topic`]).
    pub fn host_topic(&self, meta: &TopicMeta) -> Result<Arc<Topic>, BrokerError> {
        let config = TopicConfig::resolve(&self.topic_defaults(), meta.configs.clone())
            .map_err(|e| err(ErrorKind::InvalidConfig, format!("{e:#}")))?;
        let producer_expiration_ms = self
            .config
            .producer_id_expiration_ms()
            .map_err(|e| err(ErrorKind::InvalidConfig, format!("{e:#}")))?;
        let _g = self.admin.lock();
        let existing = self.topic(&meta.name).filter(|t| t.id == meta.id_value());
        let mut partitions = Vec::new();
        let mut made = Vec::new();
        for p in 0..meta.partitions {
            let hosted = meta.hosts(p);
            let kept = existing
                .as_ref()
                .and_then(|t| t.partitions.get(usize::try_from(p).unwrap_or(usize::MAX)))
                .filter(|x| x.is_hosted() == hosted);
            let dir = self.partition_dir(&meta.name, p);
            let partition = match kept {
                Some(x) => x.clone(),
                None if hosted => {
                    let x = Arc::new(Partition::open(
                        &meta.name,
                        p,
                        dir,
                        config.log,
                        self.backend.clone(),
                        producer_expiration_ms,
                        self.checkpointed_high_watermark(&meta.name, p),
                    ));
                    made.push(x.clone());
                    x
                }
                None => Arc::new(Partition::elsewhere(
                    &meta.name,
                    p,
                    dir,
                    self.backend.clone(),
                    producer_expiration_ms,
                )),
            };
            partitions.push(partition);
        }
        if let Err(e) =
            strata_storage::meta::write_topic(self.backend.as_ref(), &self.config.data_dir(), meta)
        {
            if existing.is_none() {
                self.remove_partitions(&meta.name, made);
            }
            return Err(err(ErrorKind::Storage, format!("{e:#}")));
        }
        let topic = Arc::new(Topic {
            name: meta.name.clone(),
            id: meta.id_value(),
            partitions,
            config,
        });
        self.topics.write().insert(meta.name.clone(), topic.clone());
        tracing::info!(topic = %meta.name, partitions = meta.partitions, hosted = ?meta.hosted, "topic placed on this broker");
        Ok(topic)
    }

    /// Creates every partition of a new topic, or none: a partition directory that already
    /// exists (of an earlier topic of this name whose deletion a crash interrupted) is refused
    /// rather than reused, and if one partition fails to open (a full disk, out of file
    /// descriptors or threads) the ones already made are removed.
    fn create_partitions(
        &self,
        meta: &TopicMeta,
        config: &TopicConfig,
    ) -> Result<Vec<Arc<Partition>>, BrokerError> {
        let producer_expiration_ms = self
            .config
            .producer_id_expiration_ms()
            .map_err(|e| err(ErrorKind::InvalidConfig, format!("{e:#}")))?;
        let mut made = Vec::new();
        for p in 0..meta.partitions {
            let dir = self.partition_dir(&meta.name, p);
            if dir.exists() {
                self.remove_partitions(&meta.name, made);
                return Err(err(
                    ErrorKind::Storage,
                    format!(
                        "{} already exists, left by an earlier topic of this name (a crash during its deletion?); remove the directory to create the topic",
                        dir.display()
                    ),
                ));
            }
            let partition = Arc::new(Partition::open(
                &meta.name,
                p,
                dir,
                config.log,
                self.backend.clone(),
                producer_expiration_ms,
                self.checkpointed_high_watermark(&meta.name, p),
            ));
            let offline = partition.offline();
            made.push(partition);
            if let Some(o) = offline {
                let message = format!(
                    "creating partition {} of {} failed, so none was created: {}",
                    p, meta.partitions, o.reason
                );
                self.remove_partitions(&meta.name, made);
                return Err(err(ErrorKind::Storage, message));
            }
        }
        Ok(made)
    }

    /// Removes partitions made for a topic that will not exist after all: their logs are
    /// dropped, then their directories removed (logged, not returned: the caller reports the
    /// failure that brought it here).
    pub(super) fn remove_partitions(&self, topic: &str, made: Vec<Arc<Partition>>) {
        let dirs: Vec<PathBuf> = made.iter().map(|p| p.dir().to_path_buf()).collect();
        drop(made);
        for dir in dirs {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(topic, dir = %dir.display(), error = %e, "removing a partition of a topic that failed to be created");
            }
        }
        let data_dir = self.config.data_dir();
        if let Err(e) = self.backend.sync_dir(&data_dir) {
            tracing::warn!(dir = %data_dir.display(), error = %e, "fsync failed");
        }
    }

    /// Deletes a topic, its committed offsets (as Kafka does: a topic re-created under the same
    /// name starts with none) and its data. Readers in flight keep their mappings. A topic whose
    /// metadata file is damaged is deleted too: the file and every `<name>-<n>` directory.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let _g = self.admin.lock();
        let dirs: Vec<PathBuf> = match self.topics.write().remove(name) {
            Some(topic) => topic
                .partitions
                .iter()
                .map(|p| p.dir().to_path_buf())
                .collect(),
            None if self.damaged_topics.write().remove(name).is_some() => {
                self.partition_dirs_on_disk(name)
            }
            None => {
                return Err(err(
                    ErrorKind::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                ));
            }
        };
        let storage_err = |e: anyhow::Error| err(ErrorKind::Storage, format!("{e:#}"));
        // Offsets first: a crash after this and before the metadata file is gone leaves a topic
        // without committed offsets, never offsets a re-created topic would inherit. In a
        // cluster the tombstones go through `__consumer_offsets`' replication, which may fail
        // (too few in-sync replicas): the controller has deleted the topic already, so its
        // local copy goes anyway, and the failure is logged.
        if let Err(e) = self.groups.offsets.delete_topic(name) {
            if self.cluster().is_none() {
                return Err(storage_err(e));
            }
            tracing::warn!(topic = name, error = %format!("{e:#}"), "the committed offsets of a deleted topic could not all be deleted");
        }
        strata_storage::meta::remove_topic(self.backend.as_ref(), &self.config.data_dir(), name)
            .map_err(|e| storage_err(e.into()))?;
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // The topic is gone; what is left is a directory of no topic, reported at
                    // the next start.
                    tracing::error!(topic = name, dir = %dir.display(), error = %e, "removing a deleted topic's partition failed");
                }
            }
        }
        let data_dir = self.config.data_dir();
        if let Err(e) = self.backend.sync_dir(&data_dir) {
            tracing::warn!(dir = %data_dir.display(), error = %e, "fsync failed");
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Every `<name>-<n>` directory in the data dir.
    fn partition_dirs_on_disk(&self, name: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.config.data_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(parse_partition_dir)
                    .is_some_and(|(t, _)| t == name)
            })
            .map(|e| e.path())
            .collect()
    }
}
