//! Skiff: a small container orchestrator.
//!
//! A map of the system:
//! - `task`: what a user asks for (`TaskSpec`) and what Skiff knows of it (`Task`, `TaskState`
//!   with its one transition table). Shared by every other module; does no I/O.
//! - `manager`: the manager's control thread. It owns the task table, the node table, the store
//!   and the scheduler; per worker it has dispatcher threads that call the worker through a
//!   `WorkerLink` and report back. `reconcile` is its pure plan, `sched` its placement.
//! - `worker`: the worker's control thread. It owns its node's task table and runs engine calls
//!   on a small pool through `docker_cli` (the engine's API over its Unix socket); an events
//!   thread sees container exits at once, a periodic sync is the safety net.
//! - `store`: where records are kept (`Store` trait; in memory for now).
//! - `http`: route tables, error → status mapping, the server (`http::server`) and the HTTP
//!   clients (manager → worker, client → manager). `api` holds the other wire shapes.
//! - `client`: the line-based client's commands and tables.
//! - `auth`: the cluster token and where a daemon may listen with or without one.
//! - `cli`, `signals`, `time`: flags and logging, SIGINT/SIGTERM, RFC 3339 timestamps.
//!
//! Data flows one way: the manager pushes work to workers and pulls their status; workers keep
//! their containers running without the manager. Containers carry `skiff.*` labels, the truth
//! of what runs.
pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod docker_cli;
pub mod clock;
pub mod control;
pub mod http;
pub mod manager;
pub mod reconcile;
pub mod sched;
pub mod signals;
pub mod stats;
pub mod store;
pub mod task;
pub mod time;
pub mod worker;
