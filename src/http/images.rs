//! The worker's image routes, and the manager's calls of them: `GET /v1/images/{ref}` streams an
//! image as the engine's `docker save` tar, chunk by chunk (never whole in memory);
//! `POST /v1/images` loads such a tar, spooled to disk by the server (`MAX_IMAGE_BODY`), and
//! answers what was loaded.
//!
//! Only images Skiff built move: an image without the `skiff.app` label is not exported (403),
//! and a tar is read before the engine sees it (`check_tar`: its `manifest.json` and each image's
//! config) and refused (403) if any image in it lacks the label, so that these routes read or
//! replace no other image on the host. After the load, each tag the engine names is inspected
//! again, and one without the label (a tar that did not say what it held) is removed.
//!
//! Holds no state.

use super::stream::{relay, Closer, RelayEnd};
use super::{ApiError, Request, Response};
use crate::api::{ImagesLoaded, LoadedImage};
use crate::docker_cli::{Docker, DockerError};
use crate::logfmt::{q, short};
use crate::manager::LinkError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// The largest tar `POST /v1/images` takes, spooled to disk.
pub const MAX_IMAGE_BODY: u64 = 2 * 1024 * 1024 * 1024;
/// How long the engine may take to load a tar.
pub const LOAD_DEADLINE: Duration = Duration::from_secs(600);
/// The longest an export may stream.
pub const EXPORT_MAX: Duration = Duration::from_secs(3600);
/// The largest `manifest.json` or image config read from a tar.
const MAX_TAR_JSON: u64 = 1024 * 1024;
/// The label that makes an image one Skiff built (`http/builds.rs` sets it).
pub const LABEL_APP: &str = super::builds::LABEL_APP;

/// Why an image route refused: the status and the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRefusal {
    pub status: u16,
    pub message: String,
}

impl ImageRefusal {
    fn new(status: u16, message: impl Into<String>) -> ImageRefusal {
        ImageRefusal { status, message: message.into() }
    }

    /// The engine's failure: out of reach (503), a refusal of what it was given (400), or
    /// anything else (502).
    fn engine(what: &str, e: &DockerError) -> ImageRefusal {
        let status = match e {
            _ if e.is_engine_down() => 503,
            DockerError::Api { status: 400..=499, .. } => 400,
            _ => 502,
        };
        ImageRefusal::new(status, format!("{what}: {}", crate::control::error_chain(e)))
    }
}

fn refuse(e: ImageRefusal) -> ApiError {
    ApiError::Image(e)
}

/// Whether a request's body is spooled: the load's, up to `MAX_IMAGE_BODY`.
pub fn spools(head: &Request) -> Option<u64> {
    matches!(super::worker_route(&head.method, &head.path), Ok(super::WorkerRoute::ImportImage))
        .then_some(MAX_IMAGE_BODY)
}

/// The image named by a path segment: percent-decoded, a reference with a tag.
pub fn image_ref(segment: &str) -> Result<String, ApiError> {
    let bad = |message: &str| ApiError::Query { param: "ref".into(), message: message.into() };
    let decoded = super::percent_decode(segment).ok_or_else(|| bad("is not valid percent-encoded UTF-8"))?;
    super::builds::check_tag(&decoded).map_err(bad)?;
    Ok(decoded)
}

/// `GET /v1/images/{ref}`: the image's `docker save` tar, relayed from the engine as it comes.
pub fn serve_export(docker: &Docker, reference: &str) -> Result<Response, ApiError> {
    let info = docker
        .image_info(reference)
        .map_err(|e| refuse(ImageRefusal::engine("cannot inspect the image", &e)))?
        .ok_or_else(|| refuse(ImageRefusal::new(404, format!("no image {reference} on this worker"))))?;
    if !info.labels.contains_key(LABEL_APP) {
        return Err(refuse(not_skiffs(reference, "exported")));
    }
    let export =
        docker.export_image(reference).map_err(|e| refuse(ImageRefusal::engine("cannot export the image", &e)))?;
    let (reference, started) = (reference.to_string(), Instant::now());
    Ok(Response::stream(
        200,
        "application/x-tar",
        Box::new(move |out| {
            let end = relay(export.reader, export.close, out, EXPORT_MAX);
            let sent = out.written();
            let ms = started.elapsed().as_millis();
            match end {
                Ok(RelayEnd::SourceEnded) => {
                    log::info!("image exported image={} bytes={sent} ms={ms}", q(&reference));
                    Ok(())
                }
                // never end the body as if whole: the reader must see it cut short
                Ok(other) => {
                    log::warn!("image export cut short image={} end={other:?} bytes={sent}", q(&reference));
                    Err(io::Error::other(format!("the export ended early: {other:?}")))
                }
                Err(e) => {
                    log::warn!("image export failed image={} bytes={sent} error={}", q(&reference), q(&e));
                    Err(e)
                }
            }
        }),
    ))
}

fn not_skiffs(what: &str, verb: &str) -> ImageRefusal {
    ImageRefusal::new(
        403,
        format!("{what} is not an image Skiff built (it has no {LABEL_APP} label): only those are {verb}"),
    )
}

/// One image a tar holds, as its `manifest.json` and its config say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarImage {
    pub tags: Vec<String>,
    /// The `skiff.app` label of its config, if it has one.
    pub app: Option<String>,
}

/// Reads a `docker save` tar (twice: `open` gives it from its start) for what it would load:
/// each image of `manifest.json`, its tags and its config's `skiff.app` label. A tar without a
/// manifest, or one naming a config it lacks, is refused (400).
pub fn check_tar<'a>(open: &dyn Fn() -> Box<dyn Read + 'a>) -> Result<Vec<TarImage>, ImageRefusal> {
    let bad = |why: String| ImageRefusal::new(400, format!("the body is not a docker save tar: {why}"));
    let manifest = read_member(open(), &|path| path == "manifest.json").map_err(|e| bad(e.to_string()))?;
    let manifest = manifest.into_values().next().ok_or_else(|| bad("it has no manifest.json".into()))?;
    let entries: Vec<Value> = serde_json::from_slice(&manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let mut wanted = Vec::new();
    for entry in &entries {
        let config = entry.get("Config").and_then(Value::as_str).ok_or_else(|| bad("an image has no Config".into()))?;
        let tags: Vec<String> = entry
            .get("RepoTags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        wanted.push((config.trim_start_matches("./").to_string(), tags));
    }
    if wanted.is_empty() {
        return Err(bad("its manifest.json names no image".into()));
    }
    let configs = read_member(open(), &|path| wanted.iter().any(|(c, _)| c == path)).map_err(|e| bad(e.to_string()))?;
    wanted
        .into_iter()
        .map(|(config, tags)| {
            let bytes = configs.get(&config).ok_or_else(|| bad(format!("it lacks {}", short(&config))))?;
            let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("{}: {e}", short(&config))))?;
            let app = value.pointer("/config/Labels").and_then(|l| l.get(LABEL_APP)).and_then(Value::as_str);
            Ok(TarImage { tags, app: app.map(str::to_string) })
        })
        .collect()
}

/// The members of a tar whose paths `want` takes, each at most `MAX_TAR_JSON` bytes.
fn read_member(tar: Box<dyn Read + '_>, want: &dyn Fn(&str) -> bool) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut found = BTreeMap::new();
    for entry in tar::Archive::new(tar).entries()? {
        let entry = entry?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        if !want(&path) {
            continue;
        }
        if entry.header().size()? > MAX_TAR_JSON {
            return Err(io::Error::other(format!("{} is over {MAX_TAR_JSON} bytes", short(&path))));
        }
        let mut bytes = Vec::new();
        entry.take(MAX_TAR_JSON).read_to_end(&mut bytes)?;
        found.insert(path, bytes);
    }
    Ok(found)
}

/// Whether every image of a checked tar may be loaded: each one Skiff's, each with a tag.
pub fn judge_tar(images: &[TarImage]) -> Result<(), ImageRefusal> {
    for image in images {
        let name = image.tags.first().cloned().unwrap_or_else(|| "an untagged image".into());
        if image.app.is_none() {
            return Err(not_skiffs(&name, "loaded"));
        }
        if image.tags.is_empty() {
            return Err(ImageRefusal::new(400, "the tar holds an image with no tag: nothing could run it by name"));
        }
        if let Some(bad) = image.tags.iter().find(|t| super::builds::check_tag(t).is_err()) {
            return Err(ImageRefusal::new(400, format!("the tar's tag {} is not a reference Skiff takes", short(bad))));
        }
    }
    Ok(())
}

/// `POST /v1/images`: a `docker save` tar, checked, then loaded through the engine.
pub fn serve_import(docker: &Docker, req: &Request) -> Result<Response, ApiError> {
    let content_type = req.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim();
    if !content_type.eq_ignore_ascii_case("application/x-tar") {
        let message =
            format!("Content-Type {:?} is not taken: send application/x-tar (a docker save tar)", short(content_type));
        return Err(refuse(ImageRefusal::new(415, message)));
    }
    let body = req
        .spooled
        .as_ref()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| refuse(ImageRefusal::new(400, "the body is a docker save tar, and it is empty")))?;
    let started = Instant::now();
    let images = check_tar(&|| Box::new(body.reader())).map_err(refuse)?;
    judge_tar(&images).map_err(refuse)?;
    let loaded = docker
        .load_image(&mut body.reader(), Instant::now() + LOAD_DEADLINE)
        .map_err(|e| refuse(ImageRefusal::engine("the engine did not load the tar", &e)))?;
    let mut answer = ImagesLoaded { images: Vec::new(), bytes: body.len() };
    for tag in &loaded.tags {
        let info = docker.image_info(tag).map_err(|e| refuse(ImageRefusal::engine("cannot inspect the image", &e)))?;
        match info {
            Some(info) if info.labels.contains_key(LABEL_APP) => answer.images.push(LoadedImage {
                tag: tag.clone(),
                id: info.id,
                app: info.labels.get(LABEL_APP).cloned().unwrap_or_default(),
            }),
            // the tar said otherwise: what it put in the engine goes again
            _ => {
                if let Err(e) = docker.remove_image(tag) {
                    log::warn!("cannot remove a refused image image={} error={}", q(tag), q(&e));
                }
                return Err(refuse(not_skiffs(tag, "loaded")));
            }
        }
    }
    log::info!(
        "image loaded tags={} bytes={} ms={}",
        q(&loaded.tags.join(",")),
        answer.bytes,
        started.elapsed().as_millis()
    );
    super::json(200, &answer)
}

// ---------------------------------------------------------------------------------------------
// The manager's side

/// The path of an image's export.
pub fn export_path(reference: &str) -> String {
    let mut out = String::from("/v1/images/");
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens a worker's export of `reference`: its body as it comes, and a way to end it.
pub fn open_export(
    address: &str,
    reference: &str,
    authorization: Option<&str>,
) -> Result<(Box<dyn Read + Send>, Closer), LinkError> {
    super::logs::open_get(address, &export_path(reference), authorization, Duration::from_secs(2))
}

/// Sends a `docker save` tar read from `tar` to a worker's `POST /v1/images`, chunked, all
/// within `deadline`; a failure to read `tar` ends the upload unfinished, so nothing is loaded.
pub fn upload(
    agent: &ureq::Agent,
    address: &str,
    tar: &mut dyn Read,
    authorization: Option<&str>,
    deadline: Duration,
) -> Result<ImagesLoaded, LinkError> {
    let mut request = agent.post(format!("http://{address}/v1/images")).header("Content-Type", "application/x-tar");
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let request = request.config().timeout_global(Some(deadline)).build();
    let mut resp = request.send(ureq::SendBody::from_reader(tar)).map_err(super::client::classify)?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(MAX_TAR_JSON)
        .read_to_vec()
        .map_err(|e| LinkError::BadAnswer(format!("the answer did not arrive whole: {e}")))?;
    if !(200..300).contains(&status) {
        return Err(super::client::refusal(status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| LinkError::BadAnswer(format!("{e} in {} bytes", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tar of `members` (path, bytes).
    fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, bytes.as_slice()).expect("append");
        }
        builder.into_inner().expect("tar")
    }

    fn config(labels: Value) -> Vec<u8> {
        json!({ "config": { "Labels": labels } }).to_string().into_bytes()
    }

    fn check(bytes: &[u8]) -> Result<Vec<TarImage>, ImageRefusal> {
        check_tar(&|| Box::new(bytes))
    }

    #[test]
    fn a_save_tar_gives_each_images_tags_and_app() {
        let manifest = json!([
            { "Config": "ab.json", "RepoTags": ["skiff-app/web:v1"], "Layers": ["l/layer.tar"] },
            { "Config": "cd.json", "RepoTags": ["other:1", "other:2"], "Layers": [] },
        ]);
        let tar = tar_of(&[
            ("ab.json", config(json!({ "skiff.app": "web" }))),
            ("l/layer.tar", vec![0; 2048]),
            ("cd.json", config(Value::Null)),
            ("manifest.json", manifest.to_string().into_bytes()),
        ]);
        let images = check(&tar).expect("reads");
        assert_eq!(
            images,
            [
                TarImage { tags: vec!["skiff-app/web:v1".into()], app: Some("web".into()) },
                TarImage { tags: vec!["other:1".into(), "other:2".into()], app: None },
            ]
        );
        let refused = judge_tar(&images).expect_err("the second is not Skiff's");
        assert_eq!(refused.status, 403);
        assert!(refused.message.contains("other:1") && refused.message.contains("skiff.app"), "{}", refused.message);
        assert_eq!(judge_tar(&images[..1]), Ok(()));
    }

    #[test]
    fn what_is_not_a_save_tar_is_a_400_that_says_why() {
        let no_manifest = tar_of(&[("a.json", config(json!({})))]);
        let missing_config =
            tar_of(&[("manifest.json", json!([{ "Config": "x.json", "RepoTags": ["a:b"] }]).to_string().into_bytes())]);
        let empty_manifest = tar_of(&[("manifest.json", b"[]".to_vec())]);
        let cases: [(&str, &[u8], &str); 4] = [
            ("no manifest", &no_manifest, "no manifest.json"),
            ("a config missing", &missing_config, "lacks x.json"),
            ("no image", &empty_manifest, "names no image"),
            ("not a tar", b"hello, this is not a tar at all, not even close to 512 bytes", "not a docker save tar"),
        ];
        for (what, bytes, words) in cases {
            let e = check(bytes).expect_err(what);
            assert_eq!(e.status, 400, "{what}");
            assert!(e.message.contains(words), "{what}: {}", e.message);
        }
    }

    #[test]
    fn an_untagged_or_oddly_tagged_image_is_refused() {
        let app = Some("web".to_string());
        let untagged = [TarImage { tags: vec![], app: app.clone() }];
        assert_eq!(judge_tar(&untagged).map_err(|e| e.status), Err(400));
        let odd = [TarImage { tags: vec!["UPPER/case:1".into()], app }];
        assert_eq!(judge_tar(&odd).map_err(|e| e.status), Err(400));
    }

    #[test]
    fn a_reference_comes_percent_encoded_in_one_segment() {
        assert_eq!(image_ref("skiff-app%2Fweb%3Av1").expect("decodes"), "skiff-app/web:v1");
        assert_eq!(export_path("skiff-app/web:v1"), "/v1/images/skiff-app%2Fweb%3Av1");
        assert!(image_ref("no-tag").is_err());
        assert!(image_ref("%ff").is_err());
    }
}
