//! The `strata` package: the broker (`strata serve`) on the storage engine.
//!
//! * [`broker`]: the domain (topics, partitions, producers, consumer groups), free of wire
//!   types.
//! * [`kafka`]: the Kafka protocol edge in front of it.
//! * [`serve`]: the process: configuration, runtime, signals.
#![forbid(unsafe_code)]

pub mod broker;
pub mod cluster;
pub mod kafka;
pub mod serve;
