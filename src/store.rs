//! Where a daemon keeps its records: the `Store` trait, in memory (`MemoryStore`) or in SQLite
//! (`SqliteStore`), and the contract suite both must pass.
//!
//! The control thread that owns a store is its only user (there are no concurrent readers), so
//! stores need no locking of their own. A store holds records, not rules: it never decides a
//! task's state. The SQLite store commits every write before it returns (WAL, `synchronous =
//! NORMAL`: a commit survives a crash of the process; only a crash of the machine may lose the
//! last ones), takes an exclusive lock on its file (a second daemon on the same file is refused),
//! and writes nothing when it is not asked to.

use crate::events::ClusterEvent;
use crate::service::Service;
use crate::task::{Task, TaskId};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A store failed to open, read or write.
#[derive(Debug)]
pub enum StoreError {
    /// The storage medium failed (disk, database).
    Io(Box<dyn std::error::Error + Send + Sync>),
    /// The file is damaged, or a stored record cannot be decoded.
    Corrupt(String),
    /// The file is not one of ours, or from a schema this build does not know.
    Schema(String),
    /// Another process holds the file.
    InUse(PathBuf),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(_) => f.write_str("store i/o failed"),
            StoreError::Corrupt(what) => write!(f, "store is corrupt: {what}"),
            StoreError::Schema(what) => write!(f, "{what}"),
            StoreError::InUse(path) => write!(f, "{} is in use by another process", path.display()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// A worker as the manager remembers it across restarts: its address, the name it reported, and
/// whether an operator drained it (a drained node stays drained when the manager restarts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRecord {
    pub address: String,
    pub name: Option<String>,
    pub draining: bool,
}

/// Task records by id. `put_task` returns only once the record is kept (for a durable store:
/// committed), so a caller may acknowledge the change after it.
pub trait Store: Send {
    /// Inserts or replaces the record with this id.
    fn put_task(&mut self, task: &Task) -> Result<(), StoreError>;
    /// `Ok(None)` when there is no such task; `Err` only when the store itself failed.
    fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;
    /// Every task, oldest first (by `created_at`, then id).
    fn list_tasks(&self) -> Result<Vec<Task>, StoreError>;
    /// Returns whether there was such a task.
    fn delete_task(&mut self, id: &TaskId) -> Result<bool, StoreError>;
    /// Inserts or replaces the node with this address.
    fn put_node(&mut self, node: &NodeRecord) -> Result<(), StoreError>;
    /// Every node, by address.
    fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// Forgets the node with this address; returns whether there was one.
    fn delete_node(&mut self, address: &str) -> Result<bool, StoreError>;
    /// Inserts or replaces the service with this name.
    fn put_service(&mut self, service: &Service) -> Result<(), StoreError>;
    /// Every service, by name.
    fn list_services(&self) -> Result<Vec<Service>, StoreError>;
    /// Returns whether there was such a service.
    fn delete_service(&mut self, name: &str) -> Result<bool, StoreError>;
    /// "memory" or "persisted", for health answers and logs.
    fn kind(&self) -> &'static str;
    /// Keeps an event of the cluster's history, and of the history only the last `keep`. Only
    /// a durable store keeps them (a memory store's would die with the daemon anyway).
    fn put_event(&mut self, _event: &ClusterEvent, _keep: u64) -> Result<(), StoreError> {
        Ok(())
    }
    /// The history kept, oldest first.
    fn list_events(&self) -> Result<Vec<ClusterEvent>, StoreError> {
        Ok(Vec::new())
    }
}

/// Records in maps; gone when the process ends.
#[derive(Default)]
pub struct MemoryStore {
    tasks: BTreeMap<TaskId, Task>,
    nodes: BTreeMap<String, NodeRecord>,
    services: BTreeMap<String, Service>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn put_task(&mut self, task: &Task) -> Result<(), StoreError> {
        self.tasks.insert(task.id, task.clone());
        Ok(())
    }

    fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.tasks.get(id).cloned())
    }

    fn list_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let mut all: Vec<Task> = self.tasks.values().cloned().collect();
        all.sort_by_key(|t| (t.created_at, t.id));
        Ok(all)
    }

    fn delete_task(&mut self, id: &TaskId) -> Result<bool, StoreError> {
        Ok(self.tasks.remove(id).is_some())
    }

    fn put_node(&mut self, node: &NodeRecord) -> Result<(), StoreError> {
        self.nodes.insert(node.address.clone(), node.clone());
        Ok(())
    }

    fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.nodes.values().cloned().collect())
    }

    fn delete_node(&mut self, address: &str) -> Result<bool, StoreError> {
        Ok(self.nodes.remove(address).is_some())
    }

    fn put_service(&mut self, service: &Service) -> Result<(), StoreError> {
        self.services.insert(service.name.clone(), service.clone());
        Ok(())
    }

    fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        Ok(self.services.values().cloned().collect())
    }

    fn delete_service(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.services.remove(name).is_some())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// A memory store that can be told to fail its writes, for the tests of "acknowledged only once
/// committed" in both daemons. Clones share the switch and the records.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct FlakyStore {
    inner: std::sync::Arc<std::sync::Mutex<MemoryStore>>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Says "persisted" (a store that outlives the daemon) rather than "memory".
    durable: bool,
    /// Calls waiting for the store (held by `hold`).
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(test)]
impl FlakyStore {
    pub fn new() -> FlakyStore {
        FlakyStore::default()
    }

    /// One that tells the daemon it outlives it, as SQLite does.
    pub fn persisted() -> FlakyStore {
        FlakyStore { durable: true, ..FlakyStore::default() }
    }

    /// From now on, every write fails (or succeeds again).
    pub fn fail_writes(&self, fail: bool) {
        self.failing.store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Io("disk full (test)".into()))
        } else {
            Ok(())
        }
    }

    /// Every store call waits while the guard lives (a store that is slow for a moment).
    pub fn hold(&self) -> std::sync::MutexGuard<'_, MemoryStore> {
        self.inner.lock().expect("test store lock")
    }

    /// A call waits for the store (while `hold`'s guard lives).
    pub fn is_waited_on(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryStore) -> T) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        self.waiting.fetch_add(1, SeqCst);
        let mut inner = self.inner.lock().expect("test store lock");
        self.waiting.fetch_sub(1, SeqCst);
        f(&mut inner)
    }
}

#[cfg(test)]
impl Store for FlakyStore {
    fn put_task(&mut self, task: &Task) -> Result<(), StoreError> {
        self.check()?;
        self.with(|s| s.put_task(task))
    }

    fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.with(|s| s.get_task(id))
    }

    fn list_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.with(|s| s.list_tasks())
    }

    fn delete_task(&mut self, id: &TaskId) -> Result<bool, StoreError> {
        self.check()?;
        self.with(|s| s.delete_task(id))
    }

    fn put_node(&mut self, node: &NodeRecord) -> Result<(), StoreError> {
        self.check()?;
        self.with(|s| s.put_node(node))
    }

    fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.with(|s| s.list_nodes())
    }

    fn delete_node(&mut self, address: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.with(|s| s.delete_node(address))
    }

    fn put_service(&mut self, service: &Service) -> Result<(), StoreError> {
        self.check()?;
        self.with(|s| s.put_service(service))
    }

    fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        self.with(|s| s.list_services())
    }

    fn delete_service(&mut self, name: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.with(|s| s.delete_service(name))
    }

    fn kind(&self) -> &'static str {
        if self.durable {
            "persisted"
        } else {
            "memory"
        }
    }
}

/// The schema version this build writes and reads (`PRAGMA user_version`). A later version adds a
/// migration from each older one; a file from a newer version is refused.
pub const SCHEMA_VERSION: i64 = DRAIN_SCHEMA;

/// The schema step that adds the cluster's event history.
const EVENTS_SCHEMA: i64 = 2;
/// The schema step that adds services.
const SERVICES_SCHEMA: i64 = 3;

/// Every step after v1, by the version it makes: a file at version `v` gets each step above `v`.
const MIGRATIONS: &[(i64, &str)] =
    &[(EVENTS_SCHEMA, SCHEMA_V2), (SERVICES_SCHEMA, SCHEMA_SERVICES), (DRAIN_SCHEMA, SCHEMA_DRAIN)];

/// The schema step that remembers which nodes are drained.
const DRAIN_SCHEMA: i64 = 4;

const SCHEMA_DRAIN: &str = "
    ALTER TABLE nodes ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
";

const SCHEMA_SERVICES: &str = "
    CREATE TABLE services (
        name TEXT PRIMARY KEY NOT NULL,
        record TEXT NOT NULL
    );
";

const SCHEMA_V1: &str = "
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY NOT NULL,
        created_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX tasks_by_age ON tasks (created_at, id);
    CREATE TABLE nodes (
        address TEXT PRIMARY KEY NOT NULL,
        name TEXT
    );
";

/// Version 2: the manager's event history, one JSON record per event, by its number.
const SCHEMA_V2: &str = "
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY NOT NULL,
        record TEXT NOT NULL
    );
";

/// Records in an SQLite file, one JSON record per row.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

fn io(e: rusqlite::Error) -> StoreError {
    StoreError::Io(Box::new(e))
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`. Refuses, with a clear error, a file that is not an
    /// SQLite database, is damaged, is not Skiff's, is from a newer schema, or is held by another
    /// process; never starts afresh over old data.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(e, path))?;
        let store = SqliteStore { conn, path: path.to_path_buf() };
        store.prepare().map_err(|e| classify_store(e, path))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn prepare(&self) -> Result<(), StoreError> {
        // the only other user can be another daemon on the same file: fail at once, do not wait
        self.conn.busy_timeout(std::time::Duration::ZERO).map_err(io)?;
        // Exclusive: the lock is taken at the first access below and held until we close, so a
        // second daemon on this file fails here. It also keeps the WAL index in our memory rather
        // than in a -shm file.
        self.conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(io)?;
        let mode: String = self.conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(io)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!("cannot use WAL mode (got {mode})").into()));
        }
        // NORMAL in WAL mode: a commit is in the WAL file before it returns, so it survives a
        // crash of the process; fewer syncs than FULL (flash storage wears out).
        self.conn.pragma_update(None, "synchronous", "NORMAL").map_err(io)?;
        let check: String = self.conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(io)?;
        if check != "ok" {
            return Err(StoreError::Corrupt(check));
        }
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(io)?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))
            .map_err(io)?;
        match version {
            0 if tables == 0 => {
                let steps: String = MIGRATIONS.iter().map(|(_, sql)| *sql).collect();
                let sql = format!("BEGIN; {SCHEMA_V1} {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;");
                self.conn.execute_batch(&sql).map_err(io)
            }
            0 => Err(StoreError::Schema("the file holds tables but is not a Skiff store".into())),
            SCHEMA_VERSION => Ok(()),
            v if (1..SCHEMA_VERSION).contains(&v) => {
                // one transaction: a step cut off leaves the file as it was
                let steps: String = MIGRATIONS.iter().filter(|(to, _)| *to > v).map(|(_, sql)| *sql).collect();
                let sql = format!("BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;");
                self.conn.execute_batch(&sql).map_err(io)
            }
            v if v > SCHEMA_VERSION => Err(StoreError::Schema(format!(
                "the store was written by a newer Skiff (schema {v}; this build knows {SCHEMA_VERSION} and older)"
            ))),
            v => Err(StoreError::Schema(format!("unknown store schema {v}"))),
        }
    }
}

/// SQLite's own errors at open, in our terms.
fn classify(e: rusqlite::Error, path: &Path) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::Corrupt("the file is not an SQLite database".into()),
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt("the database file is damaged".into()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse(path.to_path_buf()),
        _ => io(e),
    }
}

fn classify_store(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Io(inner) => match inner.downcast::<rusqlite::Error>() {
            Ok(sqlite) => classify(*sqlite, path),
            Err(other) => StoreError::Io(other),
        },
        other => other,
    }
}

fn decode(id: &str, record: &str) -> Result<Task, StoreError> {
    serde_json::from_str(record).map_err(|e| StoreError::Corrupt(format!("task {id}: {e}")))
}

impl Store for SqliteStore {
    fn put_task(&mut self, task: &Task) -> Result<(), StoreError> {
        let record = serde_json::to_string(task).map_err(|e| StoreError::Io(Box::new(e)))?;
        self.conn
            .execute(
                "INSERT INTO tasks (id, created_at, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, record = excluded.record",
                rusqlite::params![task.id.to_string(), task.created_at.millis() as i64, record],
            )
            .map_err(io)?;
        Ok(())
    }

    fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let key = id.to_string();
        let record: Option<String> = self
            .conn
            .query_row("SELECT record FROM tasks WHERE id = ?1", [&key], |r| r.get(0))
            .optional()
            .map_err(io)?;
        record.map(|r| decode(&key, &r)).transpose()
    }

    fn list_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT id, record FROM tasks ORDER BY created_at, id").map_err(io)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(io)?;
        let mut tasks = Vec::new();
        for row in rows {
            let (id, record) = row.map_err(io)?;
            tasks.push(decode(&id, &record)?);
        }
        // the index orders by the text of ids; ties broken like the memory store
        tasks.sort_by_key(|t| (t.created_at, t.id));
        Ok(tasks)
    }

    fn delete_task(&mut self, id: &TaskId) -> Result<bool, StoreError> {
        let n = self.conn.execute("DELETE FROM tasks WHERE id = ?1", [id.to_string()]).map_err(io)?;
        Ok(n > 0)
    }

    fn put_node(&mut self, node: &NodeRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO nodes (address, name, draining) VALUES (?1, ?2, ?3)
                 ON CONFLICT (address) DO UPDATE SET name = excluded.name, draining = excluded.draining",
                rusqlite::params![node.address, node.name, node.draining],
            )
            .map_err(io)?;
        Ok(())
    }

    fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT address, name, draining FROM nodes ORDER BY address").map_err(io)?;
        let rows = stmt
            .query_map([], |r| Ok(NodeRecord { address: r.get(0)?, name: r.get(1)?, draining: r.get(2)? }))
            .map_err(io)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(io)
    }

    fn delete_node(&mut self, address: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute("DELETE FROM nodes WHERE address = ?1", [address]).map_err(io)?;
        Ok(n > 0)
    }

    fn put_service(&mut self, service: &Service) -> Result<(), StoreError> {
        let record = serde_json::to_string(service).map_err(|e| StoreError::Io(Box::new(e)))?;
        self.conn
            .execute(
                "INSERT INTO services (name, record) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                rusqlite::params![service.name, record],
            )
            .map_err(io)?;
        Ok(())
    }

    fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name, record FROM services ORDER BY name").map_err(io)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(io)?;
        let mut out = Vec::new();
        for row in rows {
            let (name, record) = row.map_err(io)?;
            out.push(serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(format!("service {name}: {e}")))?);
        }
        Ok(out)
    }

    fn delete_service(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute("DELETE FROM services WHERE name = ?1", [name]).map_err(io)?;
        Ok(n > 0)
    }

    fn kind(&self) -> &'static str {
        "persisted"
    }

    fn put_event(&mut self, event: &ClusterEvent, keep: u64) -> Result<(), StoreError> {
        let record = serde_json::to_string(event).map_err(|e| StoreError::Io(Box::new(e)))?;
        let tx = self.conn.transaction().map_err(io)?;
        tx.execute(
            "INSERT OR REPLACE INTO events (seq, record) VALUES (?1, ?2)",
            rusqlite::params![event.seq as i64, record],
        )
        .map_err(io)?;
        let oldest = event.seq.saturating_sub(keep) as i64;
        tx.execute("DELETE FROM events WHERE seq <= ?1", [oldest]).map_err(io)?;
        tx.commit().map_err(io)
    }

    fn list_events(&self) -> Result<Vec<ClusterEvent>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT record FROM events ORDER BY seq").map_err(io)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(io)?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(io)?;
            out.push(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("event record: {e}")))?);
        }
        Ok(out)
    }
}

/// The contract every store must keep, run against each implementation.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use crate::task::{TaskSpec, TaskState};
    use crate::time::Timestamp;

    fn task(name: &str, created: u64) -> Task {
        let spec = TaskSpec::from_json(format!(r#"{{"name":"{name}","image":"skiff/busybox"}}"#).as_bytes())
            .expect("valid spec");
        Task::new(TaskId::new_v4(), spec, Timestamp(created))
    }

    pub fn run_all(make: &mut dyn FnMut() -> Box<dyn Store>) {
        put_then_get(make());
        put_replaces(make());
        list_is_oldest_first(make());
        delete_reports_presence(make());
        missing_is_none_not_error(make());
        nodes_are_kept_by_address(make());
        services_are_kept_by_name(make());
        every_field_survives(make());
    }

    fn services_are_kept_by_name(mut s: Box<dyn Store>) {
        use crate::service::{Service, ServiceSpec};
        assert!(s.list_services().expect("list").is_empty());
        let make = |name: &str| {
            let body = serde_json::json!({"name": name, "template": {"image": "skiff/busybox"}, "replicas": 2});
            Service::new(ServiceSpec::from_value(body, None).expect("valid"), Timestamp(5))
        };
        let (web, api) = (make("web"), make("api"));
        s.put_service(&web).expect("put");
        s.put_service(&api).expect("put");
        let mut scaled = web.clone();
        scaled.replicas = 5;
        scaled.deploy(
            ServiceSpec::from_value(serde_json::json!({"name": "web", "template": {"image": "b"}}), None)
                .expect("valid"),
            Timestamp(9),
        );
        s.put_service(&scaled).expect("put again");
        assert_eq!(s.list_services().expect("list"), vec![api.clone(), scaled]);
        assert!(s.delete_service("web").expect("delete"));
        assert!(!s.delete_service("web").expect("delete again"));
        assert_eq!(s.list_services().expect("list"), vec![api]);
    }

    fn nodes_are_kept_by_address(mut s: Box<dyn Store>) {
        assert!(s.list_nodes().expect("list").is_empty());
        let a = NodeRecord { address: "10.0.0.2:80".into(), name: None, draining: false };
        let b = NodeRecord { address: "10.0.0.1:80".into(), name: Some("w1".into()), draining: false };
        s.put_node(&a).expect("put");
        s.put_node(&b).expect("put");
        let named = NodeRecord { name: Some("w2".into()), draining: true, ..a.clone() };
        s.put_node(&named).expect("put again");
        assert_eq!(s.list_nodes().expect("list"), vec![b.clone(), named]);
        assert!(s.delete_node("10.0.0.2:80").expect("delete"));
        assert!(!s.delete_node("10.0.0.2:80").expect("delete again"));
        assert_eq!(s.list_nodes().expect("list"), vec![b]);
    }

    fn every_field_survives(mut s: Box<dyn Store>) {
        let spec = TaskSpec::from_json(
            br#"{"name":"web","image":"skiff/busybox","cmd":["httpd","-f"],"env":{"A":"1"},"cpus":0.5,
                "memory_mb":64,"disk_mb":10,"ports":[{"container":8080,"host":0}]}"#,
        )
        .expect("valid spec");
        let mut t = Task::new(TaskId::new_v4(), spec, Timestamp(7));
        t.set_state(TaskState::Scheduled, Timestamp(8)).expect("allowed");
        t.set_state(TaskState::Running, Timestamp(9)).expect("allowed");
        t.node = Some("w1".into());
        t.container_id = Some("abc".into());
        t.ports = vec![crate::task::PortBinding {
            container: 8080,
            protocol: crate::task::Protocol::Tcp,
            host_ip: "0.0.0.0".into(),
            host: 32768,
        }];
        t.desired_state = crate::task::DesiredState::Stopped;
        t.error = Some("why".into());
        s.put_task(&t).expect("put");
        assert_eq!(s.get_task(&t.id).expect("get"), Some(t));
    }

    fn put_then_get(mut s: Box<dyn Store>) {
        let t = task("a", 1);
        s.put_task(&t).expect("put");
        assert_eq!(s.get_task(&t.id).expect("get"), Some(t));
    }

    fn put_replaces(mut s: Box<dyn Store>) {
        let mut t = task("a", 1);
        s.put_task(&t).expect("put");
        t.set_state(TaskState::Scheduled, Timestamp(2)).expect("allowed");
        t.node = Some("w1".into());
        s.put_task(&t).expect("put again");
        assert_eq!(s.get_task(&t.id).expect("get"), Some(t.clone()));
        assert_eq!(s.list_tasks().expect("list").len(), 1);
    }

    fn list_is_oldest_first(mut s: Box<dyn Store>) {
        let (a, b, c) = (task("a", 30), task("b", 10), task("c", 20));
        for t in [&a, &b, &c] {
            s.put_task(t).expect("put");
        }
        let names: Vec<String> = s.list_tasks().expect("list").into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["b", "c", "a"]);
    }

    fn delete_reports_presence(mut s: Box<dyn Store>) {
        let t = task("a", 1);
        s.put_task(&t).expect("put");
        assert!(s.delete_task(&t.id).expect("delete"));
        assert!(!s.delete_task(&t.id).expect("delete again"));
        assert_eq!(s.get_task(&t.id).expect("get"), None);
        assert!(s.list_tasks().expect("list").is_empty());
    }

    fn missing_is_none_not_error(s: Box<dyn Store>) {
        assert!(matches!(s.get_task(&TaskId::new_v4()), Ok(None)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_keeps_the_contract() {
        contract::run_all(&mut || Box::new(MemoryStore::new()));
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-store-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir.join(name)
    }

    #[test]
    fn sqlite_store_keeps_the_contract() {
        contract::run_all(&mut || Box::new(SqliteStore::open(&scratch("t.db")).expect("opens")));
    }

    #[test]
    fn sqlite_store_keeps_records_across_reopening() {
        let path = scratch("t.db");
        let t = Task::new(
            TaskId::new_v4(),
            crate::task::TaskSpec::from_json(br#"{"name":"a","image":"b"}"#).expect("valid"),
            crate::time::Timestamp(1),
        );
        {
            let mut s = SqliteStore::open(&path).expect("opens");
            s.put_task(&t).expect("put");
        }
        let s = SqliteStore::open(&path).expect("reopens");
        assert_eq!(s.list_tasks().expect("list"), vec![t]);
    }

    #[test]
    fn sqlite_store_refuses_a_second_process_on_the_same_file() {
        let path = scratch("t.db");
        let _first = SqliteStore::open(&path).expect("opens");
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::InUse(_))));
    }

    #[test]
    fn sqlite_store_refuses_garbage_newer_schemas_and_foreign_files() {
        let garbage = scratch("garbage.db");
        std::fs::write(&garbage, vec![0x42u8; 8192]).expect("write");
        assert!(matches!(SqliteStore::open(&garbage), Err(StoreError::Corrupt(_))), "garbage");

        let newer = scratch("newer.db");
        drop(SqliteStore::open(&newer).expect("opens"));
        Connection::open(&newer).expect("raw").pragma_update(None, "user_version", 99).expect("bump");
        let e = SqliteStore::open(&newer).err().expect("refused");
        assert!(matches!(e, StoreError::Schema(_)) && e.to_string().contains("newer"), "{e}");

        let foreign = scratch("foreign.db");
        Connection::open(&foreign).expect("raw").execute_batch("CREATE TABLE x (y)").expect("table");
        assert!(matches!(SqliteStore::open(&foreign), Err(StoreError::Schema(_))));
    }

    #[test]
    fn a_v1_file_gets_the_services_table_and_keeps_its_tasks() {
        let path = scratch("v1.db");
        let conn = Connection::open(&path).expect("raw");
        conn.execute_batch(&format!("{SCHEMA_V1} PRAGMA user_version = 1;")).expect("a v1 file");
        conn.execute("INSERT INTO nodes VALUES ('w:1', 'w1')", []).expect("a node");
        drop(conn);
        let mut s = SqliteStore::open(&path).expect("migrates");
        assert_eq!(s.list_nodes().expect("nodes").len(), 1);
        assert!(s.list_services().expect("the table is there").is_empty());
        let body = serde_json::json!({"name": "web", "template": {"image": "x"}});
        let svc = crate::service::Service::new(
            crate::service::ServiceSpec::from_value(body, None).expect("valid"),
            crate::time::Timestamp(1),
        );
        s.put_service(&svc).expect("put");
        drop(s);
        let s = SqliteStore::open(&path).expect("opens again");
        assert_eq!(s.list_services().expect("list"), vec![svc]);
        let v: i64 = s.conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_file_migrates_keeping_its_records_and_events_stay_bounded() {
        let path = scratch("v1.db");
        {
            let raw = Connection::open(&path).expect("raw");
            raw.execute_batch(&format!("{SCHEMA_V1} PRAGMA user_version = 1;")).expect("a version 1 file");
            raw.execute("INSERT INTO nodes (address, name) VALUES ('h:1', 'w1')", []).expect("a node");
        }
        let mut s = SqliteStore::open(&path).expect("migrates");
        let version: i64 = s.conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(
            s.list_nodes().expect("nodes"),
            vec![NodeRecord { address: "h:1".into(), name: Some("w1".into()), draining: false }]
        );
        let mut log = crate::events::EventLog::new(10);
        for i in 0..5u64 {
            let e = log
                .push(
                    crate::time::Timestamp(i),
                    crate::events::Subject::Node,
                    None,
                    Some("w1".into()),
                    None,
                    "up".into(),
                    "r".into(),
                )
                .clone();
            s.put_event(&e, 3).expect("kept");
        }
        let seqs: Vec<u64> = s.list_events().expect("events").iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5], "only the last three");
        drop(s);
        let again = SqliteStore::open(&path).expect("reopens");
        assert_eq!(again.list_events().expect("events").len(), 3, "the history survives a restart");
        assert!(MemoryStore::default().list_events().expect("none").is_empty());
    }

    #[test]
    fn sqlite_store_refuses_a_damaged_record() {
        let path = scratch("t.db");
        let s = SqliteStore::open(&path).expect("opens");
        s.conn.execute("INSERT INTO tasks VALUES ('x', 1, '{not json')", []).expect("raw insert");
        assert!(matches!(s.list_tasks(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn sqlite_failure_is_an_error_not_a_missing_record() {
        let s = SqliteStore::open(&scratch("t.db")).expect("opens");
        s.conn.execute_batch("DROP TABLE tasks").expect("break it");
        assert!(s.get_task(&TaskId::new_v4()).is_err());
        assert!(s.list_tasks().is_err());
    }
}
