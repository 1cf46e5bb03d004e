//! A broker that is not a voter follows the metadata from the active controller: it long-polls
//! `FetchMetadata` with the offset it has, receives the committed image when there is a newer
//! one, and publishes it to its shards. (KRaft brokers fetch the log as raft observers; static
//! raft-rs learners would need dynamic membership, and the image is small.)

use std::rc::Rc;
use std::time::Duration;

use super::Driver;
use super::node::Fatal;
use super::wire::{Rpc, RpcReply};
use crate::cluster::metadata_log::image::MetadataImage;

const WAIT_MS: u64 = 1000;
const RETRY: Duration = Duration::from_millis(200);

pub async fn follow(driver: Rc<Driver>, fatal: Fatal) {
    loop {
        let have = driver.follower_image.borrow().0.last_offset;
        let reply = driver
            .call(
                Rpc::FetchMetadata {
                    have_offset: have,
                    wait_ms: WAIT_MS,
                },
                Duration::from_secs(5),
            )
            .await;
        match reply {
            RpcReply::Metadata {
                image,
                controller_id,
            } => {
                let changed_controller = driver.follower_image.borrow().1 != controller_id;
                match image.map(|b| MetadataImage::from_snapshot(&b)) {
                    Some(Ok(image)) => {
                        *driver.follower_image.borrow_mut() = (image, controller_id);
                        driver.publisher.mark_dirty();
                    }
                    Some(Err(e)) => {
                        fatal(format!(
                            "the controller's metadata image is unreadable: {e}"
                        ));
                        return;
                    }
                    None if changed_controller => {
                        driver.follower_image.borrow_mut().1 = controller_id;
                        driver.publisher.mark_dirty();
                    }
                    None => {}
                }
            }
            RpcReply::Error { code, message, .. } => {
                log::debug!("metadata fetch: error {code}: {message}");
                tern_shard::task::sleep(RETRY).await;
            }
            other => {
                log::warn!("metadata fetch: unexpected answer {other:?}");
                tern_shard::task::sleep(RETRY).await;
            }
        }
    }
}
