//! The Kafka API surface: the request table and version ranges (`api`), one connection's
//! read/dispatch/write loop (`connection`), routing a decoded request to its handler
//! (`dispatch`), Kafka's error codes (`errors`) and one handler file per Kafka API
//! (`handlers`). Everything a client's bytes touch before they reach a partition, a
//! coordinator or the controller lives here.

pub mod api;
pub mod connection;
pub mod dispatch;
pub mod errors;
pub mod handlers;
