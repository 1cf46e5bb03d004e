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
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.is_some() {
        log::warn!("InitProducerId with a transactional.id: transactions are not supported yet");
        resp.error_code = errors::INVALID_REQUEST;
        return super::encode(&h, &resp);
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return super::encode(&h, &resp);
    }
    let id = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::AllocateProducerId { reply })
        })
        .await;
    match id {
        Some(Ok(id)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Some(Err(e)) => {
            log::error!("allocating a producer id: {e}");
            resp.error_code = errors::UNKNOWN_SERVER_ERROR;
        }
        None => resp.error_code = errors::REQUEST_TIMED_OUT,
    }
    super::encode(&h, &resp)
}
