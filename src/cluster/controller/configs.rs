//! Config decisions: AlterConfigs / IncrementalAlterConfigs arrive as already validated
//! changes (the broker front validates names and values against its config definitions) and
//! become `Config` records, one batch for all resources; a change for a topic that does not
//! exist fails that resource only. Also the first batch of an upgraded standalone data dir.

use super::{Controller, ControllerError, Decision, codes};
use crate::cluster::metadata_log::records::{ConfigResource, MetadataRecord};

/// One config change (None = delete the override).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigChange {
    pub resource: ConfigResource,
    pub resource_name: String,
    pub name: String,
    pub value: Option<String>,
}

impl Controller {
    /// One group of changes per resource: per-group outcome and the one batch of all accepted.
    pub fn alter_configs(
        &mut self,
        groups: &[Vec<ConfigChange>],
    ) -> Decision<(Vec<Decision<()>>, Vec<MetadataRecord>)> {
        self.require_active()?;
        let mut results = Vec::with_capacity(groups.len());
        let mut records = Vec::new();
        for group in groups {
            let missing = group.iter().find(|c| {
                c.resource == ConfigResource::Topic
                    && self.working.topic_by_name(&c.resource_name).is_none()
            });
            if let Some(c) = missing {
                results.push(Err(ControllerError::new(
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic {} does not exist", c.resource_name),
                )));
                continue;
            }
            for c in group {
                let current = self
                    .working
                    .configs
                    .get(&(c.resource, c.resource_name.clone()))
                    .and_then(|m| m.get(&c.name));
                if current != c.value.as_ref() {
                    records.push(MetadataRecord::Config {
                        resource: c.resource,
                        resource_name: c.resource_name.clone(),
                        name: c.name.clone(),
                        value: c.value.clone(),
                    });
                }
            }
            results.push(Ok(()));
        }
        Ok((results, self.stage(records)?))
    }

    /// `become_active`, but a log without a cluster id starts with `first` (the records of an
    /// upgraded standalone data dir, which carry its cluster id) instead of a new id.
    pub fn become_active_with(
        &mut self,
        now_ms: u64,
        new_cluster_id: &str,
        first: Option<Vec<MetadataRecord>>,
    ) -> Vec<MetadataRecord> {
        let fresh = self.committed.cluster_id.is_none();
        match first {
            Some(records) if fresh && !records.is_empty() => {
                let none = self.become_active(now_ms, new_cluster_id);
                // become_active staged a new cluster id: replace it by the upgrade's records.
                self.pending.clear();
                self.working = self.committed.clone();
                debug_assert_eq!(none.len(), 1);
                self.stage(records).expect("active")
            }
            _ => self.become_active(now_ms, new_cluster_id),
        }
    }
}
