//! One file per Kafka API family: wire types in, wire types out, the work in
//! [`crate::broker`].
//!
//! Rule for every response: a field is set only at the versions that define it (the encoder
//! refuses a non-default value in a version that lacks the field).

use kafka_protocol::ResponseError;
use kafka_protocol::protocol::StrBytes;

pub mod admin;
pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod consumer_groups;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod produce_legacy;
pub mod producer_id;
pub mod topics;

pub use crate::kafka::errors::code;

/// A refusal as Kafka answers it: a code and a message, from the edge's own checks (a malformed
/// or unsupported request) or from the broker.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    /// One of the edge's own errors.
    pub fn kafka(e: ResponseError, message: impl Into<String>) -> Self {
        Refusal {
            code: e.code(),
            message: message.into(),
        }
    }
}

impl From<crate::broker::error::BrokerError> for Refusal {
    fn from(e: crate::broker::error::BrokerError) -> Self {
        Refusal {
            code: code(e.kind),
            message: e.message,
        }
    }
}

/// A topic id as Kafka's UUID.
fn uuid(id: u128) -> ::uuid::Uuid {
    ::uuid::Uuid::from_u128(id)
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// The code of an error only the Kafka edge raises (a malformed or unsupported request).
fn kafka_code(e: ResponseError) -> i16 {
    e.code()
}

/// Keys that occur more than once in a request's array (Kafka refuses every occurrence of a
/// duplicated topic with INVALID_REQUEST rather than acting on one of them).
pub fn duplicated<K: std::hash::Hash + Eq + Clone>(
    keys: impl IntoIterator<Item = K>,
) -> std::collections::HashSet<K> {
    let mut seen = std::collections::HashSet::new();
    let mut dup = std::collections::HashSet::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            dup.insert(k);
        }
    }
    dup
}
