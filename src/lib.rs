//! Skiff: a small container orchestrator.
//!
//! A map of the system:
//! - `task`: what Skiff knows of a task (`Task`, `TaskState` with its one transition table) and,
//!   in `task::spec`, what a user asks for (`TaskSpec` and its validation). Does no I/O.
//! - `manager`: the manager's control thread (`manager::state`, applying answers and the plan in
//!   `manager::apply`). It owns the task table, the node table, the store and the scheduler; per
//!   worker, dispatcher threads (`manager::node`) call it through a `WorkerLink` and report back.
//!   `reconcile` is its pure plan, `sched` its placement, `clock` its time.
//! - `control`, `clock`: what both control threads share (ask with a deadline, answer, stop,
//!   survive a bug) and the time they read (the system's, or a test's manual clock).
//! - `worker`: the worker's control thread (`worker::state`), which owns its node's task table
//!   and hands engine calls to pools (`worker::ops`) through the `Engine` seam (`worker::engine`,
//!   implemented by `docker_cli`: its calls in the root, HTTP/1.1 over the Unix socket in
//!   `docker_cli::framing`, Docker JSON in `docker_cli::wire`); its pure decisions are in
//!   `worker::decide`, its watchers (stats, health checks, events, ping) in `worker::watch`.
//! - `events`: the manager's bounded history of task and node changes (`GET /v1/events`).
//! - `store`: where records are kept (`Store` trait; in memory or SQLite).
//! - `service`: services (a versioned template kept at N replicas) and their pure plan
//!   (`service::plan`), applied by the manager (`manager::services`).
//! - `http`: route tables, error → status mapping, the server (`http::server`) and the HTTP
//!   clients (manager → worker, client → manager). `api` holds the other wire shapes.
//! - `client`: the line-based client's commands and tables.
//! - `dashboard`: the manager's web page at `/` (HTML, CSS, JS embedded), which reads the API.
//! - `drain`: a drain's pure decisions (which task moves next, when its new copy takes over),
//!   applied by the manager (`manager::drain`).
//! - `deploy`: building an app from its source (language detection and generated Dockerfiles,
//!   the build context with `.dockerignore`), on the engine's build API (`docker_cli::build`);
//!   not wired to the daemons yet.
//! - `ingress`: publishing apps at `APP.DOMAIN` through Caddy's admin API (the routes, the pure
//!   JSON of Skiff's one server, the applier that keeps it live); not wired to the daemons yet.
//! - `metrics`: Prometheus metrics (`GET /v1/metrics`): atomic counters where things happen,
//!   the manager's published snapshot, the exposition format.
//! - `auth`: the cluster token and where a daemon may listen with or without one.
//! - `cli`, `signals`, `time`, `logfmt`: flags and logging, SIGINT/SIGTERM, RFC 3339
//!   timestamps, quoted `key=value` log values.
//!
//! Data flows one way: the manager pushes work to workers and pulls their status; workers keep
//! their containers running without the manager. Containers carry `skiff.*` labels, the truth
//! of what runs.
pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod clock;
pub mod control;
pub mod dashboard;
pub mod deploy;
pub mod docker_cli;
pub mod drain;
pub mod events;
pub mod http;
pub mod ingress;
pub mod logfmt;
pub mod manager;
pub mod metrics;
pub mod reconcile;
pub mod sched;
pub mod service;
pub mod signals;
pub mod stats;
pub mod store;
pub mod task;
pub mod time;
pub mod worker;
