//! InitProducerId for idempotent producers: a fresh producer id from the controller's persisted
//! block (epoch 0), or, when a client re-initialises its id (v3+), the same id with the epoch
//! bumped. Transactional ids are not supported yet (transactions are a later issue).

use std::rc::Rc;

use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::errors;
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
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        let bumped = (req.producer_id.0, req.producer_epoch + 1);
        return super::encode(&h, &response(Ok(bumped)));
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
