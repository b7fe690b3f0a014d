//! The Kafka edge: everything that knows the wire protocol, apart from the broker's domain
//! ([`crate::broker`], which knows no wire type).
//!
//! * [`server`]: accepting connections and serving each one in order; [`frames`] and
//!   [`budget`]: reading request frames within the broker's memory budgets; [`warn`]:
//!   rate-limited warnings about clients.
//! * [`dispatch`]: decoding a frame and calling its handler (per-request metrics and
//!   authorization hook in here); [`versions`]: the APIs and versions implemented.
//! * [`api`]: one file per API family.
//! * [`reply`] and [`fetch_encode`]: responses, with record batches sent from their files.
//! * [`errors`]: the broker's error kinds as Kafka error codes.

pub mod api;
pub mod budget;
pub mod dispatch;
pub mod errors;
pub mod fetch_encode;
pub mod frames;
pub mod reply;
pub mod server;
pub mod versions;
pub mod warn;
