//! The `strata` package: the Kafka-protocol broker (`strata serve`) on the storage engine.
#![forbid(unsafe_code)]

pub mod broker;
pub mod serve;
