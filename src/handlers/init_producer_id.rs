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
