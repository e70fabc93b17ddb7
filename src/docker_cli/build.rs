//! Image builds through the Engine: `POST /build` with a tar context (the classic builder of API
//! 1.41, `version=1`), its stream of JSON lines read as it comes, and what it means: an image id,
//! or a failure naming the failing step with that step's output. Also the removal of an image.
//!
//! A build's failure is in the stream, not the status: the engine answers 200 and then an
//! `error`/`errorDetail` line, or ends with no image id; both are failures here. Each line of
//! output is handed to the caller as it arrives; what is kept in memory is bounded.
//!
//! Owns the build call and the reading of its stream; where the context comes from is
//! `deploy::context`, and what to do with the image is for the caller.

use super::framing::{self, MAX_HEADER_LINE};
use super::{encode, Docker, DockerError, CALL_TIMEOUT};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// How long a build may take when nothing else is said.
pub const DEFAULT_BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// How much of a build's log is kept in memory (the tail, and the failing step's output).
pub const DEFAULT_MAX_LOG: usize = 256 * 1024;
/// The longest JSON line of the stream: the engine sends output in pieces of a few KiB.
const MAX_LINE: u64 = 1024 * 1024;

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions<'a> {
    /// The image's name and tag (`t=`).
    pub tag: &'a str,
    /// The Dockerfile's path in the context (`dockerfile=`).
    pub dockerfile: &'a str,
    /// Labels of the image.
    pub labels: &'a BTreeMap<String, String>,
    /// Build every step anew (`nocache=1`).
    pub no_cache: bool,
    pub deadline: Duration,
    /// Bytes of log kept: the log's tail, and as much of the failing step's output.
    pub max_log: usize,
}

impl<'a> BuildOptions<'a> {
    pub fn new(tag: &'a str, dockerfile: &'a str, labels: &'a BTreeMap<String, String>) -> BuildOptions<'a> {
        BuildOptions {
            tag,
            dockerfile,
            labels,
            no_cache: false,
            deadline: DEFAULT_BUILD_DEADLINE,
            max_log: DEFAULT_MAX_LOG,
        }
    }

    fn query(&self) -> String {
        let labels = serde_json::to_string(self.labels).unwrap_or_else(|_| "{}".into());
        format!(
            "/build?version=1&rm=1&forcerm=1&t={}&dockerfile={}&labels={}&nocache={}",
            encode(self.tag),
            encode(self.dockerfile),
            encode(&labels),
            u8::from(self.no_cache)
        )
    }
}

/// A build that made its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `sha256:…` (or the short id of an engine that gives no other).
    pub image_id: String,
    /// The last lines of the log, at most `max_log` bytes.
    pub log_tail: Vec<String>,
    /// The images the steps committed (not base images), the image's own ancestors and those of
    /// earlier stages: removing the image's tag removes the first, not the second.
    pub layers: Vec<String>,
}

/// A build whose step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFailure {
    /// `Step 2/3 : RUN false`, when the failure came after a step began.
    pub step: Option<String>,
    /// The engine's words.
    pub message: String,
    /// The failing step's output, its last lines if it was longer than `max_log`.
    pub output: Vec<String>,
    /// How many lines of the step's output were left out at its start.
    pub omitted: usize,
    /// The untagged images that the steps before the failure committed (not base images), for
    /// a caller that wants them removed.
    pub layers: Vec<String>,
}

#[derive(Debug)]
pub enum BuildError {
    /// The engine could not be reached, refused the request, or broke off.
    Engine(DockerError),
    /// Reading the context failed.
    Context(io::Error),
    /// A step failed.
    Failed(BuildFailure),
    /// The stream ended without an error and without an image id.
    NoImage { log_tail: Vec<String> },
    /// The build's deadline passed.
    Deadline(Duration),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Engine(e) => write!(f, "the build could not run: {e}"),
            BuildError::Context(e) => write!(f, "the build context could not be read: {e}"),
            BuildError::Failed(failure) => {
                match &failure.step {
                    Some(step) => write!(f, "the build failed at {step}: {}", failure.message)?,
                    None => write!(f, "the build failed: {}", failure.message)?,
                }
                if !failure.output.is_empty() {
                    f.write_str("\nthe step's output:")?;
                    if failure.omitted > 0 {
                        write!(f, "\n  ({} earlier lines left out)", failure.omitted)?;
                    }
                    for line in &failure.output {
                        write!(f, "\n  {line}")?;
                    }
                }
                Ok(())
            }
            BuildError::NoImage { log_tail } => {
                f.write_str("the build ended without an image")?;
                for line in log_tail.iter().rev().take(10).rev() {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
            BuildError::Deadline(limit) => write!(f, "the build took longer than its {}s deadline", limit.as_secs()),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Engine(e) => Some(e),
            BuildError::Context(e) => Some(e),
            _ => None,
        }
    }
}

/// Lines kept up to a number of bytes, the oldest dropped first.
#[derive(Debug, Default)]
struct Bounded {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: usize,
}

impl Bounded {
    fn push(&mut self, line: &str, max: usize) {
        self.lines.push_back(line.to_string());
        self.bytes += line.len();
        while self.bytes > max {
            let Some(old) = self.lines.pop_front() else { break };
            self.bytes -= old.len();
            self.dropped += 1;
        }
    }

    fn take(&mut self) -> (Vec<String>, usize) {
        let taken = std::mem::take(self);
        (taken.lines.into_iter().collect(), taken.dropped)
    }
}

/// A build's stream as it is read: its lines, the step under way, and what it ended with.
#[derive(Debug)]
pub(super) struct Progress {
    max_log: usize,
    /// Output not yet ended by a newline.
    partial: String,
    tail: Bounded,
    step: Option<String>,
    step_output: Bounded,
    /// The step under way is a `FROM`: its `---> id` is a base image, not ours.
    in_from: bool,
    layers: Vec<String>,
    aux_id: Option<String>,
    built_id: Option<String>,
    error: Option<String>,
}

impl Progress {
    pub(super) fn new(max_log: usize) -> Progress {
        Progress {
            max_log,
            partial: String::new(),
            tail: Bounded::default(),
            step: None,
            step_output: Bounded::default(),
            in_from: false,
            layers: Vec::new(),
            aux_id: None,
            built_id: None,
            error: None,
        }
    }

    /// One JSON line of the stream.
    pub(super) fn feed(&mut self, json: &[u8], on_line: &mut dyn FnMut(&str)) -> Result<(), DockerError> {
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            let shown: String = String::from_utf8_lossy(json).chars().take(200).collect();
            DockerError::Protocol(format!("a build stream line is not JSON ({e}): {shown}"))
        })?;
        if let Some(text) = value.get("stream").and_then(Value::as_str) {
            self.partial.push_str(text);
            while let Some(end) = self.partial.find('\n') {
                let line: String = self.partial.drain(..=end).collect();
                self.line(line.trim_end_matches(['\n', '\r']), on_line);
            }
            if self.partial.len() > self.max_log.max(1) {
                let long = std::mem::take(&mut self.partial);
                self.line(&long, on_line);
            }
        }
        if let Some(status) = value.get("status").and_then(Value::as_str) {
            let line = match value.get("id").and_then(Value::as_str) {
                Some(id) => format!("{id}: {status}"),
                None => status.to_string(),
            };
            self.line(&line, on_line);
        }
        if let Some(id) = value.pointer("/aux/ID").and_then(Value::as_str) {
            self.aux_id = Some(id.to_string());
        }
        let detail = value.pointer("/errorDetail/message").and_then(Value::as_str);
        if let Some(message) = detail.or_else(|| value.get("error").and_then(Value::as_str)) {
            self.error.get_or_insert_with(|| message.trim().to_string());
        }
        Ok(())
    }

    fn line(&mut self, text: &str, on_line: &mut dyn FnMut(&str)) {
        on_line(text);
        self.tail.push(text, self.max_log);
        let trimmed = text.trim();
        if let Some(instruction) = step_instruction(trimmed) {
            self.step = Some(trimmed.to_string());
            self.in_from = instruction.get(..5).is_some_and(|w| w.eq_ignore_ascii_case("FROM "));
            self.step_output = Bounded::default();
        } else if let Some(id) = trimmed.strip_prefix("---> ") {
            if !self.in_from && !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
                self.layers.push(id.to_string());
            }
        } else if let Some(id) = trimmed.strip_prefix("Successfully built ") {
            self.built_id = Some(id.trim().to_string());
        } else if !trimmed.starts_with("Removing intermediate container") {
            self.step_output.push(text, self.max_log);
        }
    }

    /// What the stream ended with.
    pub(super) fn finish(mut self, on_line: &mut dyn FnMut(&str)) -> Result<Built, BuildError> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest, on_line);
        }
        if let Some(message) = self.error.take() {
            let (output, omitted) = self.step_output.take();
            return Err(BuildError::Failed(BuildFailure {
                step: self.step,
                message,
                output,
                omitted,
                layers: self.layers,
            }));
        }
        let (log_tail, _) = self.tail.take();
        match self.aux_id.or(self.built_id) {
            Some(image_id) => Ok(Built { image_id, log_tail, layers: self.layers }),
            None => Err(BuildError::NoImage { log_tail }),
        }
    }
}

/// The instruction of a step's first line: `Step 2/3 : RUN false` (Docker) or `STEP 2/3: RUN
/// false` (Podman).
fn step_instruction(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("Step ").or_else(|| line.strip_prefix("STEP "))?;
    let (count, instruction) = rest.split_once(':')?;
    let count = count.trim();
    let (n, m) = count.split_once('/')?;
    if n.is_empty() || !n.chars().chain(m.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(instruction.trim())
}

/// A reader that remembers that it failed: a failed read of the context is the context's fault,
/// not the engine's.
struct Watched<'a> {
    inner: &'a mut dyn Read,
    failed: bool,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

impl Docker {
    /// Builds an image from a tar `context` (read as it is sent), handing each line of the
    /// build's output to `on_line` as it arrives. The whole build, upload included, is bounded
    /// by `opts.deadline`; the connection is closed then, which makes the engine stop.
    pub fn build(
        &self,
        context: &mut dyn Read,
        opts: &BuildOptions,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<Built, BuildError> {
        let start = Instant::now();
        let deadline = start + opts.deadline;
        let path = format!("{}{}", self.prefix().map_err(BuildError::Engine)?, opts.query());
        let mut watched = Watched { inner: context, failed: false };
        let late = |e: io::Error| {
            if timed_out(&e) && Instant::now() >= deadline {
                BuildError::Deadline(opts.deadline)
            } else {
                BuildError::Engine(DockerError::Io(e))
            }
        };
        let (status, body) = match framing::upload(self.socket(), &path, "application/x-tar", &mut watched, deadline) {
            Ok(answer) => answer,
            Err(DockerError::Io(e)) if watched.failed => return Err(BuildError::Context(e)),
            Err(DockerError::Io(e)) => return Err(late(e)),
            Err(e) => return Err(BuildError::Engine(e)),
        };
        if status != 200 {
            let mut text = Vec::new();
            crate::control::best_effort(body.take(MAX_HEADER_LINE as u64).read_to_end(&mut text));
            return Err(BuildError::Engine(framing::api_error(status, &text)));
        }
        let mut reader = BufReader::new(body);
        let mut progress = Progress::new(opts.max_log);
        loop {
            let mut line = Vec::new();
            let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line).map_err(late)?;
            if n == 0 {
                break;
            }
            if !line.ends_with(b"\n") && n as u64 == MAX_LINE {
                let what = format!("a build stream line over {MAX_LINE} bytes");
                return Err(BuildError::Engine(DockerError::Protocol(what)));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            progress.feed(&line, on_line).map_err(BuildError::Engine)?;
        }
        progress.finish(on_line)
    }

    /// The id of an image, or `None` when there is no such image.
    pub fn image_id(&self, reference: &str) -> Result<Option<String>, DockerError> {
        match self.call("GET", &format!("/images/{}/json", encode(reference)), None, CALL_TIMEOUT)?.ok() {
            Ok(resp) => {
                let value: Value = serde_json::from_slice(&resp.body)
                    .map_err(|e| DockerError::Protocol(format!("image inspect is not JSON: {e}")))?;
                Ok(value.get("Id").and_then(Value::as_str).map(str::to_string))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes an image (a tag, or an id) and its untagged parents; a missing image is not an
    /// error, an image in use or with children is (409).
    pub fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        match self.call("DELETE", &format!("/images/{}", encode(reference)), None, CALL_TIMEOUT)?.ok() {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str], max_log: usize) -> (Result<Built, BuildError>, Vec<String>) {
        let mut seen = Vec::new();
        let mut on_line = |l: &str| seen.push(l.to_string());
        let mut progress = Progress::new(max_log);
        for line in lines {
            progress.feed(line.as_bytes(), &mut on_line).unwrap();
        }
        let result = progress.finish(&mut on_line);
        (result, seen)
    }

    const OK: &[&str] = &[
        r#"{"stream":"Step 1/3 : FROM skiff/busybox:latest"}"#,
        r#"{"stream":"\n"}"#,
        r#"{"stream":" ---\u003e 732091a8d5ac\n"}"#,
        r#"{"stream":"Step 2/3 : RUN echo one \u0026\u0026 echo two\n"}"#,
        r#"{"stream":" ---\u003e Running in 0b1c2d3e4f50\n"}"#,
        r#"{"stream":"one\ntw"}"#,
        r#"{"stream":"o\n"}"#,
        r#"{"stream":"Removing intermediate container 0b1c2d3e4f50\n"}"#,
        r#"{"stream":" ---\u003e 5d2e6f708192\n"}"#,
        r#"{"stream":"Step 3/3 : LABEL skiff.test=x\n"}"#,
        r#"{"stream":" ---\u003e Using cache\n"}"#,
        r#"{"stream":" ---\u003e 6a7b8c9d0e1f\n"}"#,
        r#"{"aux":{"ID":"sha256:6a7b8c9d0e1f00"}}"#,
        r#"{"stream":"Successfully built 6a7b8c9d0e1f\n"}"#,
        r#"{"stream":"Successfully tagged app:1\n"}"#,
    ];

    #[test]
    fn a_build_gives_its_image_and_every_line_as_it_comes() {
        let (result, seen) = run(OK, DEFAULT_MAX_LOG);
        let built = result.unwrap();
        assert_eq!(built.image_id, "sha256:6a7b8c9d0e1f00");
        assert_eq!(seen[0], "Step 1/3 : FROM skiff/busybox:latest");
        assert_eq!(&seen[4..6], ["one", "two"], "lines split across pieces are joined: {seen:?}");
        assert_eq!(seen.last().unwrap(), "Successfully tagged app:1");
        assert_eq!(built.log_tail, seen);
        assert_eq!(built.layers, ["5d2e6f708192", "6a7b8c9d0e1f"], "not the base image");
        // without aux, the "Successfully built" line is the id
        let (result, _) = run(&OK[..12], DEFAULT_MAX_LOG);
        assert!(matches!(result, Err(BuildError::NoImage { .. })), "no id at all is a failure");
        let mut older: Vec<&str> = OK[..12].to_vec();
        older.push(r#"{"stream":"Successfully built 6a7b8c9d0e1f\n"}"#);
        assert_eq!(run(&older, DEFAULT_MAX_LOG).0.unwrap().image_id, "6a7b8c9d0e1f");
    }

    #[test]
    fn a_failure_names_its_step_and_shows_its_output() {
        let lines = [
            r#"{"stream":"Step 1/3 : FROM skiff/busybox:latest\n"}"#,
            r#"{"stream":" ---\u003e 732091a8d5ac\n"}"#,
            r#"{"stream":"Step 2/3 : COPY . /srv\n"}"#,
            r#"{"stream":" ---\u003e 1111aaaa2222\n"}"#,
            r#"{"stream":"Step 3/3 : RUN echo before; false\n"}"#,
            r#"{"stream":" ---\u003e Running in 0b1c2d3e4f50\n"}"#,
            r#"{"stream":"before\n"}"#,
            r#"{"errorDetail":{"code":1,"message":"The command '/bin/sh -c echo before; false' returned a non-zero code: 1"},"error":"The command '/bin/sh -c echo before; false' returned a non-zero code: 1"}"#,
        ];
        let (result, _) = run(&lines, DEFAULT_MAX_LOG);
        let Err(BuildError::Failed(failure)) = result else { panic!("{result:?}") };
        assert_eq!(failure.step.as_deref(), Some("Step 3/3 : RUN echo before; false"));
        assert!(failure.message.ends_with("returned a non-zero code: 1"));
        assert_eq!(failure.output, ["before"], "the engine's own lines are not the step's output");
        assert_eq!(failure.layers, ["1111aaaa2222"], "the base image is not a layer of ours");
        let text = BuildError::Failed(failure).to_string();
        assert!(text.starts_with("the build failed at Step 3/3 : RUN echo before; false: The command"), "{text}");
        assert!(text.ends_with("the step's output:\n  before"), "{text}");
        // an error even before any step, and with an image id, is a failure
        let (result, _) = run(&[r#"{"aux":{"ID":"sha256:1"}}"#, r#"{"error":"no such file: Dockerfile"}"#], 100);
        let text = result.unwrap_err().to_string();
        assert_eq!(text, "the build failed: no such file: Dockerfile");
    }

    #[test]
    fn the_log_kept_is_bounded() {
        let mut lines = vec![r#"{"stream":"Step 1/1 : RUN yes\n"}"#.to_string()];
        for i in 0..1000 {
            lines.push(format!(r#"{{"stream":"line {i:04}\n"}}"#));
        }
        lines.push(r#"{"error":"killed"}"#.to_string());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (result, seen) = run(&refs, 100);
        assert_eq!(seen.len(), 1001, "every line is still handed on");
        let Err(BuildError::Failed(failure)) = result else { panic!() };
        assert_eq!(failure.output.last().unwrap(), "line 0999");
        assert!(failure.output.iter().map(String::len).sum::<usize>() <= 100);
        assert_eq!(failure.omitted + failure.output.len(), 1000);
        assert!(BuildError::Failed(failure).to_string().contains("earlier lines left out"));
        // a piece of output without any newline is cut into lines of at most the bound
        let long = format!(r#"{{"stream":"{}"}}"#, "x".repeat(500));
        let (_, seen) = run(&[&long, r#"{"aux":{"ID":"sha256:1"}}"#], 100);
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn pulls_and_odd_lines() {
        let (result, seen) = run(
            &[r#"{"status":"Pulling from library/busybox","id":"stable"}"#, r#"{"status":"Digest: sha256:ab"}"#],
            100,
        );
        assert_eq!(seen, ["stable: Pulling from library/busybox", "Digest: sha256:ab"]);
        assert!(result.unwrap_err().to_string().contains("Digest: sha256:ab"));
        let mut progress = Progress::new(100);
        let e = progress.feed(b"<html>", &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn steps_of_both_engines() {
        assert_eq!(step_instruction("Step 2/3 : RUN false"), Some("RUN false"));
        assert_eq!(step_instruction("STEP 2/3: RUN false"), Some("RUN false"));
        assert_eq!(step_instruction("Step one: x"), None);
        assert_eq!(step_instruction("Stepping in"), None);
    }

    #[test]
    fn the_query() {
        let labels = BTreeMap::from([("skiff.app".to_string(), "web".to_string())]);
        let mut opts = BuildOptions::new("web:3", "Dockerfile.skiff", &labels);
        opts.no_cache = true;
        assert_eq!(
            opts.query(),
            "/build?version=1&rm=1&forcerm=1&t=web%3A3&dockerfile=Dockerfile.skiff\
             &labels=%7B%22skiff.app%22%3A%22web%22%7D&nocache=1"
        );
    }

    /// An engine on a Unix socket of its own: `/version` answered, every other request handed
    /// to `serve` with the request's head and the connection.
    struct FakeEngine {
        path: std::path::PathBuf,
    }

    impl FakeEngine {
        fn start(serve: impl Fn(String, &mut BufReader<UnixStream>) + Send + 'static) -> FakeEngine {
            let path = std::env::temp_dir().join(format!("skiff-fake-engine-{}.sock", uuid::Uuid::new_v4().simple()));
            let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let mut reader = BufReader::new(conn.unwrap());
                    let mut head = String::new();
                    while !head.ends_with("\r\n\r\n") {
                        if reader.read_line(&mut head).unwrap() == 0 {
                            break;
                        }
                    }
                    if head.starts_with("GET /version") {
                        let body = r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#;
                        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        reader.get_mut().write_all(answer.as_bytes()).unwrap();
                    } else {
                        serve(head, &mut reader);
                    }
                }
            });
            FakeEngine { path }
        }
    }

    impl Drop for FakeEngine {
        fn drop(&mut self) {
            crate::control::best_effort(std::fs::remove_file(&self.path));
        }
    }

    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;

    /// A chunked request body, decoded.
    fn read_chunked(reader: &mut BufReader<UnixStream>) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0u8; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            assert_eq!(&chunk[n..], b"\r\n");
            if n == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }

    /// A 200 whose body is `lines`, one chunk each, as the engine streams them.
    fn stream(reader: &mut BufReader<UnixStream>, lines: &[&str]) {
        let out = reader.get_mut();
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        for line in lines {
            let line = format!("{line}\r\n");
            out.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).unwrap();
        }
        out.write_all(b"0\r\n\r\n").unwrap();
    }

    fn build_on(engine: &FakeEngine, context: &mut dyn Read, deadline: Duration) -> Result<Built, BuildError> {
        let labels = BTreeMap::from([("skiff.test".to_string(), "fake".to_string())]);
        let mut opts = BuildOptions::new("app:1", "Dockerfile", &labels);
        opts.deadline = deadline;
        Docker::new(&engine.path).build(context, &opts, &mut |_| {})
    }

    #[test]
    fn the_context_goes_up_whole_and_the_stream_comes_back() {
        let context: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (tx, rx) = mpsc::channel();
        let engine = FakeEngine::start(move |head, reader| {
            let body = read_chunked(reader);
            stream(reader, &[r#"{"stream":"Step 1/1 : FROM x\n"}"#, r#"{"aux":{"ID":"sha256:ab"}}"#]);
            tx.send((head, body)).unwrap();
        });
        let built = build_on(&engine, &mut context.as_slice(), Duration::from_secs(10)).unwrap();
        assert_eq!(built.image_id, "sha256:ab");
        let (head, body) = rx.recv().unwrap();
        assert!(
            head.starts_with("POST /v1.41/build?version=1&rm=1&forcerm=1&t=app%3A1&dockerfile=Dockerfile"),
            "{head}"
        );
        assert!(head.contains("Content-Type: application/x-tar\r\n"), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        assert!(body == context, "the context arrives byte for byte ({} of {} bytes)", body.len(), context.len());

        // an error line under 200 is a failure
        let engine = FakeEngine::start(|_, reader| {
            read_chunked(reader);
            stream(
                reader,
                &[r#"{"stream":"Step 1/1 : RUN x\n"}"#, r#"{"error":"boom","errorDetail":{"message":"boom"}}"#],
            );
        });
        let e = build_on(&engine, &mut &b"tar"[..], Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.to_string(), "the build failed at Step 1/1 : RUN x: boom");
    }

    #[test]
    fn a_refusal_before_the_whole_upload_is_heard() {
        let engine = FakeEngine::start(|_, reader| {
            let body = r#"{"message":"invalid reference format"}"#;
            let answer = format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            reader.get_mut().write_all(answer.as_bytes()).unwrap();
            // gone without reading the body
        });
        let big = vec![0u8; 8 * 1024 * 1024];
        let e = build_on(&engine, &mut big.as_slice(), Duration::from_secs(10)).unwrap_err();
        assert!(matches!(&e, BuildError::Engine(DockerError::Api { status: 400, .. })), "{e}");
        assert!(e.to_string().contains("invalid reference format"), "{e}");
    }

    #[test]
    fn the_deadline_bounds_a_silent_engine_and_a_broken_context_is_its_own_error() {
        let engine = FakeEngine::start(|_, reader| {
            read_chunked(reader);
            // no answer: wait for the client to give up
            crate::control::best_effort(reader.read(&mut [0u8; 1]));
        });
        let start = Instant::now();
        let e = build_on(&engine, &mut &b"tar"[..], Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, BuildError::Deadline(_)), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let engine = FakeEngine::start(|_, reader| crate::control::best_effort(reader.read_to_end(&mut Vec::new())));
        let e = build_on(&engine, &mut Broken, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(e, BuildError::Context(_)), "{e}");
        assert!(e.to_string().contains("disk gone"), "{e}");
    }
}
