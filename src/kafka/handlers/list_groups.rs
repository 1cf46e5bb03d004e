//! ListGroups (v0–5, state filter v4+, type filter v5+): every shard lists the groups it
//! coordinates (in cluster mode only those whose offsets partition this broker leads).

use std::rc::Rc;

use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::coordinators::groups::{GroupMessage, codes};
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
    let mut replies = futures::future::join_all(calls).await;
    // In cluster mode a group whose offsets partition moved to another broker is not listed.
    for groups in replies.iter_mut().flatten() {
        groups.retain(|g| crate::coordinators::groups::coordinates(&state, &g.group_id));
    }
    super::encode(&h, &response(v, replies))
}

/// The response from every shard's groups (`None`: a shard did not answer).
fn response(v: i16, replies: Vec<Option<Vec<ListedGroup>>>) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    for r in replies {
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
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut g = ListedGroup::default();
    g.group_id = super::str_bytes("g").into();
    g.protocol_type = super::str_bytes("consumer");
    g.group_state = super::str_bytes("Stable");
    g.group_type = super::str_bytes("classic");
    vec![
        kafka_protocol::messages::ResponseKind::ListGroups(response(
            version,
            vec![Some(vec![g.clone()]), Some(vec![])],
        )),
        kafka_protocol::messages::ResponseKind::ListGroups(response(
            version,
            vec![Some(vec![g]), None],
        )),
    ]
}
