//! ApiVersions: the APIs and versions of [`crate::kafka::versions::SUPPORTED`].

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::kafka_code;
use crate::kafka::reply::{Reply, encode_body};
use crate::kafka::versions::SUPPORTED;

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect()
}

pub fn api_versions(version: i16) -> Reply {
    encode_body(
        &ApiVersionsResponse::default().with_api_keys(api_list()),
        version,
    )
}

/// ApiVersions at a version we do not know: error 35 in the v0 body layout (header v0 too).
pub fn api_versions_unsupported() -> Reply {
    encode_body(
        &ApiVersionsResponse::default()
            .with_error_code(kafka_code(ResponseError::UnsupportedVersion))
            .with_api_keys(api_list()),
        0,
    )
}
