//! The dashboard in a real browser: headless Chromium driven by chromedriver over the W3C
//! WebDriver HTTP protocol (plain JSON calls with ureq), against a cluster of real daemons with
//! tasks on the Docker Engine. The page must ask for the token, show the nodes and the tasks,
//! update rows in place, follow a task's logs, stop a task and drain and activate a node after a
//! confirmation, fit a phone's width and say when the manager is unreachable; a screenshot is
//! left in `target/dashboard.png`.
//!
//! Chromium and chromedriver are required (Debian's `chromium` and `chromium-driver`): without
//! them the test fails and says so. The browser and its driver are ended even when it fails.
#![allow(
    clippy::let_underscore_must_use,
    reason = "tests/common drops the outcomes of clean-ups freely, as every test file allows"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use skiff::control::best_effort;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What WebDriver calls an element reference's key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// The directory cargo builds into (`target/`), where the screenshots go.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp is in target/").to_path_buf()
}

/// chromedriver and the headless Chromium session it runs; ends both when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: Option<String>,
    /// The browser's own profile directory: what tells its processes from any other Chromium's.
    profile: PathBuf,
    agent: ureq::Agent,
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let missing = "the dashboard test drives a real browser and needs Debian's chromium and chromium-driver \
                       (apt-get install chromium chromium-driver); it does not skip";
        let chromium =
            find_program(&["chromium", "chromium-browser"]).unwrap_or_else(|| panic!("no chromium: {missing}"));
        let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| panic!("no chromedriver: {missing}"));
        let port = free_port();
        let profile = dir.join(format!("chromium-profile-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        // from here on, a panic drops the guard, which ends the driver
        let mut b =
            Browser { driver, base: format!("http://127.0.0.1:{port}"), session: None, profile, agent: agent() };
        wait_for("chromedriver to be ready", Duration::from_secs(30), || {
            b.call("GET", "/status", None).ok().filter(|v| v["value"]["ready"] == true)
        });
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                // root in CI: no sandbox; a temporary profile, so nothing is shared between runs
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--window-size=1280,1000",
                         format!("--user-data-dir={}", b.profile.display())],
            },
        }}});
        let answer =
            b.call("POST", "/session", Some(capabilities)).unwrap_or_else(|e| panic!("no browser session: {e}"));
        b.session = Some(answer["value"]["sessionId"].as_str().expect("a session id").to_string());
        b
    }

    /// One WebDriver call; the error's message when it fails.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body.into_bytes())
            .expect("request");
        let mut resp = self.agent.run(req).map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.body_mut().read_to_vec().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == 200 {
            Ok(v)
        } else {
            Err(format!("{method} {path}: {status} {}: {}", v["value"]["error"], v["value"]["message"]))
        }
    }

    /// A call in the session; fails the test when WebDriver refuses it.
    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let id = self.session.as_deref().expect("a session");
        match self.call(method, &format!("/session/{id}{path}"), body) {
            Ok(v) => v["value"].clone(),
            Err(e) => panic!("webdriver: {e}"),
        }
    }

    fn goto(&self, url: &str) {
        self.session("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.session("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// Runs `body` (a function body: `return ...`) in the page with `args`.
    fn js(&self, body: &str, args: Value) -> Value {
        self.session("POST", "/execute/sync", Some(json!({"script": body, "args": args})))
    }

    /// Waits until `body` returns something other than null, false or "".
    fn wait_js(&self, what: &str, limit: Duration, body: &str, args: Value) -> Value {
        wait_for(what, limit, || {
            let v = self.js(body, args.clone());
            (!v.is_null() && v != false && v != "").then_some(v)
        })
    }

    fn element(&self, css: &str) -> String {
        let v = self.session("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    /// A click as a person makes it (WebDriver checks the element can be clicked).
    fn click(&self, css: &str) {
        let id = self.element(css);
        self.session("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.session("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    /// Keys sent to an element as a person types them (WebDriver's codes: Enter is U+E007).
    fn press(&self, css: &str, keys: &str) {
        let id = self.element(css);
        self.session("POST", &format!("/element/{id}/value"), Some(json!({"text": keys})));
    }

    fn text(&self, css: &str) -> String {
        self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", json!([css]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn resize(&self, width: u32, height: u32) {
        self.session("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Saves what the browser shows as a PNG.
    fn screenshot(&self, path: &Path) {
        let b64 = self.session("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("base64 text"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() && self.session.is_some() {
            // what the page showed when the test failed, for whoever reads the failure
            let path = target_dir().join("dashboard-failure.png");
            let id = self.session.clone().unwrap_or_default();
            if let Ok(v) = self.call("GET", &format!("/session/{id}/screenshot"), None) {
                if let Some(b64) = v["value"].as_str() {
                    best_effort(std::fs::write(&path, base64_decode(b64)));
                    eprintln!("the page at the failure: {}", path.display());
                }
            }
        }
        if let Some(id) = self.session.take() {
            // ends the browser
            best_effort(self.call("DELETE", &format!("/session/{id}"), None));
        }
        best_effort(self.driver.kill());
        best_effort(self.driver.wait());
        // a browser the driver left behind (killed mid-session) is found by its own profile dir
        let profile = self.profile.display().to_string();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else { continue };
                if String::from_utf8_lossy(&cmdline).contains(&profile) {
                    best_effort(Command::new("kill").arg("-KILL").arg(p.file_name()).status());
                }
            }
        }
        best_effort(std::fs::remove_dir_all(&self.profile));
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A GET without the token: status, headers and body.
fn get_plain(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = ureq::http::Request::builder().method("GET").uri(url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let mut resp = agent().run(req.body(Vec::new()).expect("request")).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    (status, headers, resp.body_mut().read_to_vec().expect("body"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[test]
fn the_page_is_served_without_the_token_with_its_policy_and_validator() {
    let c = Cluster::start("dashboard_assets", ClusterOptions { workers: 1, ..ClusterOptions::default() });
    for (path, kind) in [("/", "text/html"), ("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css")] {
        let (status, headers, body) = get_plain(&c.manager_url(path), &[]);
        assert_eq!(status, 200, "{path} needs no token");
        assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with(kind)), "{path}: {headers:?}");
        let csp = header(&headers, "content-security-policy").expect("a policy");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        assert!(!body.is_empty());
        let etag = header(&headers, "etag").expect("an ETag").to_string();
        let (again, headers, body) = get_plain(&c.manager_url(path), &[("If-None-Match", &etag)]);
        assert_eq!((again, body.len()), (304, 0), "{path}: the browser's copy is current");
        assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    }
    // the API behind it still wants the token
    let (status, _) = http_as("GET", &c.manager_url("/v1/nodes"), None, None);
    assert_eq!(status, 401);
}

#[test]
fn the_dashboard_shows_the_cluster_and_stops_a_task_in_a_real_browser() {
    let mut c = Cluster::start("dashboard", ClusterOptions::default());
    c.wait_nodes_up();
    let web = c.submit(&json!({
        "name": "web", "image": IMAGE, "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "cpus": 0.5, "memory_mb": 64, "disk_mb": 100, "ports": [{"container": 8080}]
    }));
    let talker = c.submit(&json!({
        "name": "talker", "image": IMAGE, "cmd": ["sh", "-c", "echo hello-from-the-dashboard-test; exec sleep 300"],
        "cpus": 0.25, "memory_mb": 32
    }));
    let victim = c.submit(&json!({"name": "victim", "image": IMAGE, "cmd": ["sleep", "300"], "memory_mb": 32}));
    let pending = c.submit(&json!({"name": "too-big", "image": IMAGE, "cmd": ["true"], "memory_mb": 16_000_000}));
    for id in [&web, &talker, &victim] {
        c.wait_state(id, "Running", Duration::from_secs(60));
    }
    let why_pending = c.wait_state(&pending, "Pending", Duration::from_secs(10))["error"]
        .as_str()
        .expect("a Pending task says why")
        .to_string();
    let bindings = c.get_task(&web)["ports"].as_array().expect("web's ports").clone();
    let ipv4 = bindings.iter().find(|b| !b["host_ip"].as_str().unwrap_or_default().contains(':'));
    let web_port = ipv4.and_then(|b| b["host"].as_u64()).unwrap_or_else(|| panic!("web's IPv4 port: {bindings:?}"));

    let b = Browser::start(&c.dir);
    let page = c.manager_url("/");
    b.goto(&page);

    // the API answers 401: the page asks for the token, and says so when it is the wrong one
    let login_open = "return document.getElementById('login').open;";
    b.wait_js("the token dialog", Duration::from_secs(20), login_open, json!([]));
    b.type_into("#login-token", "not-the-cluster-token-0000");
    b.click("#login-ok");
    b.wait_js(
        "the token dialog again, saying the token was refused",
        Duration::from_secs(20),
        "const d = document.getElementById('login'); \
         return d.open && document.getElementById('login-why').textContent.includes('refused');",
        json!([]),
    );
    b.type_into("#login-token", TOKEN);
    b.click("#login-ok");

    // every task and node shows
    let ids = [&web, &talker, &victim, &pending];
    b.wait_js(
        "a row for every task and a card for every node",
        Duration::from_secs(30),
        "const [ids, nodes] = arguments; \
         const rows = [...document.querySelectorAll('#tasks tbody tr')].map(r => r.dataset.key); \
         const cards = [...document.querySelectorAll('#nodes .node')].map(n => n.dataset.key); \
         return ids.every(id => rows.includes(id)) && nodes.every(n => cards.includes(n));",
        json!([ids, c.worker_names]),
    );
    assert!(!b.js(login_open, json!([])).as_bool().unwrap_or(true), "the dialog is closed");
    assert_eq!(b.url(), page, "the token is never in the URL");
    let kept = b.js("return sessionStorage.getItem('skiff.token');", json!([]));
    assert_eq!(kept, TOKEN, "the token is kept for the tab");

    let row = |id: &str| format!("#tasks tr[data-key=\"{id}\"]");
    b.wait_js(
        "the tasks' states",
        Duration::from_secs(20),
        "const [ids] = arguments; \
         return ids.every(id => document.querySelector(`tr[data-key=\"${id}\"] .badge`).textContent === 'Running');",
        json!([[&web, &talker, &victim]]),
    );
    assert_eq!(b.text(&format!("{} .badge", row(&pending))), "Pending");
    // the reason's figures may move between two polls; its words do not
    let why = why_pending.split(':').next().unwrap_or_default().to_string();
    let reason = b.text(&format!("{} .reason", row(&pending)));
    assert!(
        !why.is_empty() && reason.starts_with(&why),
        "the reason of a Pending task: {reason:?}, API: {why_pending:?}"
    );
    let link = b.js(
        "return document.querySelector(arguments[0]).getAttribute('href');",
        json!([format!("{} .ports a", row(&web))]),
    );
    assert_eq!(link, format!("http://127.0.0.1:{web_port}/"), "the published port is a link");
    let links =
        b.js("return document.querySelectorAll(arguments[0]).length;", json!([format!("{} .ports a", row(&web))]));
    assert_eq!(links, 1, "one link for the one port (IPv4 and IPv6 bindings are one port)");
    for name in &c.worker_names {
        let card = b.text(&format!("#nodes .node[data-key=\"{name}\"]"));
        assert!(card.contains("up") && card.contains("active") && card.contains("Drain"), "{card}");
        assert!(card.contains("allocated") && card.contains("used"), "the node's bars: {card}");
    }
    let stop_tag =
        b.js("return document.querySelector(arguments[0]).tagName;", json!([format!("{} .danger", row(&victim))]));
    assert_eq!(stop_tag, "BUTTON", "actions are real buttons");

    // refreshes change rows in place: the same element, two refreshes later
    let before = b.js(
        "document.querySelector(arguments[0]).dataset.probe = 'kept'; return Number(document.body.dataset.refreshes);",
        json!([row(&victim)]),
    );
    let before = before.as_u64().expect("a refresh count");
    b.wait_js(
        "two more refreshes",
        Duration::from_secs(20),
        "return Number(document.body.dataset.refreshes) >= arguments[0];",
        json!([before + 2]),
    );
    let probe = b.js("return document.querySelector(arguments[0]).dataset.probe;", json!([row(&victim)]));
    assert_eq!(probe, "kept", "the row was updated in place, not rebuilt");

    // a running task's logs, followed
    b.click(&format!("{} button[data-action=logs]", row(&talker)));
    b.wait_js(
        "the talker's output in the logs dialog",
        Duration::from_secs(20),
        "return document.getElementById('logs').open && \
         document.getElementById('logs-text').textContent.includes('hello-from-the-dashboard-test');",
        json!([]),
    );
    assert!(b.text("#logs-state").contains("following"), "a running task's log is followed");
    b.click("#logs-close");
    assert_eq!(b.js("return document.getElementById('logs').open;", json!([])), false);

    // by keyboard: Enter on the Stop button asks, the safe answer has the focus, Escape declines
    let stop = format!("{} button[data-action=stop]", row(&victim));
    b.press(&stop, "\u{E007}");
    b.wait_js(
        "the confirmation",
        Duration::from_secs(10),
        "return document.getElementById('confirm').open;",
        json!([]),
    );
    assert_eq!(b.js("return document.activeElement.id;", json!([])), "confirm-cancel", "Cancel has the focus");
    b.press("#confirm-cancel", "\u{E00C}");
    b.wait_js(
        "the dialog to close",
        Duration::from_secs(10),
        "return !document.getElementById('confirm').open;",
        json!([]),
    );
    assert_eq!(c.get_task(&victim)["desired_state"], "running", "declined: nothing was stopped");

    // stop a task through the page: the button, then the confirmation
    b.click(&format!("{} button[data-action=stop]", row(&victim)));
    b.wait_js(
        "the confirmation",
        Duration::from_secs(10),
        "return document.getElementById('confirm').open;",
        json!([]),
    );
    assert!(b.text("#confirm-text").contains(victim.as_str()), "the confirmation names the task");
    b.click("#confirm-ok");
    c.wait_state(&victim, "Stopped", Duration::from_secs(30));
    b.wait_js(
        "the stopped task to read Stopped",
        Duration::from_secs(20),
        "return document.querySelector(arguments[0]).textContent === 'Stopped';",
        json!([format!("{} .badge", row(&victim))]),
    );
    for id in [&web, &talker] {
        assert_eq!(c.get_task(id)["state"], "Running", "only the confirmed task was stopped");
    }
    b.wait_js(
        "the events",
        Duration::from_secs(10),
        "return document.querySelectorAll('#events li').length > 0;",
        json!([]),
    );

    // drain the web task's node through the page: the task moves, the card says drained
    let drained = c.get_task(&web)["node"].as_str().expect("web's node").to_string();
    let card = format!("#nodes .node[data-key=\"{drained}\"]");
    b.click(&format!("{card} button[data-action=drain]"));
    b.wait_js(
        "the drain's confirmation",
        Duration::from_secs(10),
        "return document.getElementById('confirm').open;",
        json!([]),
    );
    assert!(b.text("#confirm-text").contains(&drained), "the confirmation names the node");
    b.click("#confirm-ok");
    wait_for("the node drained and web moved off it", Duration::from_secs(60), || {
        let node = c.nodes().into_iter().find(|n| n["name"] == drained.as_str())?;
        let web = c.get_task(&web);
        (node["availability"] == "drained" && web["state"] == "Running" && web["node"] != drained.as_str())
            .then_some(())
    });
    b.wait_js(
        "the card to read drained, with Activate, and web's row its new node",
        Duration::from_secs(20),
        "const [card, row, node] = arguments; const c = document.querySelector(card); \
         return c.querySelector('.badge.s-drained') !== null && \
           c.querySelector('button[data-action=activate]') !== null && \
           document.querySelector(row + ' .node-cell').textContent !== node;",
        json!([card, row(&web), drained]),
    );

    let shot = target_dir().join("dashboard.png");
    b.resize(1280, 1300);
    b.screenshot(&shot);

    // and activate it again
    b.click(&format!("{card} button[data-action=activate]"));
    b.wait_js(
        "the activation's confirmation",
        Duration::from_secs(10),
        "return document.getElementById('confirm').open;",
        json!([]),
    );
    b.click("#confirm-ok");
    wait_for("the node active again", Duration::from_secs(20), || {
        c.nodes().into_iter().any(|n| n["name"] == drained.as_str() && n["availability"] == "active").then_some(())
    });
    b.wait_js(
        "the card to read active, with Drain",
        Duration::from_secs(20),
        "const c = document.querySelector(arguments[0]); \
         return c.querySelector('.badge.s-active') !== null && c.querySelector('button[data-action=drain]') !== null;",
        json!([card]),
    );

    // a phone's width: nothing wider than the screen
    b.resize(390, 844);
    let overflow = b.wait_js(
        "the phone layout",
        Duration::from_secs(10),
        "const w = document.documentElement.clientWidth; \
         return w <= 420 ? String(document.documentElement.scrollWidth - w) : null;",
        json!([]),
    );
    assert_eq!(overflow, "0", "the page is no wider than a phone's screen");
    b.js("document.getElementById('tasks-title').scrollIntoView();", json!([]));
    b.screenshot(&target_dir().join("dashboard-phone.png"));

    // the manager goes away: the page says since when it cannot reach it
    c.manager_mut().kill();
    b.wait_js(
        "the page to say the manager is unreachable",
        Duration::from_secs(20),
        "return document.getElementById('status').textContent.includes('Manager unreachable since');",
        json!([]),
    );
    eprintln!("screenshots: {} and dashboard-phone.png beside it", shot.display());
}

/// A manager started without any token (and no workers), ended when dropped.
struct TokenlessManager {
    child: Child,
    addr: String,
}

impl TokenlessManager {
    fn start(log: &Path) -> TokenlessManager {
        let mut child = Command::new(env!("CARGO_BIN_EXE_manager"))
            .args(["-p", "0", "--bind", "127.0.0.1", "--log-level", "info"])
            .env_remove("SKIFF_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the manager starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = log.to_path_buf();
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut file = std::fs::File::create(&log).expect("log file");
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                best_effort(writeln!(file, "{line}"));
                if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                    best_effort(tx.send(addr.to_string()));
                }
            }
        });
        let mut manager = TokenlessManager { child, addr: String::new() };
        manager.addr = rx.recv_timeout(Duration::from_secs(20)).expect("the manager listens");
        manager
    }
}

impl Drop for TokenlessManager {
    fn drop(&mut self) {
        best_effort(self.child.kill());
        best_effort(self.child.wait());
    }
}

#[test]
fn without_a_token_the_dashboard_asks_for_none_and_says_the_cluster_is_empty() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("logs").join("dashboard_tokenless");
    std::fs::create_dir_all(&dir).expect("dir");
    let manager = TokenlessManager::start(&dir.join("manager.log"));
    let b = Browser::start(&dir);
    b.goto(&format!("http://{}/", manager.addr));
    b.wait_js(
        "the page's first refresh",
        Duration::from_secs(20),
        "return Number(document.body.dataset.refreshes) >= 1;",
        json!([]),
    );
    assert_eq!(b.js("return document.getElementById('login').open;", json!([])), false, "no token asked for");
    assert_eq!(b.js("return sessionStorage.getItem('skiff.token');", json!([])), Value::Null);
    for empty in ["#nodes-empty", "#tasks-empty", "#events-empty"] {
        let shown = b.js("return !document.querySelector(arguments[0]).hidden;", json!([empty]));
        assert_eq!(shown, true, "{empty} says there is nothing yet");
    }
    assert!(b.text("#summary").contains("0/0 nodes up"), "{}", b.text("#summary"));
}
