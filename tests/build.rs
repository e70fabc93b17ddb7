//! Builds against the real Docker Engine, from local images only (no registry is reachable):
//! every build starts `FROM skiff/busybox:latest` (scripts/build-image.sh). A Dockerfile app
//! and a static site without a Dockerfile (the generated template, its base image configured to
//! skiff/busybox) build, run and answer on `$PORT`; a broken build names its step and shows its
//! output, and tags nothing; a build past its deadline is stopped; `.dockerignore` and `.git`
//! are honoured in the image.
//!
//! Everything a test makes carries `skiff.test=<its id>` (images through the build's labels and a
//! `LABEL` step, containers through `--label`), and a guard removes it when the test ends,
//! failed or not, along with the layers a failed build left.

#![allow(clippy::let_underscore_must_use, reason = "test code drops the outcomes of clean-ups freely")]

mod common;

use common::{docker_command, require_docker, require_image, wait_for, IMAGE};
use skiff::deploy::{BuildConfig, Context, ContextOptions, Language};
use skiff::docker_cli::{BuildError, BuildOptions, Built, Docker};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One test's source directory, engine objects and clean-up.
struct Guard {
    id: String,
    docker: Docker,
    dir: PathBuf,
    tag: String,
    /// Layers the builds left (a failed build's, an earlier stage's), removed last.
    layers: std::cell::RefCell<Vec<String>>,
}

impl Guard {
    fn new(name: &str) -> Guard {
        let docker = require_docker();
        require_image();
        let id = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build").join(&id);
        std::fs::create_dir_all(&dir).expect("test dir");
        let tag = format!("skiff-test/{id}:1");
        Guard { id, docker, dir, tag, layers: Default::default() }
    }

    fn label(&self) -> String {
        format!("skiff.test={}", self.id)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("skiff.test".to_string(), self.id.clone())])
    }

    fn write(&self, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = self.dir.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("source dir");
            std::fs::write(path, text).expect("source file");
        }
    }

    /// Prepares the context of the test's directory and builds it; the lines seen, in order.
    fn build(&self, config: &BuildConfig, deadline: Duration) -> (Result<Built, BuildError>, Vec<String>, Context) {
        let context = Context::prepare(&self.dir, &ContextOptions::default(), config).expect("the context");
        let tar = context.to_bytes().expect("the tar");
        let labels = self.labels();
        let mut opts = BuildOptions::new(&self.tag, &context.plan.dockerfile, &labels);
        opts.no_cache = true;
        opts.deadline = deadline;
        let mut lines = Vec::new();
        let result = self.docker.build(&mut tar.as_slice(), &opts, &mut |line| lines.push(line.to_string()));
        let layers = match &result {
            Ok(built) => built.layers.clone(),
            Err(BuildError::Failed(failure)) => failure.layers.clone(),
            Err(_) => Vec::new(),
        };
        self.layers.borrow_mut().extend(layers);
        (result, lines, context)
    }

    /// `docker run -d` of the image with `PORT=port` published on 127.0.0.1; the host address.
    fn run(&self, port: u16) -> String {
        let out = docker_command()
            .args(["run", "-d", "--label", &self.label(), "-e", &format!("PORT={port}")])
            .args(["-p", &format!("127.0.0.1::{port}"), &self.tag])
            .output()
            .expect("docker CLI runs");
        assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
        let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let out =
            docker_command().args(["port", &container, &format!("{port}/tcp")]).output().expect("docker CLI runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().next().unwrap_or_else(|| panic!("no port published: {text}")).trim().to_string()
    }

    /// What a command prints in a container of the image (its `CMD` replaced).
    fn shell(&self, script: &str) -> String {
        let out = docker_command()
            .args(["run", "--rm", "--label", &self.label(), &self.tag, "sh", "-c", script])
            .output()
            .expect("docker CLI runs");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn labelled(&self, kind: &str) -> Vec<String> {
        let args: &[&str] = match kind {
            "containers" => &["ps", "-aq"],
            _ => &["images", "-aq"],
        };
        let out = docker_command()
            .args(args)
            .args(["--filter", &format!("label={}", self.label())])
            .output()
            .expect("docker CLI runs");
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let containers = self.labelled("containers");
        if !containers.is_empty() {
            skiff::control::best_effort(docker_command().args(["rm", "-f"]).args(&containers).output());
        }
        let base = self.docker.image_id(IMAGE).ok().flatten();
        skiff::control::best_effort(self.docker.remove_image(&self.tag));
        // children before parents: a few passes, each removing what has no child left
        for _ in 0..5 {
            let images = self.labelled("images");
            if images.is_empty() {
                break;
            }
            for image in images {
                skiff::control::best_effort(self.docker.remove_image(&image));
            }
        }
        for layer in self.layers.borrow().iter().rev() {
            let full = self.docker.image_id(layer).ok().flatten();
            if full.is_some() && full != base {
                skiff::control::best_effort(self.docker.remove_image(layer));
            }
        }
        skiff::control::best_effort(std::fs::remove_dir_all(&self.dir));
    }
}

/// `GET path` on `addr`: the body when the answer is 200, `None` while the server is not up.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

fn answers(addr: &str, path: &str) -> (u16, String) {
    wait_for(&format!("an answer on {addr}{path}"), Duration::from_secs(20), || get(addr, path))
}

#[test]
fn a_dockerfile_app_builds_runs_and_answers() {
    let g = Guard::new("dockerfile");
    let token = format!("hello-{}", g.id);
    g.write(&[
        (
            "Dockerfile",
            &format!(
                "FROM {IMAGE}\nLABEL skiff.test={}\nENV PORT=8080\nCOPY www/ /www/\nCOPY . /ctx/\n\
                 CMD exec httpd -f -p \"$PORT\" -h /www\n",
                g.id
            ),
        ),
        ("www/index.html", &token),
        ("kept.txt", "kept"),
        ("ignored.txt", "must not reach the image"),
        ("logs/debug.log", "must not reach the image"),
        (".git/config", "[core]"),
        (".git/objects/ab/cdef", "object"),
        (".dockerignore", "# what stays out\nignored.txt\nlogs\n"),
    ]);
    let (result, lines, context) = g.build(&BuildConfig::default(), Duration::from_secs(120));
    assert_eq!(context.plan.language, Language::Dockerfile);
    let built = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(built.image_id.starts_with("sha256:"), "{built:?}");
    assert_eq!(g.docker.image_id(&g.tag).unwrap().as_deref(), Some(built.image_id.as_str()));
    // the build's labels are a last LABEL step of the engine's own
    assert!(lines.iter().any(|l| l.starts_with("Step 1/7 : FROM skiff/busybox")), "{lines:?}");
    assert!(lines.iter().any(|l| *l == format!("Step 7/7 : LABEL skiff.test={}", g.id)), "{lines:?}");
    assert!(g.labelled("images").contains(&built.image_id[7..19].to_string()), "the image carries its label");

    let addr = g.run(5005);
    let (status, body) = answers(&addr, "/");
    assert_eq!((status, body.as_str()), (200, token.as_str()));

    let listed = g.shell("cd /ctx && find . | sort");
    assert!(listed.contains("./kept.txt") && listed.contains("./Dockerfile"), "{listed}");
    for absent in ["./ignored.txt", "./logs", "./.git"] {
        assert!(!listed.lines().any(|l| l.starts_with(absent)), "{absent} reached the image:\n{listed}");
    }
}

#[test]
fn a_static_site_builds_from_the_generated_dockerfile_and_answers_on_port() {
    let g = Guard::new("static");
    let token = format!("site-{}", g.id);
    g.write(&[
        ("index.html", &format!("<p>{token}</p>")),
        ("about/index.html", "about"),
        ("drafts/next.html", "not yet"),
        ("key.secret", "private"),
        (".git/HEAD", "ref: refs/heads/main"),
        (".dockerignore", "drafts\n*.secret\n"),
    ]);
    let config = BuildConfig { static_image: IMAGE.to_string(), ..BuildConfig::default() };
    let started = Instant::now();
    let (result, lines, context) = g.build(&config, Duration::from_secs(120));
    let took = started.elapsed();
    assert_eq!(context.plan.language, Language::Static);
    assert_eq!(context.plan.dockerfile, "Dockerfile.skiff");
    let generated = context.plan.generated.clone().unwrap();
    assert!(generated.starts_with(&format!("# Generated by Skiff: a static site\nFROM {IMAGE}\n")), "{generated}");
    result.unwrap_or_else(|e| panic!("{e}\n{generated}"));
    eprintln!(
        "static site: context {} bytes, built in {took:?}, {} log lines",
        context.source.tar_bytes(),
        lines.len()
    );

    // not the default port: $PORT is what the container is given
    let addr = g.run(5017);
    let (status, body) = answers(&addr, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&token), "{body}");
    assert_eq!(answers(&addr, "/about/").1, "about");
    assert_eq!(answers(&addr, "/drafts/next.html").0, 404);

    let listed = g.shell("cd /srv/site && find . | sort");
    assert!(listed.contains("./index.html") && listed.contains("./about/index.html"), "{listed}");
    for absent in ["./drafts", "./key.secret", "./.git", "./Dockerfile.skiff", "./.dockerignore"] {
        assert!(!listed.lines().any(|l| l.starts_with(absent)), "{absent} is in the site:\n{listed}");
    }
}

#[test]
fn a_broken_build_names_its_step_shows_its_output_and_tags_nothing() {
    let g = Guard::new("broken");
    g.write(&[(
        "Dockerfile",
        &format!(
            "FROM {IMAGE}\nLABEL skiff.test={id}\nRUN echo preparing-{id}\n\
             RUN echo about-to-fail-{id} && false\nCMD [\"sh\"]\n",
            id = g.id
        ),
    )]);
    let (result, lines, _) = g.build(&BuildConfig::default(), Duration::from_secs(120));
    let failure = match result {
        Err(BuildError::Failed(failure)) => failure,
        other => panic!("expected a failed step, got {other:?}"),
    };
    let step = failure.step.clone().unwrap_or_default();
    assert_eq!(step, format!("Step 4/6 : RUN echo about-to-fail-{} && false", g.id));
    assert!(failure.message.contains("returned a non-zero code: 1"), "{}", failure.message);
    assert_eq!(failure.output, [format!("about-to-fail-{}", g.id)]);
    let text = BuildError::Failed(failure.clone()).to_string();
    assert!(text.contains(&step) && text.contains(&format!("\n  about-to-fail-{}", g.id)), "{text}");
    assert!(lines.iter().any(|l| *l == format!("preparing-{}", g.id)), "{lines:?}");

    // no tag; the step's container is gone (forcerm); the layers of the steps before are the
    // only images left, and the failure lists them
    assert_eq!(g.docker.image_id(&g.tag).unwrap(), None);
    let failed_step = lines.iter().rev().find_map(|l| l.trim().strip_prefix("---> Running in ")).unwrap();
    let out = docker_command().args(["container", "inspect", failed_step]).output().unwrap();
    assert!(!out.status.success(), "the failed step's container was left behind");
    assert_eq!(failure.layers.len(), 2, "{:?}", failure.layers);
    for layer in failure.layers.iter().rev() {
        g.docker.remove_image(layer).unwrap();
    }
    assert_eq!(g.labelled("images"), Vec::<String>::new(), "images left after removing the layers");

    // a Dockerfile that does not parse is an error too, whatever the status
    g.write(&[("Dockerfile", &format!("FROM {IMAGE}\nFROMM nothing\n"))]);
    let (result, _, _) = g.build(&BuildConfig::default(), Duration::from_secs(60));
    let text = result.unwrap_err().to_string();
    assert!(text.to_lowercase().contains("unknown instruction"), "{text}");
}

#[test]
fn a_tag_the_engine_refuses_is_its_error_before_any_step() {
    let g = Guard::new("badtag");
    g.write(&[("Dockerfile", &format!("FROM {IMAGE}\nLABEL skiff.test={}\n", g.id))]);
    let context = Context::prepare(&g.dir, &ContextOptions::default(), &BuildConfig::default()).unwrap();
    let tar = context.to_bytes().unwrap();
    let labels = g.labels();
    let opts = BuildOptions::new("Not A Tag", "Dockerfile", &labels);
    let mut lines = Vec::new();
    let e = g.docker.build(&mut tar.as_slice(), &opts, &mut |l| lines.push(l.to_string())).unwrap_err();
    assert!(matches!(&e, BuildError::Engine(_)), "{e}");
    assert!(e.to_string().contains("invalid reference format"), "{e}");
    assert_eq!(lines, Vec::<String>::new(), "nothing was built");
}

#[test]
fn a_build_past_its_deadline_is_stopped() {
    let g = Guard::new("deadline");
    g.write(&[("Dockerfile", &format!("FROM {IMAGE}\nLABEL skiff.test={}\nRUN sleep 60\n", g.id))]);
    let started = Instant::now();
    let (result, lines, _) = g.build(&BuildConfig::default(), Duration::from_secs(3));
    let took = started.elapsed();
    assert!(matches!(result, Err(BuildError::Deadline(_))), "{result:?}\n{lines:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // the engine stops the build when its client goes: the step's container is removed
    wait_for("the cancelled step's container to go", Duration::from_secs(30), || {
        g.labelled("containers").is_empty().then_some(())
    });
    assert_eq!(g.docker.image_id(&g.tag).unwrap(), None);
}

/// Fails, saying what to run, when an image of scripts/build-base-images.sh is missing.
fn require_base(docker: &Docker, image: &str) {
    let present = docker.image_id(image).expect("the engine answers").is_some();
    assert!(present, "{image} is missing: run scripts/build-base-images.sh (Debian's archive must be reachable)");
}

/// A generated-Dockerfile app built on the offline base images, run on `port`, and its answer.
fn offline_app(name: &str, language: Language, files: &[(&str, &str)]) -> String {
    let g = Guard::new(name);
    let config = BuildConfig::local();
    for image in [&config.python_image, &config.node_image, &config.go_image] {
        require_base(&g.docker, image);
    }
    g.write(files);
    let started = Instant::now();
    let (result, lines, context) = g.build(&config, Duration::from_secs(600));
    assert_eq!(context.plan.language, language);
    let generated = context.plan.generated.clone().unwrap_or_default();
    result.unwrap_or_else(|e| panic!("{e}\n{generated}\n{}", lines.join("\n")));
    eprintln!("{name}: built in {:?}", started.elapsed());
    let addr = g.run(5023);
    let (status, body) = wait_for("the app to answer", Duration::from_secs(30), || get(&addr, "/"));
    assert_eq!(status, 200, "{body}");
    body
}

// The three below need the images of scripts/build-base-images.sh (minutes to build, from
// Debian's archive), so they run on request: `cargo test --test build -- --ignored`.

#[test]
#[ignore = "needs scripts/build-base-images.sh's images"]
fn a_python_app_builds_on_the_offline_base_image() {
    let app = "import http.server, os\n\
               class H(http.server.BaseHTTPRequestHandler):\n    \
                   def do_GET(self):\n        \
                       self.send_response(200); self.end_headers(); self.wfile.write(b'python here')\n\
               http.server.HTTPServer(('', int(os.environ['PORT'])), H).serve_forever()\n";
    let body = offline_app("python", Language::Python, &[("app.py", app), ("requirements.txt", "# none\n")]);
    assert_eq!(body, "python here");
}

#[test]
#[ignore = "needs scripts/build-base-images.sh's images"]
fn a_node_app_builds_on_the_offline_base_image() {
    let server = "require('http').createServer((q, s) => s.end('node here')).listen(process.env.PORT);\n";
    let package = r#"{"name":"app","version":"1.0.0","scripts":{"start":"node server.js"}}"#;
    let body = offline_app("node", Language::Node, &[("server.js", server), ("package.json", package)]);
    assert_eq!(body, "node here");
}

#[test]
#[ignore = "needs scripts/build-base-images.sh's images"]
fn a_go_app_builds_on_the_offline_base_image() {
    let main = "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n)\n\n\
                func main() {\n\thttp.HandleFunc(\"/\", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(\"go here\")) })\n\
                \thttp.ListenAndServe(\":\"+os.Getenv(\"PORT\"), nil)\n}\n";
    let body =
        offline_app("go", Language::Go, &[("main.go", main), ("go.mod", "module example.com/hello\n\ngo 1.19\n")]);
    assert_eq!(body, "go here");
}
