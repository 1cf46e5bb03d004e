//! The cluster metadata log: its records (what one committed entry says), the image that
//! applying them in order builds, and the image's snapshot form. The on-disk layout (segments
//! and snapshots under `<log.dirs>/__cluster_metadata-0/`) belongs to the glommio driver.

pub mod image;
pub mod records;
