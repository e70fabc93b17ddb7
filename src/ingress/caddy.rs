//! The applier: makes Caddy's live config hold exactly the wanted routes, over its admin API
//! (`GET`/`POST`/`DELETE /config/...`, each call with a deadline), and notices when it no
//! longer does.
//!
//! **Applying replaces Skiff's whole server in one request** (`POST
//! /config/apps/http/servers/skiff` sets or replaces that one key), rather than deleting and
//! adding routes one by one by `@id`. Caddy 2.6 indexes `@id`s without refusing a duplicate, so
//! adding a route whose id is already there would leave two; replacing the server that holds
//! every Skiff route makes a duplicate impossible (the ids are unique within the JSON we send,
//! `config::server_config` sees to it), removes the routes of apps that are gone in the same
//! stroke, and is one config change: Caddy loads the new config beside the old one and switches
//! gracefully (requests in flight finish), so there is no moment with a route deleted and not
//! yet added, as delete-before-add would have, when a request would find no app. One caveat of
//! Caddy 2.6, measured in `tests/ingress.rs`: a *new* connection that arrives at the instant of
//! a reload can be reset before any byte is answered (about one reload in 15 under a loop of one
//! connection per request; none without reloads). 2.6 binds each config's listeners anew with
//! `SO_REUSEPORT` and closes the old sockets, the likely cause. Browsers send such an idempotent
//! request again, and requests on connections already open are finished. So `apply` changes
//! nothing when the routes are already live.
//!
//! Nothing else of the config is written: other servers, other apps, `admin` and `storage` stay
//! as they are; only when `apps`, `apps.http` or its `servers` do not exist yet is the missing
//! level created around the server.
//!
//! **Checking is one `GET` of the server**, compared value for value with what was last applied
//! (Caddy keeps the JSON it was given). A Caddy restarted with its config file has lost the
//! server: Caddy 2.6 saves every config loaded through the API to `autosave.json` in its config
//! directory (`$XDG_CONFIG_HOME/caddy/`, unless `admin.config.persist` is false), but reads it
//! back only under `caddy run --resume`; Debian's `caddy.service` starts from
//! `/etc/caddy/Caddyfile` without it (its `caddy-api.service` uses `--resume`). Either way
//! `ensure` compares and applies again when the live server is missing or different, so a stale
//! resumed copy is corrected as well.
//!
//! Must not read or write Caddy's files, or hold which apps should run: `apply` is told.

use super::config::{server_config, Settings, SERVER};
use super::{AppRoute, Ingress, IngressError};
use serde_json::{json, Value};
use std::time::Duration;

/// Caddy's admin address when none is configured.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:2019";

/// Answers from the admin API bigger than this are refused (a config of thousands of routes fits).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// What `ensure` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// Caddy holds what was last applied (or nothing has been applied yet).
    InSync,
    /// It did not (restarted, or its config replaced by someone else); applied again.
    Reapplied,
}

/// The ingress on one Caddy, through its admin API.
pub struct CaddyIngress {
    admin: String,
    base: String,
    agent: ureq::Agent,
    settings: Settings,
    /// Skiff's server as last applied: what Caddy should hold.
    applied: Option<Value>,
}

impl CaddyIngress {
    /// An applier for the Caddy whose admin API listens at `admin` (`HOST:PORT`), each call
    /// bounded by `deadline` (a config change waits for Caddy to load the new config).
    pub fn new(admin: &str, settings: Settings, deadline: Duration) -> CaddyIngress {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(deadline.min(Duration::from_secs(2))))
            .timeout_global(Some(deadline))
            .build()
            .new_agent();
        CaddyIngress { admin: admin.to_string(), base: format!("http://{admin}"), agent, settings, applied: None }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Makes exactly `routes` live (see the module's text for how). Routes that are already live
    /// as applied cost one `GET` and no config change: every change makes Caddy reload all of
    /// its config, and in Caddy 2.6 a connection that arrives at that instant can be reset.
    pub fn apply(&mut self, routes: &[AppRoute]) -> Result<(), IngressError> {
        let server = server_config(routes, &self.settings)?;
        if self.applied.as_ref() == Some(&server) && self.check()? {
            return Ok(());
        }
        self.put_server(&server)?;
        self.applied = Some(server);
        Ok(())
    }

    /// Whether Caddy's live server is the one last applied (true when nothing was applied).
    pub fn check(&self) -> Result<bool, IngressError> {
        let Some(applied) = &self.applied else { return Ok(true) };
        Ok(self.live_server()?.as_ref() == Some(applied))
    }

    /// `check`, and `apply` the same routes again when it fails.
    pub fn ensure(&mut self) -> Result<Drift, IngressError> {
        if self.check()? {
            return Ok(Drift::InSync);
        }
        let Some(server) = self.applied.clone() else { return Ok(Drift::InSync) };
        self.put_server(&server)?;
        Ok(Drift::Reapplied)
    }

    /// Takes Skiff's server out of Caddy (every app route with it); nothing else changes.
    pub fn remove(&mut self) -> Result<(), IngressError> {
        if self.live_server()?.is_some() {
            self.call("DELETE", &format!("/config/apps/http/servers/{SERVER}"), None)?;
        }
        self.applied = None;
        Ok(())
    }

    /// Skiff's server as Caddy holds it, `None` if it has none (or no `apps.http` at all).
    pub fn live_server(&self) -> Result<Option<Value>, IngressError> {
        self.get_optional(&format!("/config/apps/http/servers/{SERVER}"))
    }

    /// Sets Skiff's server, creating the first of `apps`, `http`, `servers` that is missing
    /// around it; one `POST` either way.
    fn put_server(&self, server: &Value) -> Result<(), IngressError> {
        // from the deepest level that should exist up to the root of the config: the first that
        // exists gets the rest, nested
        let levels: [(&str, &[&str]); 3] = [
            ("/config/apps/http/servers", &[SERVER]),
            ("/config/apps/http", &["servers", SERVER]),
            ("/config/apps", &["http", "servers", SERVER]),
        ];
        let nest = |keys: &[&str]| keys.iter().rev().fold(server.clone(), |inner, key| json!({ *key: inner }));
        for (path, keys) in levels {
            if let Some(Value::Object(_)) = self.get_optional(path)? {
                let (first, rest) = keys.split_first().expect("every level names at least the server");
                self.call("POST", &format!("{path}/{first}"), Some(&nest(rest)))?;
                return Ok(());
            }
        }
        // no `apps` at all: add it beside what the config holds (`admin`, `storage`, ...)
        match self.get_optional("/config/")? {
            Some(Value::Object(_)) => self.call("POST", "/config/apps", Some(&nest(&["http", "servers", SERVER])))?,
            _ => self.call("POST", "/config/", Some(&nest(&["apps", "http", "servers", SERVER])))?,
        };
        Ok(())
    }

    /// A `GET` that reads a missing key (Caddy's `null`, or its 400 for a path through a
    /// missing level) as `None`.
    fn get_optional(&self, path: &str) -> Result<Option<Value>, IngressError> {
        match self.call("GET", path, None) {
            Ok(Value::Null) => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(IngressError::Refused { status: 400 | 404, message }) if message.contains("invalid traversal") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One admin call; its JSON answer (`null` for an empty one).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, IngressError> {
        let unreachable = |e: ureq::Error| IngressError::Unreachable { admin: self.admin.clone(), source: Box::new(e) };
        let url = format!("{}{path}", self.base);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let request = builder.body(bytes).map_err(|e| IngressError::BadAnswer(format!("cannot make {url}: {e}")))?;
        let mut resp = self.agent.run(request).map_err(unreachable)?;
        let status = resp.status().as_u16();
        let answer = resp.body_mut().with_config().limit(MAX_ANSWER).read_to_vec().map_err(unreachable)?;
        if !(200..300).contains(&status) {
            return Err(IngressError::Refused { status, message: caddy_words(&answer) });
        }
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer).map_err(|e| IngressError::BadAnswer(format!("{method} {path}: {e}")))
    }
}

/// Caddy's own words from a refusal: its `{"error": "..."}`, else the start of the body.
fn caddy_words(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().chars().take(500).collect())
}

impl Ingress for CaddyIngress {
    fn apply(&mut self, routes: &[AppRoute]) -> Result<(), IngressError> {
        CaddyIngress::apply(self, routes)
    }

    fn ensure(&mut self) -> Result<Drift, IngressError> {
        CaddyIngress::ensure(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caddys_words_come_from_its_error_field() {
        assert_eq!(
            caddy_words(br#"{"error":"loading config: listener address repeated"}"#),
            "loading config: listener address repeated"
        );
        assert_eq!(caddy_words(b"  plain words\n"), "plain words");
        assert_eq!(caddy_words(&[b'x'; 600]).len(), 500);
    }

    #[test]
    fn a_caddy_that_is_not_there_is_unreachable_within_the_deadline() {
        // a port that was free a moment ago: nothing listens there
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let admin = format!("127.0.0.1:{port}");
        let mut ingress = CaddyIngress::new(&admin, Settings::new(":1"), Duration::from_secs(2));
        let started = std::time::Instant::now();
        let e = ingress.apply(&[]).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(e.to_string(), format!("caddy's admin API at {admin} does not answer"));
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        assert!(ingress.check().unwrap(), "nothing was applied, so nothing drifted");
    }
}
