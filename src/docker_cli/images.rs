//! Images moved between engines: an image's labels and tags (`GET /images/{name}/json`), its
//! export as the `docker save` tar (`GET /images/{name}/get`), read as it comes and closable from
//! another thread, and the load of such a tar (`POST /images/load`), streamed up, with what the
//! engine says it loaded.
//!
//! Owns the engine's paths and answers for these calls only; must not decide which images may
//! move (that is `http/images.rs`).

use super::{encode, framing, Docker, DockerError, CALL_TIMEOUT, MAX_HEADER_LINE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

/// What the engine says of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// An image's export being read, and a way to end the read from another thread.
pub struct ImageExport {
    pub reader: Box<dyn std::io::Read + Send>,
    pub close: Box<dyn FnOnce() + Send>,
}

/// What a load put in the engine: the tags and the ids (of untagged images) it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    pub tags: Vec<String>,
    pub ids: Vec<String>,
}

/// The longest answer of a load that is read (a line per image).
const MAX_LOAD_ANSWER: u64 = 1024 * 1024;

impl Docker {
    /// The image's id, tags and labels, or `None` when there is no such image.
    pub fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>, DockerError> {
        match self.call("GET", &format!("/images/{}/json", encode(reference)), None, CALL_TIMEOUT)?.ok() {
            Ok(resp) => parse_image_info(&resp.body).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the export of one image (`docker save`): a tar, read as the engine writes it, each
    /// read within the ordinary call's deadline.
    pub fn export_image(&self, reference: &str) -> Result<ImageExport, DockerError> {
        let path = format!("{}/images/{}/get", self.prefix()?, encode(reference));
        let (status, body, handle) = framing::open_closable(self.socket(), &path, Some(CALL_TIMEOUT))?;
        if !(200..300).contains(&status) {
            let mut text = Vec::new();
            crate::control::best_effort(body.take(MAX_HEADER_LINE as u64).read_to_end(&mut text));
            return Err(framing::api_error(status, &text));
        }
        let close = Box::new(move || {
            crate::control::best_effort(handle.shutdown(std::net::Shutdown::Both));
        });
        Ok(ImageExport { reader: body, close })
    }

    /// Loads a `docker save` tar, streamed from `tar`, all by `deadline`; answers what the
    /// engine loaded. An error the engine reports under its 200 is an error.
    pub fn load_image(&self, tar: &mut dyn Read, deadline: Instant) -> Result<Loaded, DockerError> {
        let path = format!("{}/images/load?quiet=1", self.prefix()?);
        let (status, body) = framing::upload(self.socket(), &path, "application/x-tar", tar, deadline)?;
        let mut answer = Vec::new();
        body.take(MAX_LOAD_ANSWER).read_to_end(&mut answer).map_err(DockerError::Io)?;
        if !(200..300).contains(&status) {
            return Err(framing::api_error(status, &answer));
        }
        parse_loaded(&answer)
    }
}

fn parse_image_info(body: &[u8]) -> Result<ImageInfo, DockerError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DockerError::Protocol(format!("image inspect is not JSON: {e}")))?;
    let id = value.get("Id").and_then(Value::as_str).unwrap_or_default().to_string();
    let repo_tags = value
        .get("RepoTags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let labels = value
        .pointer("/Config/Labels")
        .and_then(Value::as_object)
        .map(|labels| labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    Ok(ImageInfo { id, repo_tags, labels })
}

/// The lines of a load's answer: `{"stream": "Loaded image: NAME:TAG\n"}`, `{"stream": "Loaded
/// image ID: sha256:…\n"}`, or `{"error": …}`.
fn parse_loaded(answer: &[u8]) -> Result<Loaded, DockerError> {
    let mut loaded = Loaded::default();
    for line in BufReader::new(answer).split(b'\n') {
        let line = line.map_err(DockerError::Io)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(&line)
            .map_err(|e| DockerError::Protocol(format!("the load's answer is not JSON lines: {e}")))?;
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(DockerError::Api { status: 500, message: error.to_string() });
        }
        let stream = value.get("stream").and_then(Value::as_str).unwrap_or_default().trim();
        if let Some(id) = stream.strip_prefix("Loaded image ID:") {
            loaded.ids.push(id.trim().to_string());
        } else if let Some(tag) = stream.strip_prefix("Loaded image:") {
            loaded.tags.push(tag.trim().to_string());
        }
    }
    if loaded.tags.is_empty() && loaded.ids.is_empty() {
        return Err(DockerError::Protocol("the engine loaded nothing from the tar".into()));
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspected_image_gives_its_id_tags_and_labels() {
        let body = br#"{"Id":"sha256:ab","RepoTags":["skiff-app/web:v1","x:y"],
            "Config":{"Labels":{"skiff.app":"web","n":1}}}"#;
        let info = parse_image_info(body).expect("parses");
        assert_eq!(info.id, "sha256:ab");
        assert_eq!(info.repo_tags, ["skiff-app/web:v1", "x:y"]);
        assert_eq!(info.labels.get("skiff.app").map(String::as_str), Some("web"));
        assert_eq!(info.labels.len(), 1, "a label that is not a string is left out");
        let bare = parse_image_info(br#"{"Id":"sha256:cd","RepoTags":null,"Config":{"Labels":null}}"#).expect("parses");
        assert!(bare.repo_tags.is_empty() && bare.labels.is_empty());
        assert!(parse_image_info(b"not json").is_err());
    }

    #[test]
    fn a_loads_answer_names_tags_and_ids_and_its_error_is_one() {
        let answer =
            b"{\"stream\":\"Loaded image: skiff-app/web:v1\\n\"}\r\n{\"stream\":\"Loaded image ID: sha256:ef\\n\"}\n";
        let loaded = parse_loaded(answer).expect("parses");
        assert_eq!(loaded.tags, ["skiff-app/web:v1"]);
        assert_eq!(loaded.ids, ["sha256:ef"]);
        let failed = parse_loaded(b"{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\n");
        assert!(
            matches!(failed, Err(DockerError::Api { ref message, .. }) if message == "unexpected EOF"),
            "{failed:?}"
        );
        assert!(parse_loaded(b"").is_err(), "nothing loaded is an error");
        assert!(parse_loaded(b"<html>").is_err());
    }
}
