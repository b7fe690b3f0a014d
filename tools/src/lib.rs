//! `strata-tools`: Strata's operator tools.
//!
//! * [`dump`]: `strata dump`, every batch, record and index entry on disk, decoded by the engine.
//! * [`verify`]: `strata verify`, every check the engine's recovery makes and more, with a report.
//! * [`bench`]: `strata bench`, the load generator: throughput, HDR latency percentiles, plots.
//! * [`groups`]: `strata groups`, consumer groups and their lag, through [`strata_client`].

pub mod bench;
pub mod dump;
pub mod groups;
pub mod verify;
