//! The JSON of the one Caddy HTTP server Skiff owns (`apps.http.servers.skiff`), computed from
//! the routes wanted and the ingress's settings: one route per app (`@id` `skiff-app-NAME`, a
//! `host` matcher, a `reverse_proxy` over its replicas), then a last route that answers 404 for
//! any other host. Pure, and deterministic (routes sorted by app), so the applier can compare
//! Caddy's live copy with it value for value.
//!
//! Each app's proxy balances round-robin, checks its upstreams actively (`health_path`, every
//! `health_interval`) and passively (a failed request takes the upstream out for
//! `fail_duration`), and retries a request on another upstream for up to `try_duration`: a
//! refused connection always, a failed exchange for idempotent methods only (`retry_match`), so
//! a replica that goes away between two health checks costs latency, not a lost request.
//!
//! Must not do I/O.

use super::{AppRoute, IngressError, DEFAULT_DOMAIN};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The name of Skiff's server under `apps.http.servers`: the only part of Caddy's config Skiff
/// writes.
pub const SERVER: &str = "skiff";

/// The prefix of every route id Skiff gives (`skiff-app-NAME`, and `skiff-no-app`).
pub const ID_PREFIX: &str = "skiff-";

/// The id of the last route, which answers hosts with no app.
pub const FALLBACK_ID: &str = "skiff-no-app";

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP (automatic HTTPS disabled on this server): for `localhost` and the tests.
    Off,
    /// Caddy's automatic HTTPS on this server: certificates from its own local CA for
    /// `*.localhost` names (what `tls internal` does), from a public ACME CA for a real domain.
    /// Forcing the local CA for a real domain would take a policy in `apps.tls`, which is not
    /// Skiff's to write yet.
    Automatic,
}

/// Where and how the server listens, and the timings of its proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Caddy's listen address for the server: `:8088`, `127.0.0.1:PORT`.
    pub listen: String,
    /// Apps are published at `APP.DOMAIN`.
    pub domain: String,
    pub tls: Tls,
    /// How often each upstream's health path is asked.
    pub health_interval: Duration,
    /// How long a health check may take before the upstream counts as down.
    pub health_timeout: Duration,
    /// How long a request keeps being retried on other upstreams.
    pub try_duration: Duration,
    /// The pause before each retry.
    pub try_interval: Duration,
    /// How long an upstream that failed a request stays out.
    pub fail_duration: Duration,
}

impl Settings {
    /// Plain HTTP on `listen` under `localhost`, with checks every second and retries for 5 s.
    pub fn new(listen: &str) -> Settings {
        Settings {
            listen: listen.to_string(),
            domain: DEFAULT_DOMAIN.to_string(),
            tls: Tls::Off,
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(1),
            try_duration: Duration::from_secs(5),
            try_interval: Duration::from_millis(50),
            fail_duration: Duration::from_secs(10),
        }
    }

    /// The route of `app` under this ingress's domain, checked at `/`.
    pub fn route(&self, app: &str, upstreams: &[&str]) -> Result<AppRoute, IngressError> {
        AppRoute::new(app, &self.domain, upstreams)
    }
}

/// The id of an app's route.
pub fn route_id(app: &str) -> String {
    format!("{ID_PREFIX}app-{app}")
}

/// Caddy's duration syntax (Go's), in milliseconds: exact for every `Duration` we use.
fn duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The server's JSON for exactly `routes`. Two routes of one app, or of one host, are refused:
/// Caddy would take the first silently.
pub fn server_config(routes: &[AppRoute], settings: &Settings) -> Result<Value, IngressError> {
    let mut sorted: Vec<&AppRoute> = routes.iter().collect();
    sorted.sort_by(|a, b| a.app.cmp(&b.app));
    let mut hosts = BTreeSet::new();
    for pair in sorted.windows(2) {
        if pair[0].app == pair[1].app {
            return Err(IngressError::InvalidRoute(format!("the app {} has two routes", pair[0].app)));
        }
    }
    for r in &sorted {
        if !hosts.insert(r.host.as_str()) {
            return Err(IngressError::InvalidRoute(format!("the host {} is given to two apps", r.host)));
        }
    }
    let mut json_routes: Vec<Value> = sorted.iter().map(|r| app_route(r, settings)).collect();
    json_routes.push(json!({
        "@id": FALLBACK_ID,
        "handle": [{
            "handler": "static_response",
            "status_code": 404,
            "body": "no app is published at this host\n",
        }],
        "terminal": true,
    }));
    let mut server = json!({
        "listen": [settings.listen],
        "routes": json_routes,
    });
    if settings.tls == Tls::Off {
        server["automatic_https"] = json!({ "disable": true });
    }
    Ok(server)
}

fn app_route(r: &AppRoute, s: &Settings) -> Value {
    let handler = if r.upstreams.is_empty() {
        json!({
            "handler": "static_response",
            "status_code": 503,
            "body": format!("the app {} has no running replica\n", r.app),
        })
    } else {
        json!({
            "handler": "reverse_proxy",
            "upstreams": r.upstreams.iter().map(|u| json!({ "dial": u })).collect::<Vec<_>>(),
            "load_balancing": {
                "selection_policy": { "policy": "round_robin" },
                "try_duration": duration(s.try_duration),
                "try_interval": duration(s.try_interval),
                // a refused connection is always retried; a failed exchange only for these
                "retry_match": [{ "method": ["GET", "HEAD", "OPTIONS"] }],
            },
            "health_checks": {
                "active": {
                    "uri": r.health_path,
                    "interval": duration(s.health_interval),
                    "timeout": duration(s.health_timeout),
                },
                "passive": {
                    "fail_duration": duration(s.fail_duration),
                    "max_fails": 1,
                },
            },
        })
    };
    json!({
        "@id": route_id(r.app.as_str()),
        "match": [{ "host": [r.host] }],
        "handle": [handler],
        "terminal": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(app: &str, upstreams: &[&str]) -> AppRoute {
        AppRoute::new(app, "localhost", upstreams).unwrap()
    }

    fn ids(server: &Value) -> Vec<String> {
        server["routes"].as_array().unwrap().iter().map(|r| r["@id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn one_route_per_app_sorted_then_the_fallback() {
        struct Case {
            routes: Vec<AppRoute>,
            ids: &'static [&'static str],
            hosts: &'static [&'static str],
        }
        let cases = [
            Case { routes: vec![], ids: &["skiff-no-app"], hosts: &[] },
            Case {
                routes: vec![route("shop", &["h:1"])],
                ids: &["skiff-app-shop", "skiff-no-app"],
                hosts: &["shop.localhost"],
            },
            Case {
                routes: vec![route("web", &["h:1"]), route("api", &["h:2"]), route("blog", &[])],
                ids: &["skiff-app-api", "skiff-app-blog", "skiff-app-web", "skiff-no-app"],
                hosts: &["api.localhost", "blog.localhost", "web.localhost"],
            },
        ];
        for case in cases {
            let server = server_config(&case.routes, &Settings::new(":8088")).unwrap();
            assert_eq!(ids(&server), case.ids);
            let routes = server["routes"].as_array().unwrap();
            let hosts: Vec<&str> =
                routes[..routes.len() - 1].iter().map(|r| r["match"][0]["host"][0].as_str().unwrap()).collect();
            assert_eq!(hosts, case.hosts);
            assert!(routes.iter().all(|r| r["terminal"] == true));
            let last = routes.last().unwrap();
            assert!(last.get("match").is_none(), "the fallback matches every host");
            assert_eq!(last["handle"][0]["status_code"], 404);
            assert_eq!(server["listen"], json!([":8088"]));
        }
    }

    #[test]
    fn an_app_route_proxies_round_robin_with_checks_and_retries() {
        let r = route("shop", &["10.0.0.1:8001", "10.0.0.2:8002"]).with_health_path("/healthz").unwrap();
        let mut settings = Settings::new("127.0.0.1:9000");
        settings.health_interval = Duration::from_millis(500);
        let server = server_config(&[r], &settings).unwrap();
        let h = &server["routes"][0]["handle"][0];
        assert_eq!(h["handler"], "reverse_proxy");
        assert_eq!(h["upstreams"], json!([{ "dial": "10.0.0.1:8001" }, { "dial": "10.0.0.2:8002" }]));
        assert_eq!(h["load_balancing"]["selection_policy"]["policy"], "round_robin");
        assert_eq!(h["load_balancing"]["try_duration"], "5000ms");
        assert_eq!(h["load_balancing"]["try_interval"], "50ms");
        assert_eq!(h["load_balancing"]["retry_match"][0]["method"], json!(["GET", "HEAD", "OPTIONS"]));
        assert_eq!(
            h["health_checks"]["active"],
            json!({ "uri": "/healthz", "interval": "500ms", "timeout": "1000ms" })
        );
        assert_eq!(h["health_checks"]["passive"], json!({ "fail_duration": "10000ms", "max_fails": 1 }));
    }

    #[test]
    fn an_app_without_replicas_answers_503_naming_it() {
        let server = server_config(&[route("shop", &[])], &Settings::new(":80")).unwrap();
        let h = &server["routes"][0]["handle"][0];
        assert_eq!(h["handler"], "static_response");
        assert_eq!(h["status_code"], 503);
        assert_eq!(h["body"], "the app shop has no running replica\n");
    }

    #[test]
    fn routes_made_by_the_settings_use_their_domain() {
        let mut s = Settings::new(":1");
        assert_eq!(s.route("shop", &["h:1"]).unwrap().host, "shop.localhost");
        s.domain = "apps.example.org".into();
        assert_eq!(s.route("shop", &["h:1"]).unwrap().host, "shop.apps.example.org");
        s.domain = "Bad Domain".into();
        assert!(s.route("shop", &["h:1"]).unwrap_err().to_string().contains("is not a host name"));
    }

    #[test]
    fn tls_off_disables_automatic_https_on_this_server_only() {
        let mut settings = Settings::new(":8443");
        assert_eq!(server_config(&[], &settings).unwrap()["automatic_https"], json!({ "disable": true }));
        settings.tls = Tls::Automatic;
        assert!(server_config(&[], &settings).unwrap().get("automatic_https").is_none());
    }

    #[test]
    fn the_same_routes_in_any_order_give_the_same_config() {
        let a = route("a", &["h:1"]);
        let b = route("b", &["h:2", "h:3"]);
        let s = Settings::new(":1");
        assert_eq!(server_config(&[a.clone(), b.clone()], &s).unwrap(), server_config(&[b, a], &s).unwrap());
    }

    #[test]
    fn two_routes_of_one_app_or_host_are_refused() {
        let s = Settings::new(":1");
        let e = server_config(&[route("a", &["h:1"]), route("a", &["h:2"])], &s).unwrap_err();
        assert_eq!(e.to_string(), "the app a has two routes");
        let mut other = route("b", &["h:2"]);
        other.host = "a.localhost".into();
        let e = server_config(&[route("a", &["h:1"]), other], &s).unwrap_err();
        assert_eq!(e.to_string(), "the host a.localhost is given to two apps");
    }
}
