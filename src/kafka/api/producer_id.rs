//! InitProducerId: producer ids for idempotent producers (transactions are refused).

use std::sync::Arc;

use kafka_protocol::messages::*;

use super::kafka_code;
use crate::broker::Broker;
use crate::kafka::reply::{Reply, encode_body};
use kafka_protocol::ResponseError;

pub fn init_producer_id(broker: &Arc<Broker>, req: InitProducerIdRequest, version: i16) -> Reply {
    let mut resp = InitProducerIdResponse::default();
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        // Transactions are not implemented: refuse clearly rather than pretend.
        resp = resp
            .with_error_code(kafka_code(
                ResponseError::TransactionalIdAuthorizationFailed,
            ))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        return encode_body(&resp, version);
    }
    // KIP-360: an idempotent producer may ask to bump its epoch.
    if version >= 3
        && req.producer_id.0 >= 0
        && req.producer_epoch >= 0
        && req.producer_epoch < i16::MAX - 1
    {
        resp = resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
        return encode_body(&resp, version);
    }
    match broker.allocate_producer_id() {
        Ok(id) => resp = resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp = resp
                .with_error_code(kafka_code(ResponseError::KafkaStorageError))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
    }
    encode_body(&resp, version)
}
