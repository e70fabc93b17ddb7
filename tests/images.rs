//! The worker's image routes on a real worker against the real Docker Engine: an app image built
//! with `POST /v1/builds`, exported through `GET /v1/images/{ref}`, removed from the engine,
//! loaded again through `POST /v1/images`, and run as a task through the manager that answers;
//! then the refusals: an image Skiff did not build is neither exported nor loaded (and the
//! engine's copy of it is untouched), no token is a 401 from the head, a body over the limit a 413.
//!
//! The image carries `skiff.app=<the test's id>` and its Dockerfile `LABEL skiff.test=<id>`; a
//! guard removes the test's containers and images when it ends, failed or not.

#![allow(clippy::let_underscore_must_use, reason = "test code drops the outcomes of clean-ups freely")]

mod common;

use common::{docker_command, http_raw, wait_for, Cluster, ClusterOptions, IMAGE, TOKEN};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Guard {
    id: String,
    cluster: Cluster,
}

impl Guard {
    fn new(name: &str) -> Guard {
        let cluster =
            Cluster::start(&format!("images-{name}"), ClusterOptions { workers: 1, ..ClusterOptions::default() });
        let id = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Guard { id, cluster }
    }

    fn tag(&self) -> String {
        format!("skiff-app/{}:v1", self.id)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .new_agent()
    }

    /// A request to the worker: its status and body.
    fn call(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(self.cluster.worker_url(0, path))
            .header("Content-Type", content_type)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body(body.to_vec())
            .expect("request");
        let mut resp = Guard::agent().run(req).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.body_mut().with_config().limit(1 << 30).read_to_vec().expect("the answer");
        (status, bytes)
    }

    /// Builds the test's app: a Dockerfile serving `page` on 8080.
    fn build(&self, page: &str) {
        let mut tar = tar::Builder::new(Vec::new());
        let dockerfile = format!(
            "FROM {IMAGE}\nLABEL skiff.test={}\nCOPY index.html /www/\nCMD exec httpd -f -p 8080 -h /www\n",
            self.id
        );
        for (path, text) in [("Dockerfile", dockerfile.as_str()), ("index.html", page)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, text.as_bytes()).expect("append");
        }
        let tar = tar.into_inner().expect("tar");
        let query = format!("/v1/builds?tag={}&app={}&version=1", self.tag(), self.id);
        let (status, body) = self.call("POST", &query, "application/x-tar", &tar);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{text}");
        let last: Value = serde_json::from_str(text.lines().last().expect("a last line")).expect("JSON");
        assert_eq!(last["tag"], self.tag().as_str(), "{text}");
    }

    fn image(&self, reference: &str) -> Option<String> {
        self.cluster.docker.image_id(reference).expect("the engine answers")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in self.cluster.containers() {
            skiff::control::best_effort(self.cluster.docker.remove(&c.id));
        }
        skiff::control::best_effort(self.cluster.docker.remove_image(&self.tag()));
        let out = docker_command()
            .args(["images", "-aq", "--filter", &format!("label=skiff.test={}", self.id)])
            .output()
            .expect("docker CLI runs");
        for image in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            skiff::control::best_effort(self.cluster.docker.remove_image(image));
        }
    }
}

fn encoded(reference: &str) -> String {
    skiff::http::images::export_path(reference)
}

#[test]
fn an_image_exported_and_loaded_again_runs_as_a_task() {
    let g = Guard::new("roundtrip");
    g.build(&format!("hello from {}", g.id));
    let original = g.image(&g.tag()).expect("built");

    let started = Instant::now();
    let (status, tar) = g.call("GET", &encoded(&g.tag()), "application/json", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    println!("export: {} bytes in {:?}", tar.len(), started.elapsed());
    let images = skiff::http::images::check_tar(&|| Box::new(tar.as_slice())).expect("a docker save tar");
    assert_eq!(images[0].tags, [g.tag()]);
    assert_eq!(images[0].app.as_deref(), Some(g.id.as_str()));

    g.cluster.docker.remove_image(&g.tag()).expect("removed");
    assert_eq!(g.image(&g.tag()), None);
    let started = Instant::now();
    let (status, body) = g.call("POST", "/v1/images", "application/x-tar", &tar);
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 200, "{answer}");
    println!("load: {} bytes in {:?}", tar.len(), started.elapsed());
    assert_eq!(answer["images"][0]["tag"], g.tag().as_str(), "{answer}");
    assert_eq!(answer["images"][0]["app"], g.id.as_str(), "{answer}");
    assert_eq!(answer["images"][0]["id"], original.as_str(), "the same image: {answer}");
    assert_eq!(answer["bytes"], tar.len() as u64);
    assert_eq!(g.image(&g.tag()), Some(original));

    let spec = json!({
        "name": "loaded", "image": g.tag(), "cpus": 0.2, "memory_mb": 32,
        "ports": [{"container": 8080, "host": 0}]
    });
    let task = g.cluster.submit(&spec);
    let task = g.cluster.wait_state(&task, "Running", Duration::from_secs(30));
    let port = task["ports"][0]["host"].as_u64().expect("a host port");
    let page = wait_for("the task to answer", Duration::from_secs(10), || {
        let (status, page) = http_raw("GET", &format!("http://127.0.0.1:{port}/"), None);
        (status == 200).then_some(page)
    });
    assert_eq!(String::from_utf8_lossy(&page), format!("hello from {}", g.id));
}

#[test]
fn images_skiff_did_not_build_do_not_move_and_bad_requests_are_refused_early() {
    let g = Guard::new("refusals");
    // the base image: no skiff.app label
    let (status, body) = g.call("GET", &encoded(IMAGE), "application/json", b"");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not an image Skiff built"), "{text}");
    let (status, _) = g.call("GET", &encoded("skiff-app/none-such:v1"), "application/json", b"");
    assert_eq!(status, 404);

    // its tar, made by the CLI, is refused before the engine sees it
    let before = g.image(IMAGE).expect("the base image");
    let saved = docker_command().args(["save", IMAGE]).output().expect("docker save runs");
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    let (status, body) = g.call("POST", "/v1/images", "application/x-tar", &saved.stdout);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains(IMAGE) && text.contains("skiff.app"), "{text}");
    assert_eq!(g.image(IMAGE), Some(before), "the base image is untouched");
    let (status, body) = g.call("POST", "/v1/images", "application/x-tar", b"not a tar at all");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = g.call("POST", "/v1/images", "text/plain", b"hello");
    assert_eq!(status, 415);

    let addr = g.cluster.workers[0].addr.clone();
    let over = skiff::http::images::MAX_IMAGE_BODY + 1;
    let head = format!(
        "POST /v1/images HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/x-tar\r\n\
         Content-Length: {over}\r\n\r\n"
    );
    let out = head_only(&addr, &head);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    let head = "POST /v1/images HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-tar\r\nExpect: 100-continue\r\n\
                Content-Length: 200000000\r\n\r\n";
    let started = Instant::now();
    let out = head_only(&addr, head);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let out = head_only(&addr, &format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", encoded(IMAGE)));
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
}

/// Sends a head alone and reads what comes back within a few seconds.
fn head_only(addr: &str, head: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(head.as_bytes()).expect("the head");
    let mut out = Vec::new();
    skiff::control::best_effort(s.read_to_end(&mut out));
    String::from_utf8_lossy(&out).into_owned()
}
