//! Skiff: a small container orchestrator.
pub mod api;
pub mod cli;
pub mod client;
pub mod docker_cli;
pub mod http;
pub mod manager;
pub mod reconcile;
pub mod sched;
pub mod signals;
pub mod store;
pub mod task;
pub mod time;
pub mod worker;
