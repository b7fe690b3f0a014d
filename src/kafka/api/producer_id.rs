//! InitProducerId: producer ids for idempotent producers (transactions are refused).
//! A new id at epoch 0 for every request, as Kafka answers a request without a transactional id.

use std::sync::Arc;

use kafka_protocol::messages::*;

use super::kafka_code;
use crate::broker::Broker;
use crate::kafka::reply::{Reply, encode_body};
use kafka_protocol::ResponseError;

pub async fn init_producer_id(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    version: i16,
) -> Reply {
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
    // Without a transactional id Kafka ignores the producer id and epoch a client names (v3+,
    // KIP-360) and always hands out a new id at epoch 0 (TransactionCoordinator's
    // handleInitProducerId): an idempotent producer that bumps its epoch gets a fresh id, and
    // clients that send zeros (kafka-go) do not all share id 0.
    // In a cluster, ids come from blocks the active controller hands out (KIP-730), so no two
    // brokers ever give the same id.
    if let Some(link) = broker.cluster() {
        match link.allocate_producer_id().await {
            Ok(id) => resp = resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot allocate a producer id");
                resp = resp
                    .with_error_code(crate::kafka::errors::code(e.kind))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            }
        }
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
