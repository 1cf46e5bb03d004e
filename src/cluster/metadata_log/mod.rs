//! The cluster metadata log: its records (what one committed entry says), the image that
//! applying them in order builds, the image's snapshot form, and the first entry of a
//! standalone data directory upgraded in place. The on-disk layout (segments and snapshots
//! under `<log.dirs>/__cluster_metadata-0/`) is `quorum::disk`.

pub mod image;
pub mod records;
pub mod upgrade;
