//! Fuzzing on the stable toolchain with proptest: every parser that meets outside input — the
//! task spec and its validation, the route tables, the worker's start body, the /proc parsers,
//! the Docker response parsers, timestamps, the HTTP server itself — gets arbitrary and
//! mutated input and must answer without panicking. And any spec the API accepts comes back the
//! same through it.
//!
//! Cases per target: PROPTEST_CASES (default 256 here; CI sets more for a short, bounded run).
#![allow(
    clippy::let_underscore_must_use,
    reason = "test code drops the outcomes of clean-ups and best-effort writes freely"
)]

use proptest::prelude::*;
use serde_json::{json, Value};
use skiff::docker_cli::{parse_event, parse_inspect, parse_list, parse_response};
use skiff::http::{manager_route, parse_start_task, worker_route, Request};
use skiff::stats::{parse_cpu, parse_loadavg, parse_meminfo};
use skiff::task::TaskSpec;
use skiff::time::Timestamp;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Bytes that are mostly a valid example with some damage: a byte flipped, a slice cut or
/// repeated, or noise inserted.
fn mutated(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), prop::collection::vec(any::<u8>(), 0..16), 0usize..4).prop_map(move |(r, noise, how)| {
        let mut v = seed.to_vec();
        if v.is_empty() {
            return noise;
        }
        let at = (r as usize) % v.len();
        match how {
            0 => v[at] ^= (r >> 32) as u8 | 1,
            1 => v.truncate(at),
            2 => {
                let piece = v[at..].to_vec();
                v.extend_from_slice(&piece);
            }
            _ => {
                let tail = v.split_off(at);
                v.extend_from_slice(&noise);
                v.extend_from_slice(&tail);
            }
        }
        v
    })
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("image".to_string()),
                    Just("ports".to_string()),
                    Just("container".to_string()),
                    "[a-z_]{1,10}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const SPEC: &[u8] = br#"{"name":"web","image":"skiff/busybox:latest","cmd":["httpd","-f","-p","8080"],
"env":{"GREETING":"hello"},"cpus":0.5,"memory_mb":64,"disk_mb":100,"ports":[{"container":8080,"host":0}],
"restart_policy":{"mode":"on-failure","max_restarts":3},
"health_check":{"path":"/","port":8080,"interval_s":10,"timeout_s":2,"failures":3}}"#;

const INSPECT: &[u8] = br#"{"Id":"abc","Name":"/skiff-web","State":{"Status":"exited","Running":false,"ExitCode":3,
"Error":"","OOMKilled":false,"StartedAt":"2026-11-25T11:54:34.123456789Z","FinishedAt":"0001-01-01T00:00:00Z"},
"Config":{"Image":"skiff/busybox","Labels":{"skiff.task-id":"t"}},
"NetworkSettings":{"Ports":{"8080/tcp":[{"HostIp":"0.0.0.0","HostPort":"32768"}]}}}"#;

const LIST: &[u8] = br#"[{"Id":"a","Names":["/skiff-x"],"State":"running","Labels":{"skiff.node":"w1"},"Created":10}]"#;

const EVENT: &[u8] = br#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"137","skiff.task-id":"t"}},"timeNano":1795607674123456789}"#;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";

const STAT: &[u8] = include_bytes!("fixtures/proc/stat");
const MEMINFO: &[u8] = include_bytes!("fixtures/proc/meminfo");
const LOADAVG: &[u8] = include_bytes!("fixtures/proc/loadavg");

proptest! {
    #![proptest_config(config())]

    #[test]
    fn spec_parser_takes_any_bytes(bytes in prop_oneof![mutated(SPEC), prop::collection::vec(any::<u8>(), 0..200)]) {
        let _ = TaskSpec::from_json(&bytes);
    }

    #[test]
    fn spec_parser_takes_any_json(value in json_value()) {
        if let Ok(spec) = TaskSpec::from_value(value) {
            // what is accepted is valid and survives a round trip through JSON
            prop_assert!(spec.validate().is_ok());
            let again = TaskSpec::from_json(&serde_json::to_vec(&spec).expect("serialises"));
            prop_assert_eq!(again, Ok(spec));
        }
    }

    #[test]
    fn start_bodies_take_any_bytes(bytes in prop_oneof![mutated(br#"{"id":"3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b","spec":{"name":"a","image":"b"},"restart_count":2}"#), prop::collection::vec(any::<u8>(), 0..100)]) {
        let _ = parse_start_task(&bytes);
    }

    #[test]
    fn routes_take_any_method_and_path(method in "[A-Z]{0,8}", path in "(/[a-z0-9%.-]{0,12}){0,5}/?", raw in ".{0,40}") {
        let _ = manager_route(&method, &path);
        let _ = worker_route(&method, &path);
        let _ = manager_route(&method, &raw);
        let _ = worker_route(&method, &raw);
    }

    #[test]
    fn proc_parsers_take_damaged_text(stat in mutated(STAT), meminfo in mutated(MEMINFO), loadavg in mutated(LOADAVG)) {
        let _ = parse_cpu(&String::from_utf8_lossy(&stat));
        let _ = parse_meminfo(&String::from_utf8_lossy(&meminfo));
        let _ = parse_loadavg(&String::from_utf8_lossy(&loadavg));
    }

    #[test]
    fn docker_parsers_take_damaged_answers(inspect in mutated(INSPECT), list in mutated(LIST), event in mutated(EVENT), response in mutated(RESPONSE)) {
        let _ = parse_inspect(&inspect);
        let _ = parse_list(&list);
        let _ = parse_event(&event);
        let _ = parse_response(&response);
    }

    #[test]
    fn docker_parsers_take_any_json(value in json_value()) {
        let bytes = serde_json::to_vec(&value).expect("serialises");
        let _ = parse_inspect(&bytes);
        let _ = parse_list(&bytes);
        let _ = parse_event(&bytes);
    }

    #[test]
    fn timestamps_take_any_text(text in ".{0,40}", near in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2}|.{0,6})") {
        let _ = Timestamp::parse(&text);
        if let Some(t) = Timestamp::parse(&near) {
            // whatever parses prints as a time that parses back to itself
            prop_assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        }
    }
}

/// A valid spec, varied in every field.
fn valid_spec() -> impl Strategy<Value = Value> {
    (
        "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}",
        prop_oneof![Just("skiff/busybox:latest".to_string()), "[a-z0-9]{1,8}(/[a-z0-9]{1,8})?(:[a-z0-9._-]{1,8})?"],
        prop::collection::vec(".{0,10}", 0..4),
        prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", "[^\u{0}]{0,10}", 0..3),
        prop::option::of(1u32..4096),
        prop::option::of(6u64..100_000),
        prop::option::of(0u64..100_000),
        prop::collection::btree_set(1u16..=65535, 0..3),
        prop::option::of((0usize..3, 0u32..10)),
    )
        .prop_map(|(name, image, cmd, env, cpus, memory, disk, ports, policy)| {
            let mut spec = json!({"name": name, "image": image, "cmd": cmd, "env": env});
            if let Some(c) = cpus {
                spec["cpus"] = json!(f64::from(c) / 8.0);
            }
            if let Some(m) = memory {
                spec["memory_mb"] = json!(m);
            }
            if let Some(d) = disk {
                spec["disk_mb"] = json!(d);
            }
            let ports: Vec<Value> = ports.into_iter().map(|p| json!({"container": p, "host": 0})).collect();
            if let Some((mode, max)) = policy {
                let mode = ["never", "on-failure", "always"][mode];
                spec["restart_policy"] = json!({"mode": mode, "max_restarts": max});
            }
            if let Some(first) = ports.first() {
                let port = first["container"].clone();
                spec["health_check"] =
                    json!({"path": "/h", "port": port, "interval_s": 5, "timeout_s": 2, "failures": 2});
            }
            spec["ports"] = json!(ports);
            spec
        })
}

/// Any spec the API accepts comes back the same from it: submitted to a real manager's handler
/// (no workers, so it stays Pending), then read back.
#[test]
fn accepted_specs_round_trip_through_the_api() {
    let manager = skiff::manager::spawn(Default::default(), Box::new(skiff::store::MemoryStore::new()), Vec::new())
        .expect("a manager");
    let handler = skiff::http::manager_handler(manager.handle(), None).handler;
    let request = |method: &str, path: String, body: Vec<u8>| Request {
        method: method.into(),
        path,
        query: String::new(),
        headers: Vec::new(),
        body,
        remote: None,
        spooled: None,
    };
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&valid_spec(), |spec| {
            let body = serde_json::to_vec(&spec).expect("serialises");
            let accepted = TaskSpec::from_json(&body);
            let resp = handler(&request("POST", "/v1/tasks".into(), body));
            match accepted {
                Ok(parsed) => {
                    prop_assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(resp.bytes_of()));
                    let created: Value = serde_json::from_slice(resp.bytes_of()).expect("json");
                    let id = created["id"].as_str().expect("id").to_string();
                    let got = handler(&request("GET", format!("/v1/tasks/{id}"), Vec::new()));
                    prop_assert_eq!(got.status, 200);
                    let task: Value = serde_json::from_slice(got.bytes_of()).expect("json");
                    let back: TaskSpec = serde_json::from_value(task["spec"].clone()).expect("a spec");
                    prop_assert_eq!(back, parsed);
                }
                Err(_) => prop_assert_eq!(resp.status, 400),
            }
            Ok(())
        })
        .expect("the property holds");
}

/// The HTTP server survives arbitrary and damaged requests and still answers a good one.
#[test]
fn the_http_server_survives_damaged_requests() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let handler: std::sync::Arc<skiff::http::Handler> =
        std::sync::Arc::new(|_req: &Request| skiff::http::Response::json_bytes(200, b"{}".to_vec()));
    let limits = skiff::http::Limits { request_deadline: std::time::Duration::from_millis(200), ..Default::default() };
    let server = skiff::http::Server::start(listener, limits, handler).expect("starts");
    let addr = server.local_addr();
    const GOOD: &[u8] = b"POST /v1/tasks?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n\r\n{\"a\":1}GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(256).min(400);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop_oneof![mutated(GOOD), prop::collection::vec(any::<u8>(), 0..300)], |bytes| {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(std::time::Duration::from_secs(2))).expect("timeout");
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            // whatever came back is HTTP or nothing
            prop_assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&out));
            Ok(())
        })
        .expect("the property holds");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
