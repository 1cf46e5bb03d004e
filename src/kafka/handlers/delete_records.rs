//! DeleteRecords: moves the log start offset of each partition (offset -1 = the high watermark)
//! on its owner shard; whole segments below it are deleted. Replies with the new low watermark.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use tern_net::{ParsedHeader, ResponseFrame};
use tern_storage::StorageError;

use crate::kafka::errors;
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

/// (topic, partition, offset)
type Item = (Arc<str>, i32, i64);

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DeleteRecordsRequest,
) -> ResponseFrame {
    let mut items: Vec<(Option<usize>, Item)> = Vec::new();
    for t in &req.topics {
        let topic: Arc<str> = Arc::from(t.name.0.as_str());
        for p in &t.partitions {
            items.push((
                Some(state.owner(&topic, p.partition_index)),
                (topic.clone(), p.partition_index, p.offset),
            ));
        }
    }
    let mut results = vec![(errors::REQUEST_TIMED_OUT, -1i64); items.len()];
    state
        .fan_out(items, &mut results, |items, reply| {
            ShardMessage::DeleteRecords { items, reply }
        })
        .await;
    for (code, _) in &results {
        if *code != errors::NONE {
            state.metrics.error(h.api_key, *code);
        }
    }
    super::encode(&h, &response(&req, &results))
}

/// The response to `req` given (error, low watermark) per partition in request order.
fn response(req: &DeleteRecordsRequest, results: &[(i16, i64)]) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    let mut k = 0;
    for t in &req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let (code, low) = results[k];
            k += 1;
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code;
            pr.low_watermark = low;
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let mut req = DeleteRecordsRequest::default();
    let mut t = DeleteRecordsTopic::default();
    t.name = kafka_protocol::messages::TopicName(super::str_bytes("t"));
    for p in 0..2 {
        let mut dp = DeleteRecordsPartition::default();
        dp.partition_index = p;
        dp.offset = 10;
        t.partitions.push(dp);
    }
    req.topics.push(t);
    let results = [(errors::NONE, 10), (errors::OFFSET_OUT_OF_RANGE, -1)];
    vec![kafka_protocol::messages::ResponseKind::DeleteRecords(
        response(&req, &results),
    )]
}

/// The owner shard's half.
pub async fn handle_local(
    state: &Rc<ShardState>,
    items: Vec<(Arc<str>, i32, i64)>,
) -> Vec<(i16, i64)> {
    let mut out = Vec::with_capacity(items.len());
    let meta = state.metadata();
    for (topic, p, offset) in items {
        let log = state.partitions.get(&topic, p);
        let refusal =
            crate::routing::owner_refusal(&meta, state.config.node_id, &topic, p, log.is_some());
        let (None, Some(log)) = (refusal, log) else {
            out.push((refusal.unwrap_or(errors::UNKNOWN_TOPIC_OR_PARTITION), -1));
            continue;
        };
        out.push(match log.delete_records(offset).await {
            Ok(low) => {
                log::info!("DeleteRecords {topic}-{p}: log start offset now {low}");
                (errors::NONE, low)
            }
            Err(StorageError::OutOfRange(_)) => (errors::OFFSET_OUT_OF_RANGE, -1),
            Err(e) => {
                log::error!("DeleteRecords {topic}-{p} to {offset}: {e}");
                (errors::KAFKA_STORAGE_ERROR, -1)
            }
        });
    }
    out
}
