//! An uploaded build context unpacked into a directory, so that it is read as any source is
//! (`deploy::context`: `.dockerignore`, `.git` left out, detection, the generated Dockerfile).
//!
//! What a tar may hold is narrowed: directories, regular files and symbolic links (a link is
//! written as a link; `context` refuses one pointing outside later); a path climbing out (`..`)
//! or through a link is refused (the `tar` crate checks each parent inside the directory, and
//! never writes through an existing link); hard links are refused, devices and FIFOs left out;
//! the files' bytes together are bounded.
//!
//! Owns the unpacking; what is built of the directory is for the caller.

use std::fmt;
use std::io::{self, Read};
use std::path::{Component, Path};

#[derive(Debug)]
pub enum UnpackError {
    /// The tar could not be read, or a file written.
    Io(io::Error),
    /// An entry the context may not hold: its path, and why.
    Refused {
        path: String,
        why: &'static str,
    },
    TooLarge {
        limit: u64,
    },
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::Io(e) => write!(f, "the build context is not a readable tar: {e}"),
            UnpackError::Refused { path, why } => write!(f, "the build context's entry {path:?} {why}"),
            UnpackError::TooLarge { limit } => {
                write!(f, "the build context's files are over their limit of {} MiB", limit / (1024 * 1024))
            }
        }
    }
}

impl std::error::Error for UnpackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UnpackError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Unpacks the tar read from `from` into `dest` (created if missing), its files' bytes at most
/// `max_bytes`. Returns how many entries it wrote.
pub fn unpack(from: impl Read, dest: &Path, max_bytes: u64) -> Result<usize, UnpackError> {
    std::fs::create_dir_all(dest).map_err(UnpackError::Io)?;
    let mut archive = tar::Archive::new(from);
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    let mut total = 0u64;
    let mut written = 0;
    for entry in archive.entries().map_err(UnpackError::Io)? {
        let mut entry = entry.map_err(UnpackError::Io)?;
        let path = entry.path().map_err(UnpackError::Io)?.into_owned();
        let shown = crate::logfmt::short(&path.to_string_lossy());
        let refused = |why| UnpackError::Refused { path: shown.clone(), why };
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(refused("climbs out of the context with '..'"));
        }
        if path.components().any(|c| matches!(c, Component::RootDir | Component::Prefix(_))) {
            return Err(refused("is an absolute path"));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory | tar::EntryType::Symlink => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                total = total.saturating_add(entry.size());
                if total > max_bytes {
                    return Err(UnpackError::TooLarge { limit: max_bytes });
                }
            }
            tar::EntryType::Link => return Err(refused("is a hard link: send the file itself")),
            tar::EntryType::GNUSparse => return Err(refused("is a sparse file")),
            // devices, FIFOs: nothing a build can use, as a directory's own are left out
            _ => continue,
        }
        let unpacked = entry.unpack_in(dest).map_err(|e| match e.kind() {
            io::ErrorKind::Other if e.to_string().contains("outside of destination") => {
                refused("goes through a link out of the context")
            }
            _ => UnpackError::Io(e),
        })?;
        if !unpacked {
            return Err(refused("is outside the context"));
        }
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("skiff-unpack-{name}-{}", uuid::Uuid::new_v4().simple()))
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// A tar with these files (path, text), built with the `tar` crate's checks off so that
    /// hostile paths can be written.
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, kind, text) in entries {
            let mut h = header(*kind, if *kind == tar::EntryType::Regular { text.len() as u64 } else { 0 });
            // set the name's bytes directly: `set_path` refuses '..'
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                h.set_link_name(text).expect("link name");
            }
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            if *kind == tar::EntryType::Regular {
                out.extend_from_slice(text.as_bytes());
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    use tar::EntryType::{Directory, Link, Regular, Symlink};

    #[test]
    fn files_directories_and_links_inside_are_unpacked() {
        let d = dir("ok");
        let tar = tar_of(&[
            ("www/", Directory, ""),
            ("www/index.html", Regular, "hello"),
            ("home.html", Symlink, "www/index.html"),
        ]);
        assert_eq!(unpack(&tar[..], &d, 1024).expect("unpacks"), 3);
        assert_eq!(std::fs::read_to_string(d.join("www/index.html")).expect("file"), "hello");
        assert_eq!(std::fs::read_link(d.join("home.html")).expect("link").to_str(), Some("www/index.html"));
        crate::control::best_effort(std::fs::remove_dir_all(&d));
    }

    #[test]
    fn climbing_out_hard_links_and_writing_through_links_are_refused() {
        let base = dir("hostile");
        let outside = base.join("outside");
        std::fs::create_dir_all(&outside).expect("outside");
        let d = base.join("ctx");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar_of(&[("../escape", Regular, "x")]), "'..'"),
            (tar_of(&[("a", Link, "/etc/passwd")]), "hard link"),
            (
                tar_of(&[("out", Symlink, outside.to_str().expect("utf-8")), ("out/planted", Regular, "x")]),
                "through a link",
            ),
        ];
        for (tar, words) in cases {
            let e = unpack(&tar[..], &d, 1024).expect_err(words);
            assert!(e.to_string().contains(words), "{e}");
            crate::control::best_effort(std::fs::remove_dir_all(&d));
        }
        assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0, "nothing written outside");
        crate::control::best_effort(std::fs::remove_dir_all(&base));
    }

    #[test]
    fn the_files_bytes_are_bounded_and_garbage_is_an_error() {
        let d = dir("big");
        let tar = tar_of(&[("a", Regular, "0123456789"), ("b", Regular, "0123456789")]);
        assert!(matches!(unpack(&tar[..], &d, 15), Err(UnpackError::TooLarge { limit: 15 })));
        let e = unpack(&b"this is not a tar at all, but it is long enough to be read as a header"[..], &d, 15);
        assert!(e.is_err());
        crate::control::best_effort(std::fs::remove_dir_all(&d));
    }
}
