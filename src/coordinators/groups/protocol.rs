//! The "consumer" embedded protocol of classic groups (ConsumerProtocolSubscription /
//! ConsumerProtocolAssignment), which the broker reads to know subscribed topics (OffsetDelete)
//! and writes to describe KIP-848 groups through DescribeGroups; the CLI decodes assignments.

use bytes::{Buf, BufMut, Bytes, BytesMut};

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 {
        return Some(String::new());
    }
    if b.remaining() < n as usize {
        return None;
    }
    Some(String::from_utf8_lossy(&b.split_to(n as usize)).into_owned())
}

/// Topics of a ConsumerProtocolSubscription (any version); `None` if it does not parse.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut b = Bytes::copy_from_slice(metadata);
    if b.remaining() < 6 {
        return None;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        out.push(get_str(&mut b)?);
    }
    Some(out)
}

/// (topic, partitions) of a ConsumerProtocolAssignment; `None` if it does not parse.
pub fn assignment_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let mut b = Bytes::copy_from_slice(assignment);
    if b.remaining() < 6 {
        return None;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let topic = get_str(&mut b)?;
        if b.remaining() < 4 {
            return None;
        }
        let k = b.get_i32();
        let mut parts = Vec::new();
        for _ in 0..k.max(0) {
            if b.remaining() < 4 {
                return None;
            }
            parts.push(b.get_i32());
        }
        out.push((topic, parts));
    }
    Some(out)
}

/// A ConsumerProtocolAssignment v0.
pub fn encode_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (t, ps) in parts {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1); // user data: null
    b.freeze()
}

/// A ConsumerProtocolSubscription v0.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_and_subscription_roundtrip() {
        let a = vec![("t".to_string(), vec![0, 2]), ("u".to_string(), vec![])];
        assert_eq!(assignment_partitions(&encode_assignment(&a)).unwrap(), a);
        let s = vec!["x".to_string(), "y".to_string()];
        assert_eq!(subscription_topics(&encode_subscription(&s)).unwrap(), s);
        assert_eq!(assignment_partitions(&[]).unwrap(), vec![]);
    }
}
