//! `POST /v1/builds` on the worker: an image built on this node's engine from a build context
//! uploaded as a tar, or from a git repository the worker clones; the answer is the build's log
//! streamed as NDJSON, then its image or its failure.
//!
//! Everything that can be refused is refused before the 200 (the query, the body, the URL, the
//! clone with git's words, nothing to detect with detect's words), as a plain JSON error; after
//! it, the stream says how the build went: `{"log": …}` lines as the engine prints them, then
//! `{"image": …, "tag": …}` or `{"error": …, "step": …}`. A failed build tags nothing.
//!
//! The body is spooled to disk by the server (`MAX_BUILD_BODY`); a tar is unpacked
//! (`deploy::unpack`) and a repository cloned (`deploy::git`) into a workspace of their own, removed
//! when the request ends; both are then read as any source is (`deploy::context`). At most
//! `BUILDS_AT_ONCE` builds run at once (503 past it).
//!
//! Holds no state but the count of builds running.

use super::events::NDJSON;
use super::{ApiError, Request, Response};
use crate::deploy::git::{self, CloneLimits, GitError};
use crate::deploy::unpack::{unpack, UnpackError};
use crate::deploy::{BuildConfig, Context, ContextError, ContextOptions};
use crate::docker_cli::{BuildError, BuildOptions, Docker};
use crate::logfmt::{q, short};
use crate::task::SpecError;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The largest body of `POST /v1/builds` (a build context's tar), spooled to disk.
pub const MAX_BUILD_BODY: u64 = 256 * 1024 * 1024;
/// The largest `{"git": …, "ref": …}` body.
pub const MAX_GIT_REQUEST: u64 = 64 * 1024;
/// The largest context sent to the engine, after `.dockerignore`.
pub const MAX_CONTEXT: u64 = 256 * 1024 * 1024;
/// Builds running at once on a worker; past it, 503.
pub const BUILDS_AT_ONCE: usize = 2;

pub const LABEL_APP: &str = "skiff.app";
pub const LABEL_APP_VERSION: &str = "skiff.app-version";

/// What the worker builds with: its engine, the base images of generated Dockerfiles, and
/// where workspaces go.
pub struct Builds {
    docker: Arc<Docker>,
    config: BuildConfig,
    dir: PathBuf,
    clone_limits: CloneLimits,
    running: Arc<AtomicUsize>,
}

impl Builds {
    /// The engine builds go to (and images move through, `http/images.rs`).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn new(docker: Arc<Docker>, config: BuildConfig, dir: PathBuf) -> Builds {
        Builds { docker, config, dir, clone_limits: CloneLimits::default(), running: Arc::new(AtomicUsize::new(0)) }
    }
}

/// Why a build was refused before it began.
#[derive(Debug)]
pub enum BuildRefusal {
    Busy,
    NoBody,
    ContentType(String),
    /// The JSON body: the field at fault.
    Request(SpecError),
    Git(GitError),
    Unpack(UnpackError),
    Context(ContextError),
    Workspace(io::Error),
}

impl fmt::Display for BuildRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildRefusal::Busy => write!(f, "{BUILDS_AT_ONCE} builds are running on this worker already; retry"),
            BuildRefusal::NoBody => f.write_str(
                "the body is a build context (Content-Type: application/x-tar) or {\"git\": URL, \"ref\": REF} \
                 (Content-Type: application/json)",
            ),
            BuildRefusal::ContentType(t) => write!(
                f,
                "Content-Type {:?} is not taken: send application/x-tar (a build context) or application/json \
                 ({{\"git\": URL, \"ref\": REF}})",
                short(t)
            ),
            BuildRefusal::Request(e) => match &e.field {
                Some(field) => write!(f, "invalid build request: field `{field}`: {}", e.message),
                None => write!(f, "invalid build request: {}", e.message),
            },
            BuildRefusal::Git(e) => e.fmt(f),
            BuildRefusal::Unpack(e) => e.fmt(f),
            BuildRefusal::Context(e) => e.fmt(f),
            BuildRefusal::Workspace(e) => write!(f, "cannot make the build's workspace: {e}"),
        }
    }
}

impl std::error::Error for BuildRefusal {}

impl BuildRefusal {
    /// The field of the request at fault, when there is one.
    pub fn field(&self) -> Option<String> {
        match self {
            BuildRefusal::Request(e) => e.field.clone(),
            BuildRefusal::Git(GitError::BadUrl { .. } | GitError::Failed { .. }) => Some("git".into()),
            BuildRefusal::Git(GitError::BadRef { .. } | GitError::NoRef { .. }) => Some("ref".into()),
            _ => None,
        }
    }
}

/// The statuses of refused builds (`http::status_of` asks here).
pub fn status_of(e: &BuildRefusal) -> u16 {
    match e {
        BuildRefusal::Busy => 503,
        BuildRefusal::NoBody | BuildRefusal::Request(_) => 400,
        BuildRefusal::ContentType(_) => 415,
        BuildRefusal::Git(GitError::BadUrl { .. } | GitError::BadRef { .. }) => 400,
        BuildRefusal::Git(GitError::Failed { .. } | GitError::NoRef { .. }) => 422,
        BuildRefusal::Git(GitError::TooLarge { .. }) => 413,
        BuildRefusal::Git(GitError::Deadline(_)) => 504,
        BuildRefusal::Git(GitError::Io(_)) | BuildRefusal::Workspace(_) => 500,
        BuildRefusal::Unpack(UnpackError::TooLarge { .. }) => 413,
        BuildRefusal::Unpack(_) => 400,
        BuildRefusal::Context(ContextError::TooLarge { .. }) => 413,
        BuildRefusal::Context(ContextError::Io { .. }) => 500,
        BuildRefusal::Context(_) => 422,
    }
}

/// The query of `POST /v1/builds`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildQuery {
    pub tag: String,
    pub dockerfile: Option<String>,
    pub app: Option<String>,
    pub version: Option<String>,
}

/// `tag` (required), `dockerfile`, `app`, `version`: a bad one is a 400 that names it.
pub fn build_query(query: &str) -> Result<BuildQuery, ApiError> {
    let bad = |param: &str, message: &str| ApiError::Query { param: param.to_string(), message: message.to_string() };
    let mut q = BuildQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = super::percent_decode(raw).ok_or_else(|| bad(key, "is not valid percent-encoded UTF-8"))?;
        match key {
            "tag" => q.tag = check_tag(&value).map_err(|m| bad(key, m))?.to_string(),
            "dockerfile" => q.dockerfile = Some(check_dockerfile(&value).map_err(|m| bad(key, m))?),
            "app" => {
                crate::task::check_name(&value).map_err(|m| bad(key, &m))?;
                q.app = Some(value);
            }
            "version" => {
                let ok = !value.is_empty()
                    && value.len() <= 64
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if !ok {
                    return Err(bad(key, "must be 1 to 64 letters, digits, '.', '_' or '-'"));
                }
                q.version = Some(value);
            }
            other => return Err(bad(other, "unknown; the parameters are tag, dockerfile, app, version")),
        }
    }
    if q.tag.is_empty() {
        return Err(bad("tag", "is required: the image's name and tag, such as skiff-app/NAME:v1"));
    }
    Ok(q)
}

/// An image reference with a tag: `name[/name…]:tag`, names of lowercase letters, digits and
/// separators (`.`, `_`, `-`) between them, as the engine takes them.
pub fn check_tag(tag: &str) -> Result<&str, &'static str> {
    const WHAT: &str = "must be an image reference with a tag, such as skiff-app/NAME:v1 \
                        (lowercase letters, digits, '.', '_', '-' and '/' in the name)";
    let (name, version) = tag.rsplit_once(':').ok_or(WHAT)?;
    let version_ok = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with(['.', '-'])
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
    };
    if tag.len() > 255 || !version_ok || !name.split('/').all(component_ok) {
        return Err(WHAT);
    }
    Ok(tag)
}

/// A Dockerfile's path inside the context: relative, never climbing out.
fn check_dockerfile(path: &str) -> Result<String, &'static str> {
    let p = Path::new(path);
    let inside = p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || path.len() > 255 || !inside || path.chars().any(char::is_control) {
        return Err("must be a relative path inside the context, such as docker/Dockerfile.prod");
    }
    Ok(path.to_string())
}

/// The body of a build from git.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GitSource {
    git: String,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
}

/// Whether a request's body is spooled: the build route's, up to `MAX_BUILD_BODY`.
pub fn spools(head: &Request) -> Option<u64> {
    matches!(super::worker_route(&head.method, &head.path), Ok(super::WorkerRoute::Build)).then_some(MAX_BUILD_BODY)
}

/// A build's slot among `BUILDS_AT_ONCE`, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(running: &Arc<AtomicUsize>) -> Option<Slot> {
        running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < BUILDS_AT_ONCE).then_some(n + 1))
            .ok()
            .map(|_| Slot(running.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A build's own directory (the source, the context's tar), removed when dropped.
struct Workspace(PathBuf);

impl Workspace {
    fn new(parent: &Path) -> io::Result<Workspace> {
        let path = parent.join(format!("skiff-build-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Workspace(path))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!("cannot remove a build's workspace path={} error={}", q(&self.0.display()), q(&e));
        }
    }
}

/// `POST /v1/builds`: the source made ready (or refused), then the build streamed.
pub fn serve_build(b: &Builds, req: &Request) -> Result<Response, ApiError> {
    let query = build_query(&req.query)?;
    let refuse = |e: BuildRefusal| ApiError::Build(Box::new(e));
    let content_type = req.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim();
    let content_type = content_type.to_ascii_lowercase();
    if content_type != "application/x-tar" && content_type != "application/json" {
        return Err(refuse(if content_type.is_empty() {
            BuildRefusal::NoBody
        } else {
            BuildRefusal::ContentType(content_type)
        }));
    }
    let body = req.spooled.as_ref().filter(|b| !b.is_empty()).ok_or_else(|| refuse(BuildRefusal::NoBody))?;
    let slot = Slot::take(&b.running).ok_or_else(|| refuse(BuildRefusal::Busy))?;
    let workspace = Workspace::new(&b.dir).map_err(|e| refuse(BuildRefusal::Workspace(e)))?;
    let source = workspace.0.join("src");
    let started = Instant::now();
    let from = if content_type == "application/x-tar" {
        unpack(body.reader(), &source, MAX_CONTEXT).map_err(|e| refuse(BuildRefusal::Unpack(e)))?;
        "tar".to_string()
    } else {
        let git = git_source(body.reader()).map_err(|e| refuse(BuildRefusal::Request(e)))?;
        let commit = git::clone(&git.git, git.reference.as_deref(), &source, &b.clone_limits)
            .map_err(|e| refuse(BuildRefusal::Git(e)))?;
        format!("{} at {commit}", short(&git.git))
    };
    let opts = ContextOptions { max_bytes: MAX_CONTEXT, dockerfile: query.dockerfile.clone() };
    let context = Context::prepare(&source, &opts, &b.config).map_err(|e| refuse(BuildRefusal::Context(e)))?;
    let tar_path = workspace.0.join("context.tar");
    let written =
        File::create(&tar_path).map_err(|e| ContextError::Io { path: tar_path.clone(), source: e }).and_then(|file| {
            let mut out = BufWriter::new(file);
            context.write_tar(&mut out)?;
            out.flush().map_err(|e| ContextError::Io { path: tar_path.clone(), source: e })
        });
    written.map_err(|e| refuse(BuildRefusal::Context(e)))?;
    // no `skiff.created-at`: the engine keeps the image's creation time, and each label is a
    // step of its own (a commit, about a second here)
    let mut labels = BTreeMap::new();
    if let Some(app) = &query.app {
        labels.insert(LABEL_APP.to_string(), app.clone());
    }
    if let Some(version) = &query.version {
        labels.insert(LABEL_APP_VERSION.to_string(), version.clone());
    }
    log::info!(
        "build starting tag={} from={} language={} prepared_ms={}",
        q(&query.tag),
        q(&from),
        q(&context.plan.language),
        started.elapsed().as_millis()
    );
    let docker = b.docker.clone();
    let dockerfile = context.plan.dockerfile.clone();
    Ok(Response::stream(
        200,
        NDJSON,
        Box::new(move |out| {
            // the slot and the workspace are held until the build has ended
            let _held = (slot, workspace);
            let tag = query.tag;
            let mut opts = BuildOptions::new(&tag, &dockerfile, &labels);
            opts.deadline = crate::docker_cli::DEFAULT_BUILD_DEADLINE;
            let mut reader_gone = false;
            let result = match File::open(&tar_path) {
                Ok(mut file) => docker.build(&mut file, &opts, &mut |line| {
                    // a reader gone does not stop the engine's build: its lines go nowhere
                    if !reader_gone && out.send(&line_of(&json!({ "log": line }))).is_err() {
                        reader_gone = true;
                    }
                }),
                Err(e) => Err(BuildError::Context(e)),
            };
            let last = match &result {
                Ok(built) => json!({ "image": built.image_id, "tag": tag }),
                Err(e) => {
                    let step = match e {
                        BuildError::Failed(failure) => failure.step.clone(),
                        _ => None,
                    };
                    json!({ "error": e.to_string(), "step": step })
                }
            };
            match &result {
                Ok(built) => log::info!(
                    "build done tag={} image={} build_ms={}",
                    q(&tag),
                    q(&built.image_id),
                    started.elapsed().as_millis()
                ),
                Err(e) => log::info!("build failed tag={} error={}", q(&tag), q(&short(&e.to_string()))),
            }
            out.send(&line_of(&last))
        }),
    ))
}

/// One NDJSON line.
fn line_of(value: &serde_json::Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// `{"git": URL, "ref": REF}`, at most `MAX_GIT_REQUEST` bytes.
fn git_source(body: impl Read) -> Result<GitSource, SpecError> {
    let mut bytes = Vec::new();
    body.take(MAX_GIT_REQUEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SpecError { field: None, message: format!("cannot read the body: {e}") })?;
    if bytes.len() as u64 > MAX_GIT_REQUEST {
        return Err(SpecError { field: None, message: format!("over {MAX_GIT_REQUEST} bytes") });
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = e.to_string();
        let field = if message.contains("`git`") { Some("git".to_string()) } else { None };
        SpecError { field, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::DetectError;

    #[test]
    fn the_query_wants_a_tag_and_names_what_is_wrong() {
        let q = build_query("tag=skiff-app%2Fweb%3Av3&app=web&version=3&dockerfile=docker%2FDockerfile").expect("ok");
        assert_eq!(q.tag, "skiff-app/web:v3");
        assert_eq!((q.app.as_deref(), q.version.as_deref()), (Some("web"), Some("3")));
        assert_eq!(q.dockerfile.as_deref(), Some("docker/Dockerfile"));
        let param = |query: &str| match build_query(query) {
            Err(ApiError::Query { param, .. }) => param,
            other => panic!("{query}: {other:?}"),
        };
        assert_eq!(param(""), "tag");
        assert_eq!(param("tag=Skiff-App/web:v1"), "tag");
        assert_eq!(param("tag=skiff-app/web"), "tag");
        assert_eq!(param("tag=skiff-app/web:v1&dockerfile=..%2Fetc%2Fpasswd"), "dockerfile");
        assert_eq!(param("tag=skiff-app/web:v1&dockerfile=%2Fetc%2Fpasswd"), "dockerfile");
        assert_eq!(param("tag=skiff-app/web:v1&app=a%20b"), "app");
        assert_eq!(param("tag=skiff-app/web:v1&version=1%3B2"), "version");
        assert_eq!(param("tag=skiff-app/web:v1&nocache=1"), "nocache");
    }

    #[test]
    fn tags_are_image_references_with_a_tag() {
        for ok in ["skiff-app/web:v1", "a:1", "skiff-app/my.app_x-y:v1.2-rc_1", "x/y/z:latest"] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", "web", "web:", "Web:v1", "web:-x", "/web:v1", "web/:v1", "we b:v1", "web:v1;rm", "-web:v1"] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_git_body_names_its_fields() {
        let ok = git_source(&br#"{"git": "file:///srv/r", "ref": "main"}"#[..]).expect("ok");
        assert_eq!((ok.git.as_str(), ok.reference.as_deref()), ("file:///srv/r", Some("main")));
        assert_eq!(git_source(&br#"{"ref": "main"}"#[..]).expect_err("no git").field.as_deref(), Some("git"));
        assert!(git_source(&br#"{"git": "x", "branch": "main"}"#[..]).expect_err("unknown").message.contains("branch"));
        let big = vec![b' '; MAX_GIT_REQUEST as usize + 10];
        assert!(git_source(&big[..]).is_err());
    }

    #[test]
    fn refusals_have_their_statuses() {
        let git = |e: GitError| status_of(&BuildRefusal::Git(e));
        assert_eq!(git(GitError::BadUrl { url: "ext::x".into(), why: "no" }), 400);
        assert_eq!(git(GitError::Failed { doing: "clone", words: "not found".into() }), 422);
        assert_eq!(git(GitError::NoRef { reference: "x".into() }), 422);
        let nothing = BuildRefusal::Context(ContextError::Detect(DetectError::NothingDetected { hints: Vec::new() }));
        assert_eq!(status_of(&nothing), 422);
        assert_eq!(status_of(&BuildRefusal::Busy), 503);
        assert_eq!(status_of(&BuildRefusal::ContentType("text/plain".into())), 415);
        assert_eq!(BuildRefusal::Git(GitError::BadUrl { url: "u".into(), why: "w" }).field().as_deref(), Some("git"));
    }
}
