//! The ingress: each app reachable at `Host: APP.DOMAIN`, load balanced over its replicas, through
//! Caddy programmed at run time over its admin API. This folder owns what a route is
//! (`AppRoute`, with the app name checked as a DNS host label), the pure translation of the
//! wanted routes into the JSON of the one Caddy server Skiff owns (`config`), and the applier
//! that makes Caddy's live config match it and notices when it no longer does (`caddy`).
//!
//! It must not edit Caddy's files, touch any part of Caddy's config but its own server, or hold
//! the truth of which apps run where: the caller (the manager's ingress thread) says what is wanted,
//! every time, and the applier makes it so. `Ingress` is the seam the manager calls from a
//! thread of its own (a call waits on the network); `RecordingIngress` is its fake.

pub mod caddy;
pub mod config;

pub use caddy::{CaddyIngress, Drift};
pub use config::{server_config, Settings, Tls};

use std::fmt;

/// The domain apps are published under when none is configured: `http://APP.localhost:PORT`
/// works in a browser on the same machine with no DNS (browsers resolve `*.localhost` to
/// loopback).
pub const DEFAULT_DOMAIN: &str = "localhost";

/// The path the health checks ask when the app names none.
pub const DEFAULT_HEALTH_PATH: &str = "/";

/// An app's name, valid as one DNS host label, since it becomes the first label of its host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

impl AppName {
    /// 1 to 63 of `a-z`, `0-9` and `-`, neither first nor last a hyphen (RFC 1123's label, in
    /// lower case only: a host is matched case-blind, so `Shop` and `shop` would be one host).
    pub fn parse(name: &str) -> Result<AppName, IngressError> {
        let bad = |why: &str| Err(IngressError::InvalidName { name: name.to_string(), why: why.to_string() });
        if name.is_empty() {
            return bad("it is empty");
        }
        if name.len() > 63 {
            return bad(&format!("it has {} characters, at most 63 are allowed", name.len()));
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return bad(&format!("{c:?} is not allowed: only lowercase letters, digits and hyphens"));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return bad("it starts or ends with a hyphen");
        }
        Ok(AppName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One app as the ingress publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoute {
    pub app: AppName,
    /// `APP.DOMAIN`, what the `Host` header must say.
    pub host: String,
    /// `HOST:PORT` of each running replica (the worker's address and the replica's host port);
    /// empty while none runs, which Caddy answers with a 503 naming the app.
    pub upstreams: Vec<String>,
    /// What the active health checks ask each upstream (a path, with a query if wanted).
    pub health_path: String,
}

impl AppRoute {
    /// The route of `app` under `domain` to `upstreams`, checked at `/`.
    pub fn new(app: &str, domain: &str, upstreams: &[&str]) -> Result<AppRoute, IngressError> {
        let app = AppName::parse(app)?;
        check_domain(domain)?;
        let upstreams: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
        for u in &upstreams {
            check_upstream(u)?;
        }
        Ok(AppRoute { host: format!("{app}.{domain}"), app, upstreams, health_path: DEFAULT_HEALTH_PATH.into() })
    }

    /// The same route with its health checks asking `path`.
    pub fn with_health_path(mut self, path: &str) -> Result<AppRoute, IngressError> {
        if !path.starts_with('/') || path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(IngressError::InvalidRoute(format!(
                "the health check path {path:?} must start with / and hold no spaces or control characters"
            )));
        }
        self.health_path = path.to_string();
        Ok(self)
    }
}

/// A domain is one or more host labels joined by dots (`localhost`, `apps.example.org`).
fn check_domain(domain: &str) -> Result<(), IngressError> {
    let ok =
        !domain.is_empty() && domain.len() <= 253 - 64 && domain.split('.').all(|label| AppName::parse(label).is_ok());
    if ok {
        Ok(())
    } else {
        Err(IngressError::InvalidRoute(format!(
            "the domain {domain:?} is not a host name in lower case (labels of a-z, 0-9 and -, joined by dots)"
        )))
    }
}

/// An upstream is `HOST:PORT` with a port from 1 to 65535 (`[::1]:8080` for IPv6).
fn check_upstream(upstream: &str) -> Result<(), IngressError> {
    let port = upstream.rsplit_once(':').filter(|(host, _)| !host.is_empty()).map(|(_, port)| port.parse::<u16>());
    match port {
        Some(Ok(p)) if p > 0 && !upstream.contains(char::is_whitespace) => Ok(()),
        _ => Err(IngressError::InvalidRoute(format!("the upstream {upstream:?} is not HOST:PORT"))),
    }
}

/// What failed, from input to Caddy's answer.
#[derive(Debug)]
pub enum IngressError {
    /// The app name cannot be a host label.
    InvalidName { name: String, why: String },
    /// A domain, upstream or path that cannot be routed, or two routes of one app.
    InvalidRoute(String),
    /// Caddy's admin API did not answer (not running, wrong address, too slow).
    Unreachable { admin: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// Caddy answered with a refusal: its status and its own words.
    Refused { status: u16, message: String },
    /// Caddy answered 2xx with something that is not the JSON asked for.
    BadAnswer(String),
}

impl fmt::Display for IngressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngressError::InvalidName { name, why } => {
                write!(f, "the app name {name:?} cannot be a host name ({why}): use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen")
            }
            IngressError::InvalidRoute(why) => f.write_str(why),
            IngressError::Unreachable { admin, .. } => write!(f, "caddy's admin API at {admin} does not answer"),
            IngressError::Refused { status, message } => write!(f, "caddy refused the config ({status}): {message}"),
            IngressError::BadAnswer(why) => write!(f, "caddy's admin API answered something unexpected: {why}"),
        }
    }
}

impl std::error::Error for IngressError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IngressError::Unreachable { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// What the manager needs of an ingress. Each call may wait on the network for its deadline, so
/// it is made from a thread of the caller's own, never the control thread.
pub trait Ingress: Send {
    /// Makes exactly `routes` published: new apps added, changed ones updated, absent ones removed.
    fn apply(&mut self, routes: &[AppRoute]) -> Result<(), IngressError>;
    /// Checks that what was last applied is still live, and applies it again if not (Caddy
    /// restarted, someone replaced its config). Says whether it had to.
    fn ensure(&mut self) -> Result<Drift, IngressError>;
}

/// A fake ingress for the manager's tests: keeps what it was asked, and can be told to fail.
#[derive(Debug, Default)]
pub struct RecordingIngress {
    /// Every `apply`'s routes, in order.
    pub applied: Vec<Vec<AppRoute>>,
    /// When set, every call fails with `Refused` and these words.
    pub fail_with: Option<String>,
    /// What `ensure` answers when not failing.
    pub drift: Option<Drift>,
}

impl Ingress for RecordingIngress {
    fn apply(&mut self, routes: &[AppRoute]) -> Result<(), IngressError> {
        if let Some(message) = &self.fail_with {
            return Err(IngressError::Refused { status: 400, message: message.clone() });
        }
        self.applied.push(routes.to_vec());
        Ok(())
    }

    fn ensure(&mut self) -> Result<Drift, IngressError> {
        if let Some(message) = &self.fail_with {
            return Err(IngressError::Refused { status: 400, message: message.clone() });
        }
        Ok(self.drift.unwrap_or(Drift::InSync))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_host_labels() {
        for good in ["a", "shop", "my-app", "a1", "0app", &"x".repeat(63)] {
            assert_eq!(AppName::parse(good).unwrap().as_str(), good);
        }
        let cases: [(&str, &str); 7] = [
            ("", "it is empty"),
            (&"x".repeat(64), "64 characters"),
            ("Shop", "'S' is not allowed"),
            ("my_app", "'_' is not allowed"),
            ("a.b", "'.' is not allowed"),
            ("-app", "hyphen"),
            ("app-", "hyphen"),
        ];
        for (bad, why) in cases {
            let e = AppName::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("cannot be a host name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_route_has_its_host_and_checked_parts() {
        let r = AppRoute::new("shop", "localhost", &["127.0.0.1:8001", "10.0.0.2:9000"]).unwrap();
        assert_eq!(r.host, "shop.localhost");
        assert_eq!(r.upstreams, ["127.0.0.1:8001", "10.0.0.2:9000"]);
        assert_eq!(r.health_path, "/");
        assert_eq!(r.with_health_path("/healthz?full=1").unwrap().health_path, "/healthz?full=1");
        assert_eq!(AppRoute::new("a", "apps.example.org", &["[::1]:80"]).unwrap().host, "a.apps.example.org");

        for (domain, upstream, words) in [
            ("Example.org", "h:1", "the domain \"Example.org\""),
            ("", "h:1", "the domain \"\""),
            ("a..b", "h:1", "the domain"),
            ("localhost", "h", "the upstream \"h\" is not HOST:PORT"),
            ("localhost", ":80", "the upstream"),
            ("localhost", "h:0", "the upstream"),
            ("localhost", "h:70000", "the upstream"),
            ("localhost", "h :80", "the upstream"),
        ] {
            let e = AppRoute::new("a", domain, &[upstream]).unwrap_err().to_string();
            assert!(e.contains(words), "{domain:?} {upstream:?}: {e}");
        }
        let r = AppRoute::new("a", "localhost", &[]).unwrap();
        assert!(r.clone().with_health_path("health").unwrap_err().to_string().contains("must start with /"));
        assert!(r.with_health_path("/a b").is_err());
    }

    #[test]
    fn the_fake_records_and_fails_on_demand() {
        let mut fake = RecordingIngress::default();
        let routes = vec![AppRoute::new("a", "localhost", &["h:1"]).unwrap()];
        fake.apply(&routes).unwrap();
        assert_eq!(fake.applied, vec![routes.clone()]);
        assert_eq!(fake.ensure().unwrap(), Drift::InSync);
        fake.fail_with = Some("no".into());
        assert!(fake.apply(&routes).unwrap_err().to_string().contains("no"));
        assert_eq!(fake.applied.len(), 1);
    }
}
