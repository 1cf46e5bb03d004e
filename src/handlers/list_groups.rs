//! ListGroups (v0–5, state filter v4+, type filter v5+): every shard lists the groups it
//! coordinates.

use std::rc::Rc;

use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::ListGroupsResponse;
use tern_net::{ParsedHeader, ResponseFrame};

use crate::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: ListGroupsRequest,
) -> ResponseFrame {
    let v = h.api_version;
    let states: Vec<String> = if v >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if v >= 5 {
        req.types_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let calls = (0..state.count).map(|shard| {
        let state = state.clone();
        let (states, types) = (states.clone(), types.clone());
        async move {
            state
                .call(shard, |reply| {
                    ShardMessage::group(GroupMessage::List {
                        states,
                        types,
                        reply,
                    })
                })
                .await
        }
    });
    let mut resp = ListGroupsResponse::default();
    for r in futures::future::join_all(calls).await {
        match r {
            Some(groups) => {
                for mut g in groups {
                    if v < 4 {
                        g.group_state = Default::default();
                    }
                    if v < 5 {
                        g.group_type = Default::default();
                    }
                    resp.groups.push(g);
                }
            }
            None => resp.error_code = codes::COORDINATOR_NOT_AVAILABLE,
        }
    }
    super::encode(&h, &resp)
}
