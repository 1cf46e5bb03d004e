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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::controller::{ControllerConfig, codes};
    use crate::cluster::metadata_log::image::MetadataImage;
    use crate::cluster::metadata_log::upgrade::legacy_records;

    fn active() -> (Controller, u64) {
        let mut c = Controller::new(ControllerConfig::default(), MetadataImage::default());
        let first = c.become_active(0, "c");
        c.apply_committed(1, &first).unwrap();
        (c, 1)
    }

    fn change(
        resource: ConfigResource,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> ConfigChange {
        ConfigChange {
            resource,
            resource_name: name.into(),
            name: key.into(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn config_changes_become_records_and_unknown_topics_fail_alone() {
        let (mut c, mut offset) = active();
        let groups = vec![
            vec![change(
                ConfigResource::Broker,
                "",
                "log.retention.ms",
                Some("1000"),
            )],
            vec![change(
                ConfigResource::Topic,
                "missing",
                "retention.ms",
                Some("5"),
            )],
        ];
        let (results, records) = c.alter_configs(&groups).unwrap();
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().code,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(records.len(), 1);
        offset += 1;
        c.apply_committed(offset, &records).unwrap();
        let key = (ConfigResource::Broker, String::new());
        assert_eq!(c.committed().configs[&key]["log.retention.ms"], "1000");
        // Setting the same value again is no change; deleting it is one record.
        let (_, same) = c.alter_configs(&groups[..1]).unwrap();
        assert!(same.is_empty());
        let del = vec![vec![change(
            ConfigResource::Broker,
            "",
            "log.retention.ms",
            None,
        )]];
        let (_, records) = c.alter_configs(&del).unwrap();
        offset += 1;
        c.apply_committed(offset, &records).unwrap();
        assert!(c.committed().configs.get(&key).is_none_or(|m| m.is_empty()));
        // A follower refuses with NOT_CONTROLLER.
        c.resign();
        assert_eq!(
            c.alter_configs(&del).unwrap_err().code,
            codes::NOT_CONTROLLER
        );
    }

    #[test]
    fn an_upgraded_data_dir_starts_the_log_with_its_own_records() {
        let mut legacy = crate::metadata::ClusterMetadata {
            cluster_id: "old-cluster".into(),
            producer_id_block_end: 2000,
            ..Default::default()
        };
        legacy.topics.insert(
            "t".into(),
            crate::metadata::TopicMeta::new(uuid::Uuid::from_u128(5), 2, Default::default()),
        );
        let mut c = Controller::new(ControllerConfig::default(), MetadataImage::default());
        let first = c.become_active_with(0, "new-id", Some(legacy_records(&legacy, 0)));
        c.apply_committed(1, &first).unwrap();
        let image = c.committed();
        assert_eq!(image.cluster_id.as_deref(), Some("old-cluster"));
        assert_eq!(image.next_producer_id, 2000);
        assert_eq!(image.topic_by_name("t").unwrap().partitions.len(), 2);
        // Later terms never repeat it: the log has a cluster id now.
        c.resign();
        let again = c.become_active_with(0, "new-id", Some(legacy_records(&legacy, 0)));
        assert!(again.is_empty());
    }
}
