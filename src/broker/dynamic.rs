//! Dynamic broker configs (Kafka's AlterConfigs on a BROKER resource): the topic defaults an
//! operator changes on a running broker, cluster-wide (resource name "") or for this broker
//! (its id), without a restart. They are the `log.*` defaults Kafka lets change dynamically;
//! every other broker setting is static (`server.properties`, `--set`) and a change of it is
//! INVALID_REQUEST, as Kafka refuses a non-dynamic config.
//!
//! Precedence, as Kafka's: this broker's dynamic value, then the cluster-wide dynamic default,
//! then the static setting, then the built-in default. Kept in `<data-dir>/dynamic-configs.json`
//! (storage/FORMAT.md §10), replaced atomically through the io backend before the change takes
//! effect; a topic without its own override takes the new default at once. (With a metadata
//! quorum, cluster part 1, these records move into the metadata log.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::config::{BrokerConfig, TopicConfig};
use super::error::{BrokerError, ErrorKind, err};
use super::{Broker, Topic, write_atomic};

/// The broker settings that may change while the broker runs: the defaults of the topic
/// configs Strata implements (Kafka lets each of these change dynamically, cluster-wide).
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "compression.type",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.message.timestamp.type",
    "log.preallocate",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "message.max.bytes",
];

/// File name, in the data directory.
pub const FILE_NAME: &str = "dynamic-configs.json";

/// Largest file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Which dynamic layer a change is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Resource name "": every broker's default.
    Cluster,
    /// Resource name = this broker's id.
    Broker,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynamicFile {
    #[serde(default)]
    pub cluster: BTreeMap<String, String>,
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
}

/// The dynamic layers and the effective settings they make.
#[derive(Debug)]
pub struct Dynamic {
    pub file: DynamicFile,
    /// The static settings with both layers applied: what topic defaults resolve against.
    pub effective: Arc<BrokerConfig>,
}

impl Dynamic {
    /// The static settings with `file` applied; an error names the key that does not validate.
    pub fn apply(base: &BrokerConfig, file: DynamicFile) -> Result<Dynamic> {
        let mut effective = base.clone();
        for (k, v) in file.cluster.iter().chain(&file.broker) {
            if !DYNAMIC_BROKER_KEYS.contains(&k.as_str()) {
                anyhow::bail!("{k} cannot be changed dynamically");
            }
            effective.set(k, v)?;
        }
        Ok(Dynamic {
            file,
            effective: Arc::new(effective),
        })
    }

    /// Loads `<data_dir>/dynamic-configs.json` over `base`. A file that does not read, parse or
    /// validate is logged and left alone (the broker starts with its static settings; the next
    /// change replaces the file).
    pub fn load(base: &BrokerConfig, data_dir: &Path) -> Dynamic {
        let path = data_dir.join(FILE_NAME);
        let read = || -> Result<Option<DynamicFile>> {
            use std::io::Read;
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).context("open"),
            };
            let mut text = String::new();
            f.take(MAX_FILE_BYTES + 1)
                .read_to_string(&mut text)
                .context("read")?;
            anyhow::ensure!(
                text.len() as u64 <= MAX_FILE_BYTES,
                "larger than {MAX_FILE_BYTES} bytes"
            );
            Ok(Some(serde_json::from_str(&text).context("parse")?))
        };
        let file = match read() {
            Ok(f) => f.unwrap_or_default(),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %format!("{e:#}"), "dynamic broker configs ignored: the file is damaged; the static settings apply");
                DynamicFile::default()
            }
        };
        match Dynamic::apply(base, file) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %format!("{e:#}"), "dynamic broker configs ignored: a value does not validate; the static settings apply");
                Dynamic {
                    file: DynamicFile::default(),
                    effective: Arc::new(base.clone()),
                }
            }
        }
    }

    /// Where `key` got its value: (dynamic for this broker, dynamic cluster default).
    pub fn layers(&self, key: &str) -> (Option<&String>, Option<&String>) {
        (self.file.broker.get(key), self.file.cluster.get(key))
    }
}

impl Broker {
    /// The settings topic defaults resolve against: static, then the dynamic layers.
    pub fn topic_defaults(&self) -> Arc<BrokerConfig> {
        self.dynamic.read().effective.clone()
    }

    /// The dynamic layers as they are now.
    pub fn dynamic_file(&self) -> DynamicFile {
        self.dynamic.read().file.clone()
    }

    /// Replaces the `scope` layer with `values` (AlterConfigs sets the whole layer;
    /// IncrementalAlterConfigs computes it from [`Broker::dynamic_file`]). Refused whole if a
    /// key is not dynamic (INVALID_REQUEST, as Kafka), a value does not validate or would make
    /// some topic's settings invalid (INVALID_CONFIG). Persisted, then in effect for every
    /// topic that does not override the key.
    pub fn alter_broker_configs(
        &self,
        scope: Scope,
        values: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let _g = self.admin.lock();
        let fixed: Vec<&str> = values
            .keys()
            .map(String::as_str)
            .filter(|k| !DYNAMIC_BROKER_KEYS.contains(k))
            .collect();
        if !fixed.is_empty() {
            return Err(err(
                ErrorKind::InvalidRequest,
                format!(
                    "cannot update these configs dynamically: {} (only {} can change on a running broker)",
                    fixed.join(", "),
                    DYNAMIC_BROKER_KEYS.join(", ")
                ),
            ));
        }
        let mut file = self.dynamic_file();
        match scope {
            Scope::Cluster => file.cluster = values,
            Scope::Broker => file.broker = values,
        }
        let next = Dynamic::apply(&self.config, file.clone())
            .map_err(|e| err(ErrorKind::InvalidConfig, format!("{e:#}")))?;
        // Every topic's settings must still resolve.
        let mut resolved: Vec<(Arc<Topic>, TopicConfig)> = Vec::new();
        for t in self.topics() {
            let c = TopicConfig::resolve(&next.effective, t.config.overrides.clone())
                .map_err(|e| err(ErrorKind::InvalidConfig, format!("topic {}: {e:#}", t.name)))?;
            resolved.push((t, c));
        }
        if validate_only {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| err(ErrorKind::Unknown, e.to_string()))?;
        write_atomic(
            self.backend.as_ref(),
            &self.config.data_dir().join(FILE_NAME),
            &bytes,
        )
        .map_err(|e| err(ErrorKind::Storage, format!("{e:#}")))?;
        *self.dynamic.write() = next;
        for (t, config) in resolved {
            if config == t.config {
                continue;
            }
            for p in &t.partitions {
                if let Ok(log) = p.log()
                    && let Err(e) = log.reconfigure(config.log)
                {
                    tracing::warn!(partition = %format!("{}-{}", t.name, p.index), error = %e, "a partition did not take the new settings; it takes them when reopened");
                }
            }
            self.replace_topic_config(&t, config);
        }
        tracing::info!(?scope, "dynamic broker configs changed");
        Ok(())
    }
}
