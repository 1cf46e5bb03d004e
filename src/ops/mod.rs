//! Operations: what an operator configures and watches, and the background work that keeps a
//! broker within its limits — dynamic configs (`configs`), Prometheus metrics (`metrics`),
//! retention (`retention`), the log cleaner task (`cleaner`) and the free-space floor
//! (`disk_space`).

pub mod cleaner;
pub mod configs;
pub mod disk_space;
pub mod metrics;
pub mod retention;
