//! Kafka's "authorized operations" bitfields (KIP-430) for the resources whose describe
//! responses carry one: bit `n` set = AclOperation code `n` allowed. Tern has no authorizer,
//! and Kafka without one reports every operation the resource type supports
//! (`AclEntry.supportedOperations`); a request that did not ask for them gets `i32::MIN`.

/// Kafka's AclOperation codes (org.apache.kafka.common.acl.AclOperation).
mod op {
    pub const READ: u32 = 3;
    pub const CREATE: u32 = 5;
    pub const DELETE: u32 = 6;
    pub const ALTER: u32 = 7;
    pub const DESCRIBE: u32 = 8;
    pub const CLUSTER_ACTION: u32 = 9;
    pub const DESCRIBE_CONFIGS: u32 = 10;
    pub const ALTER_CONFIGS: u32 = 11;
    pub const IDEMPOTENT_WRITE: u32 = 12;
}

/// What Kafka answers when the request did not ask for authorized operations.
pub const NOT_REQUESTED: i32 = i32::MIN;

const fn bits(ops: &[u32]) -> i32 {
    let mut field = 0i32;
    let mut i = 0;
    while i < ops.len() {
        assert!(ops[i] < 31, "an AclOperation code fits an i32 bitfield");
        field |= 1 << ops[i];
        i += 1;
    }
    field
}

/// AclEntry.supportedOperations(CLUSTER).
pub const CLUSTER: i32 = bits(&[
    op::CREATE,
    op::CLUSTER_ACTION,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
    op::IDEMPOTENT_WRITE,
    op::ALTER,
    op::DESCRIBE,
]);

/// AclEntry.supportedOperations(GROUP) (Kafka 4: group configs added DESCRIBE_CONFIGS and
/// ALTER_CONFIGS).
pub const GROUP: i32 = bits(&[
    op::READ,
    op::DESCRIBE,
    op::DELETE,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
]);

/// The field for a resource whose operations are `all`: them if `requested`, else
/// [`NOT_REQUESTED`].
pub fn field(requested: bool, all: i32) -> i32 {
    if requested { all } else { NOT_REQUESTED }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_match_kafka() {
        // What a Kafka 4 broker without an authorizer reports.
        assert_eq!(CLUSTER, 8096);
        assert_eq!(GROUP, 3400);
        assert_eq!(field(false, CLUSTER), i32::MIN);
        assert_eq!(field(true, GROUP), GROUP);
    }
}
