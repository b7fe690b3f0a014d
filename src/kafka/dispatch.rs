//! Decoding a request frame and calling its handler: the one place every request passes
//! through (per-request metrics and authorization hook in here).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Decodable;
use tokio::sync::watch;

use super::api;
use super::api::groups;
use super::reply::Reply;
use super::versions::supported_range;
use crate::broker::Broker;

/// A request frame, decoded.
#[derive(Debug)]
pub enum Decoded {
    /// A request we implement, at a version we implement.
    Request {
        key: ApiKey,
        version: i16,
        request: Box<kafka_protocol::messages::RequestKind>,
    },
    /// ApiVersions at a version we do not know: answer error 35 in the v0 layout.
    ApiVersionsUnsupported,
    /// Produce v0-v2 (advertised, not supported): the body after the request header.
    ProduceLegacy { version: i16, body: Bytes },
}

/// Decodes one frame (everything after the 4-byte size). Never panics, whatever the bytes; an
/// `Err` means "close the connection" and says why.
pub fn decode_frame(frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let field = |at: usize| {
        frame
            .get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, i16::from_be_bytes)
    };
    let (api_key, version) = (field(0), field(2));
    let key = ApiKey::try_from(api_key).map_err(|_| format!("unknown API key {api_key}"))?;
    let (lo, hi) = supported_range(key).ok_or_else(|| format!("API {key:?} is not supported"))?;
    if version < lo || version > hi {
        if key == ApiKey::ApiVersions {
            return Ok(Decoded::ApiVersionsUnsupported);
        }
        return Err(format!(
            "{key:?} v{version} is not supported (v{lo}..=v{hi})"
        ));
    }
    let mut body = frame;
    kafka_protocol::messages::RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| format!("bad request header: {e}"))?;
    if key == ApiKey::Produce && version < 3 {
        return Ok(Decoded::ProduceLegacy { version, body });
    }
    let request = kafka_protocol::messages::RequestKind::decode(key, &mut body, version)
        .map_err(|e| format!("malformed {key:?} v{version} request: {e}"))?;
    Ok(Decoded::Request {
        key,
        version,
        request: Box::new(request),
    })
}

/// Decodes the request and calls its handler. Returns the reply and the response header
/// version to use.
pub(crate) async fn dispatch(
    broker: &Arc<Broker>,
    frame: Bytes,
    shutdown: &watch::Receiver<bool>,
) -> (Reply, i16) {
    use kafka_protocol::messages::RequestKind as R;
    let client_id = client_id_of(&frame);
    let (key, version, request) = match decode_frame(frame) {
        Ok(Decoded::Request {
            key,
            version,
            request,
        }) => (key, version, request),
        Ok(Decoded::ApiVersionsUnsupported) => {
            return (api::api_versions::api_versions_unsupported(), 0);
        }
        Ok(Decoded::ProduceLegacy { version, body }) => {
            return (
                api::produce_legacy::produce_unsupported_version(&body, version),
                ApiKey::Produce.response_header_version(version),
            );
        }
        Err(reason) => {
            return (
                Reply::Close(format!("{reason} (client id {client_id:?})")),
                0,
            );
        }
    };
    let reply = match *request {
        R::ApiVersions(_) => api::api_versions::api_versions(version),
        R::Metadata(r) => api::metadata::metadata(broker, r, version).await,
        R::Produce(r) => api::produce::produce(broker, r, version).await,
        R::Fetch(r) => api::fetch::fetch(broker, r, version, shutdown.clone()).await,
        R::ListOffsets(r) => api::list_offsets::list_offsets(broker, r, version).await,
        R::InitProducerId(r) => api::producer_id::init_producer_id(broker, r, version).await,
        R::CreateTopics(r) => api::topics::create_topics(broker, r, version).await,
        R::DeleteTopics(r) => api::topics::delete_topics(broker, r, version).await,
        R::DescribeConfigs(r) => api::configs::describe_configs(broker, r, version),
        R::CreatePartitions(r) => api::admin::create_partitions(broker, r, version).await,
        R::AlterConfigs(r) => api::admin::alter_configs(broker, r, version).await,
        R::IncrementalAlterConfigs(r) => {
            api::admin::incremental_alter_configs(broker, r, version).await
        }
        R::DeleteRecords(r) => api::admin::delete_records(broker, r, version).await,
        R::DescribeCluster(r) => api::cluster::describe_cluster(broker, r, version),
        R::DescribeLogDirs(r) => api::cluster::describe_log_dirs(broker, r, version).await,
        R::DescribeProducers(r) => api::cluster::describe_producers(broker, r, version),
        R::OffsetForLeaderEpoch(r) => api::cluster::offset_for_leader_epoch(broker, r, version),
        R::OffsetDelete(r) => groups::offset_delete(broker, r, version).await,
        R::ConsumerGroupHeartbeat(r) => {
            api::consumer_groups::consumer_group_heartbeat(broker, r, version, client_id)
        }
        R::FindCoordinator(r) => groups::find_coordinator(broker, r, version).await,
        R::JoinGroup(r) => {
            groups::join_group(broker, r, version, client_id, shutdown.clone()).await
        }
        R::SyncGroup(r) => groups::sync_group(broker, r, version, shutdown.clone()).await,
        R::Heartbeat(r) => groups::heartbeat(broker, r, version),
        R::LeaveGroup(r) => groups::leave_group(broker, r, version),
        R::OffsetCommit(r) => groups::offset_commit(broker, r, version).await,
        R::OffsetFetch(r) => groups::offset_fetch(broker, r, version),
        R::ListGroups(r) => groups::list_groups(broker, r, version),
        R::DescribeGroups(r) => groups::describe_groups(broker, r, version),
        R::DeleteGroups(r) => groups::delete_groups(broker, r, version).await,
        other => Reply::Close(format!(
            "API {key:?} is not supported ({:?})",
            std::mem::discriminant(&other)
        )),
    };
    (reply, key.response_header_version(version))
}

/// The client id of a request frame (after the 4-byte size), for generated member ids:
/// api_key i16, api_version i16, correlation_id i32, client_id nullable i16-length string.
pub fn client_id_of(frame: &[u8]) -> String {
    let Some(len) = frame
        .get(8..10)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(i16::from_be_bytes)
    else {
        return String::new();
    };
    if len <= 0 {
        return String::new();
    }
    frame
        .get(10..10 + len as usize)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}
