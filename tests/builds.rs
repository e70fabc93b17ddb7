//! `POST /v1/builds` on a real worker against the real Docker Engine, from local images only:
//! a static site uploaded as a tar (its Dockerfile generated, the worker's `--static-image` set to
//! skiff/busybox), the same site from a `file://` git repository the test makes, at a tag; a
//! Dockerfile app named by `dockerfile`; a broken Dockerfile whose stream names its step and
//! which leaves no image; and the refusals before any build: nothing to detect (sent chunked too),
//! URLs git must not or cannot clone, a ref that is not there, a body over the limit, no token.
//!
//! Every image a test builds carries `skiff.app=<the test's id>` (the route's `app`), and the
//! Dockerfiles written here a `LABEL skiff.test=<id>` so that a failed build's layers carry it
//! too; containers run from them carry `skiff.test` through `--label`. A guard removes them all
//! when the test ends, failed or not.

#![allow(clippy::let_underscore_must_use, reason = "test code drops the outcomes of clean-ups freely")]

mod common;

use common::{docker_command, http_as, strings, Cluster, ClusterOptions, IMAGE, TOKEN};
use serde_json::Value;
use skiff::deploy::{ContextOptions, Source};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One test's worker, source directory and clean-up.
struct Guard {
    id: String,
    cluster: Cluster,
    dir: PathBuf,
}

impl Guard {
    fn new(name: &str) -> Guard {
        let options = ClusterOptions {
            workers: 1,
            worker_args: strings(&["--static-image", IMAGE]),
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start(&format!("builds-{name}"), options);
        let id = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("builds").join(&id);
        std::fs::create_dir_all(&dir).expect("test dir");
        Guard { id, cluster, dir }
    }

    fn tag(&self) -> String {
        format!("skiff-app/{}:v1", self.id)
    }

    fn write(&self, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = self.dir.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("source dir");
            std::fs::write(path, text).expect("source file");
        }
    }

    /// The test's directory as a client sends it: a tar of the source, no Dockerfile added.
    fn tar(&self) -> Vec<u8> {
        let source = Source::scan(&self.dir, &ContextOptions::default()).expect("the source");
        let mut bytes = Vec::new();
        source.write_tar(&mut bytes, None).expect("the tar");
        bytes
    }

    fn url(&self, query: &str) -> String {
        self.cluster.worker_url(0, &format!("/v1/builds?{query}"))
    }

    /// The query of a build of the test's app, with more parameters after it.
    fn query(&self, more: &str) -> String {
        format!("tag={}&app={}&version=1{more}", self.tag(), self.id)
    }

    /// A build: its status and, for a 200, its lines; for an error, the one JSON answer.
    fn build(&self, query: &str, content_type: &str, body: &[u8]) -> (u16, Vec<Value>) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .new_agent();
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(self.url(query))
            .header("Content-Type", content_type)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body(body.to_vec())
            .expect("request");
        let mut resp = agent.run(req).unwrap_or_else(|e| panic!("POST /v1/builds: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("the answer");
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        (status, lines)
    }

    /// The id of an image, `None` when there is none.
    fn image(&self, reference: &str) -> Option<String> {
        self.cluster.docker.image_id(reference).expect("the engine answers")
    }

    /// What a command prints in a container of the image, removed after.
    fn shell(&self, script: &str) -> String {
        let out = docker_command()
            .args(["run", "--rm", "--label", &format!("skiff.test={}", self.id), &self.tag(), "sh", "-c", script])
            .output()
            .expect("docker CLI runs");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn labelled(&self, what: &[&str], label: &str) -> Vec<String> {
        let out = docker_command()
            .args(what)
            .args(["--filter", &format!("label={label}={}", self.id)])
            .output()
            .expect("docker CLI runs");
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let containers = self.labelled(&["ps", "-aq"], "skiff.test");
        if !containers.is_empty() {
            skiff::control::best_effort(docker_command().args(["rm", "-f"]).args(&containers).output());
        }
        skiff::control::best_effort(self.cluster.docker.remove_image(&self.tag()));
        // children before parents: a few passes, each removing what has no child left
        for _ in 0..5 {
            let mut images = self.labelled(&["images", "-aq"], "skiff.app");
            images.extend(self.labelled(&["images", "-aq"], "skiff.test"));
            if images.is_empty() {
                break;
            }
            for image in images {
                skiff::control::best_effort(self.cluster.docker.remove_image(&image));
            }
        }
        skiff::control::best_effort(std::fs::remove_dir_all(&self.dir));
    }
}

/// The last line of a build's stream, and the log lines before it.
fn outcome(lines: &[Value]) -> (&Value, Vec<&str>) {
    let (last, logs) = lines.split_last().expect("a build's stream has lines");
    (last, logs.iter().map(|l| l["log"].as_str().unwrap_or_else(|| panic!("a log line: {l}"))).collect())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=skiff", "-c", "user.email=skiff@test", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_static_site_uploaded_as_a_tar_builds_with_its_labels() {
    let g = Guard::new("static-tar");
    g.write(&[("index.html", &format!("hello from {}", g.id)), ("css/site.css", "body {}")]);
    let tar = g.tar();
    let started = Instant::now();
    let (status, lines) = g.build(&g.query(""), "application/x-tar", &tar);
    let took = started.elapsed();
    assert_eq!(status, 200, "{lines:?}");
    let (last, logs) = outcome(&lines);
    assert_eq!(last["tag"], g.tag().as_str(), "{lines:?}");
    let image = last["image"].as_str().expect("an image id").to_string();
    assert!(image.starts_with("sha256:"), "{last}");
    assert!(logs.iter().any(|l| l.starts_with("Step 1/") && l.contains(&format!("FROM {IMAGE}"))), "{logs:?}");
    assert_eq!(g.image(&g.tag()).as_deref(), Some(image.as_str()));
    let inspect = g.cluster.docker.image_id(&image).expect("inspect");
    assert_eq!(inspect.as_deref(), Some(image.as_str()));
    let labels = docker_command()
        .args(["image", "inspect", "--format", "{{json .Config.Labels}}", &image])
        .output()
        .expect("docker CLI runs");
    let labels: Value = serde_json::from_slice(&labels.stdout).expect("labels JSON");
    assert_eq!(labels["skiff.app"], g.id.as_str(), "{labels}");
    assert_eq!(labels["skiff.app-version"], "1", "{labels}");
    assert!(labels.get("skiff.node").is_none(), "{labels}");
    assert_eq!(g.shell("cat /srv/site/index.html"), format!("hello from {}", g.id));
    println!("the static site's build through the worker took {took:?} ({} bytes of tar)", tar.len());
}

#[test]
fn a_static_site_from_a_git_repository_builds_at_its_ref() {
    let g = Guard::new("static-git");
    let repo = g.dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "--quiet"]);
    std::fs::write(repo.join("index.html"), "version one").expect("file");
    git(&repo, &["add", "index.html"]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("index.html"), "version two").expect("file");
    git(&repo, &["commit", "--quiet", "-am", "two"]);
    let url = format!("file://{}", repo.display());
    let body = serde_json::json!({ "git": url, "ref": "v1" }).to_string();
    let (status, lines) = g.build(&g.query(""), "application/json", body.as_bytes());
    assert_eq!(status, 200, "{lines:?}");
    let (last, _) = outcome(&lines);
    assert!(last["image"].as_str().is_some_and(|i| i.starts_with("sha256:")), "{lines:?}");
    // the tag's content, not the branch's; and no .git in the image
    assert_eq!(g.shell("cat /srv/site/index.html"), "version one");
    assert_eq!(g.shell("ls -a /srv/site | grep -c '^.git$' || true").trim(), "0");
}

#[test]
fn a_dockerfile_app_builds_from_the_dockerfile_named() {
    let g = Guard::new("dockerfile");
    g.write(&[
        (
            "docker/app.Dockerfile",
            &format!(
                "FROM {IMAGE}\nLABEL skiff.test={}\nCOPY www/ /www/\nCMD exec httpd -f -p \"$PORT\" -h /www\n",
                g.id
            ),
        ),
        ("www/index.html", "from a Dockerfile"),
    ]);
    let (status, lines) = g.build(&g.query("&dockerfile=docker/app.Dockerfile"), "application/x-tar", &g.tar());
    assert_eq!(status, 200, "{lines:?}");
    let (last, logs) = outcome(&lines);
    assert!(last["image"].as_str().is_some(), "{lines:?}");
    assert!(logs.iter().any(|l| l.contains("COPY www/ /www/")), "{logs:?}");
    assert_eq!(g.shell("cat /www/index.html"), "from a Dockerfile");
}

#[test]
fn a_broken_dockerfile_streams_its_failing_step_and_leaves_no_image() {
    let g = Guard::new("broken");
    g.write(&[(
        "Dockerfile",
        &format!("FROM {IMAGE}\nLABEL skiff.test={}\nRUN echo about to fail && exit 3\nCMD true\n", g.id),
    )]);
    let (status, lines) = g.build(&g.query(""), "application/x-tar", &g.tar());
    assert_eq!(status, 200, "the failure comes in the stream: {lines:?}");
    let (last, logs) = outcome(&lines);
    // the engine's own LABEL steps, one a label, come after the Dockerfile's four
    let step = last["step"].as_str().unwrap_or_else(|| panic!("a step: {last}"));
    assert!(step.starts_with("Step 3/") && step.ends_with(" : RUN echo about to fail && exit 3"), "{last}");
    let error = last["error"].as_str().expect("an error");
    assert!(error.contains("returned a non-zero code: 3") && error.contains("about to fail"), "{error}");
    assert!(logs.contains(&"about to fail"), "{logs:?}");
    assert!(last.get("image").is_none(), "{last}");
    assert_eq!(g.image(&g.tag()), None, "a failed build tags nothing");
}

#[test]
fn refusals_come_before_any_build_as_plain_errors() {
    let g = Guard::new("refusals");
    // nothing to detect: detection's words
    g.write(&[("README.md", "just words")]);
    let (status, answer) = g.build(&g.query(""), "application/x-tar", &g.tar());
    assert_eq!(status, 422, "{answer:?}");
    let words = answer[0]["error"].as_str().expect("an error");
    assert!(words.starts_with("nothing to build: no Dockerfile, and none of index.html"), "{words}");

    // the same context sent chunked, as a client streaming a tar it makes on the fly does
    let mut chunked = Vec::new();
    for piece in g.tar().chunks(1000) {
        skiff::http::stream::write_chunk(&mut chunked, piece).expect("a chunk");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /v1/builds?{} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
        g.query("")
    );
    let out = send_raw(&g.cluster.workers[0].addr, head.as_bytes(), &chunked);
    assert!(out.starts_with("HTTP/1.1 422") && out.contains("nothing to build"), "{out}");

    // a transport helper: refused, naming git
    let ext = serde_json::json!({ "git": "ext::sh -c touch% /tmp/skiff-pwned" }).to_string();
    let (status, answer) = g.build(&g.query(""), "application/json", ext.as_bytes());
    assert_eq!(status, 400, "{answer:?}");
    assert_eq!(answer[0]["field"], "git", "{answer:?}");
    assert!(answer[0]["error"].as_str().is_some_and(|e| e.contains("only file://, https://, ssh://")), "{answer:?}");
    assert!(!Path::new("/tmp/skiff-pwned").exists());

    // a repository that is not there: git's words
    let gone = serde_json::json!({ "git": format!("file://{}/absent", g.dir.display()) }).to_string();
    let (status, answer) = g.build(&g.query(""), "application/json", gone.as_bytes());
    assert_eq!(status, 422, "{answer:?}");
    let words = answer[0]["error"].as_str().expect("an error");
    assert!(
        words.starts_with("git clone failed: ") && words.contains("does not appear to be a git repository"),
        "{words}"
    );

    // a ref the repository lacks
    let repo = g.dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "--quiet"]);
    std::fs::write(repo.join("index.html"), "x").expect("file");
    git(&repo, &["add", "index.html"]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    let no_ref = serde_json::json!({ "git": format!("file://{}", repo.display()), "ref": "v9" }).to_string();
    let (status, answer) = g.build(&g.query(""), "application/json", no_ref.as_bytes());
    assert_eq!((status, &answer[0]["field"]), (422, &Value::from("ref")), "{answer:?}");

    // a bad query, a body of another type
    let (status, answer) = g.build("tag=NotValid", "application/x-tar", &g.tar());
    assert_eq!((status, &answer[0]["field"]), (400, &Value::from("tag")), "{answer:?}");
    let (status, _) = g.build(&g.query(""), "text/plain", b"hello");
    assert_eq!(status, 415);
    assert_eq!(g.image(&g.tag()), None, "nothing was built");
}

/// Sends a head alone and reads what comes back within a few seconds.
fn head_only(addr: &str, head: &str) -> String {
    send_raw(addr, head.as_bytes(), b"")
}

/// Sends a head and a body as they are and reads the whole answer.
fn send_raw(addr: &str, head: &[u8], body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(head).expect("the head");
    s.write_all(body).expect("the body");
    let mut out = Vec::new();
    skiff::control::best_effort(s.read_to_end(&mut out));
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_body_over_the_limit_is_413_and_no_token_is_401_before_the_body() {
    let g = Guard::new("limits");
    let addr = g.cluster.workers[0].addr.clone();
    let path = format!("/v1/builds?{}", g.query(""));
    let over = skiff::http::builds::MAX_BUILD_BODY + 1;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/x-tar\r\n\
         Content-Length: {over}\r\n\r\n"
    );
    let out = head_only(&addr, &head);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    // without the token: 401 from the head, no 100 Continue, no byte of the body sent
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-tar\r\nExpect: 100-continue\r\n\
         Content-Length: 200000000\r\n\r\n"
    );
    let started = Instant::now();
    let out = head_only(&addr, &head);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // with the token and no body: refused, not built
    let (status, answer) = http_as("POST", &g.url(&g.query("")), Some(b""), Some(TOKEN));
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("the body is a build context"), "{answer}");
}
