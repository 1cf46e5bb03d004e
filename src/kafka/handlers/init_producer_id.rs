//! InitProducerId for idempotent producers. Without a transactional id, Kafka's
//! TransactionCoordinator blindly hands out a fresh producer id at epoch 0 from the persisted
//! block, whatever producer id and epoch the request names (v3+): bumping a named id's epoch
//! would let any client fence another client's producer, since nothing ties an id to the client
//! that was given it. A client re-initialising after an error simply gets a new id. The block
//! is persisted before any of its ids is handed out (see the controller), so ids are never
//! reused across restarts. Transactional ids are not supported yet (transactions are a later
//! issue).

use std::rc::Rc;

use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::errors;
use crate::messages::{ControllerRequest, ShardMessage};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: InitProducerIdRequest,
) -> ResponseFrame {
    if req.transactional_id.is_some() {
        log::warn!("InitProducerId with a transactional.id: transactions are not supported yet");
        return super::encode(&h, &response(Err(errors::INVALID_REQUEST)));
    }
    let id = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::AllocateProducerId { reply })
        })
        .await;
    let outcome = match id {
        Some(Ok(id)) => Ok((id, 0)),
        Some(Err(e)) => {
            log::error!("allocating a producer id: {e}");
            Err(errors::UNKNOWN_SERVER_ERROR)
        }
        None => Err(errors::REQUEST_TIMED_OUT),
    };
    super::encode(&h, &response(outcome))
}

/// The response: (producer id, epoch) or an error code.
fn response(outcome: Result<(i64, i16), i16>) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    match outcome {
        Ok((id, epoch)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = epoch;
        }
        Err(code) => {
            resp.error_code = code;
            resp.producer_id = ProducerId(-1);
            resp.producer_epoch = -1;
        }
    }
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    [Ok((1000, 3)), Err(errors::INVALID_REQUEST)]
        .into_iter()
        .map(|o| kafka_protocol::messages::ResponseKind::InitProducerId(response(o)))
        .collect()
}
