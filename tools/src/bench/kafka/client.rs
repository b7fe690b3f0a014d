//! The benchmark's use of [`strata_client`]: the protocol versions it speaks, and a connect
//! that reports an unreachable broker as [`BenchError::Unreachable`] (a usage error).

use kafka_protocol::messages::ApiKey;
pub use strata_client::{Conn, PRODUCE_VERSION, recv_produce, topic_name};

use super::super::BenchError;

/// Fetch version used.
pub const FETCH_VERSION: i16 = 11;
/// Metadata version used.
pub const METADATA_VERSION: i16 = 9;
/// CreateTopics version used.
pub const CREATE_TOPICS_VERSION: i16 = 5;
/// ListOffsets version used.
pub const LIST_OFFSETS_VERSION: i16 = 5;

/// Connects and checks with ApiVersions that the broker speaks every version the benchmark uses.
pub fn open(bootstrap: &str) -> anyhow::Result<Conn> {
    let mut c = match Conn::connect(bootstrap, "strata-bench") {
        Ok(c) => c,
        Err(strata_client::ClientError::Unreachable { addr, reason }) => {
            return Err(BenchError::Unreachable { addr, reason }.into());
        }
        Err(e) => return Err(e.into()),
    };
    c.check_versions(&[
        (ApiKey::Produce, PRODUCE_VERSION),
        (ApiKey::Fetch, FETCH_VERSION),
        (ApiKey::Metadata, METADATA_VERSION),
        (ApiKey::CreateTopics, CREATE_TOPICS_VERSION),
        (ApiKey::ListOffsets, LIST_OFFSETS_VERSION),
    ])
    .map_err(|e| anyhow::anyhow!("ApiVersions handshake with {bootstrap}: {e}"))?;
    Ok(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_is_a_usage_error() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let e = open("127.0.0.1:1").unwrap_err();
        assert!(e.downcast_ref::<BenchError>().is_some(), "{e:#}");
    }
}
