//! The build context: a local directory read as `POST /build` takes it, a tar. Honours the
//! directory's `.dockerignore` (`deploy::ignore`), always leaves out `.git` (at every depth:
//! submodules too), adds the generated Dockerfile when the source has none, and is bounded.
//!
//! Files are archived as the Docker CLI does: owned by root (uid and gid 0), with their mode and
//! modification time; symbolic links as links, never followed, and refused when they point
//! outside the directory (an absolute target, or one climbing above the root); sockets, FIFOs and
//! devices are left out. `.dockerignore` and the Dockerfile (the named one, else the root's) are
//! sent even when excluded, as the CLI does. The size counted against the limit is the tar's: 512 bytes of header per entry
//! and each file's bytes rounded up to 512.
//!
//! Owns the walk and the tar; what to build is `deploy::detect`.

use super::detect::{self, BuildConfig, DetectError, Listing, Plan, GENERATED_DOCKERFILE, MAX_READ, READ_FILES};
use super::ignore::{Ignore, IgnoreError};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The largest context sent when nothing else is configured.
pub const DEFAULT_MAX_CONTEXT: u64 = 100 * 1024 * 1024;
const BLOCK: u64 = 512;
const LARGEST_SHOWN: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextOptions {
    /// The largest tar sent, in bytes.
    pub max_bytes: u64,
    /// The Dockerfile named by the user, relative to the directory.
    pub dockerfile: Option<String>,
}

impl Default for ContextOptions {
    fn default() -> ContextOptions {
        ContextOptions { max_bytes: DEFAULT_MAX_CONTEXT, dockerfile: None }
    }
}

#[derive(Debug)]
pub enum ContextError {
    /// Nothing at the source's path.
    Missing(PathBuf),
    NotADirectory(PathBuf),
    Io {
        path: PathBuf,
        source: io::Error,
    },
    Ignore(IgnoreError),
    /// Over the limit: how much was counted when it was passed, and the largest files seen.
    TooLarge {
        limit: u64,
        at_least: u64,
        largest: Vec<(String, u64)>,
    },
    SymlinkEscape {
        path: String,
        target: String,
    },
    NotUtf8(PathBuf),
    /// A file shrank between the walk and its archiving.
    Changed(String),
    Detect(DetectError),
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::Missing(p) => write!(f, "there is no source directory at {}", p.display()),
            ContextError::NotADirectory(p) => write!(f, "the source {} is not a directory", p.display()),
            ContextError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            ContextError::Ignore(e) => e.fmt(f),
            ContextError::TooLarge { limit, at_least, largest } => {
                write!(f, "the build context is over its limit of {} (at least {})", human(*limit), human(*at_least))?;
                if !largest.is_empty() {
                    let shown: Vec<String> = largest.iter().map(|(p, n)| format!("{p} ({})", human(*n))).collect();
                    write!(f, "; the largest files: {}", shown.join(", "))?;
                }
                f.write_str("; leave files out with .dockerignore")
            }
            ContextError::SymlinkEscape { path, target } => write!(
                f,
                "the symbolic link {path} -> {target} points outside the source directory: \
                 make it relative and inside, or leave it out with .dockerignore"
            ),
            ContextError::NotUtf8(p) => write!(f, "the file name {} is not UTF-8", p.display()),
            ContextError::Changed(p) => write!(f, "{p} changed while the build context was written"),
            ContextError::Detect(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ContextError::Io { source, .. } => Some(source),
            ContextError::Ignore(e) => Some(e),
            ContextError::Detect(e) => Some(e),
            _ => None,
        }
    }
}

/// `1.5 MiB`, `12 KiB`, `300 B`.
fn human(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: String },
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: Kind,
    mode: u32,
    mtime: u64,
}

/// A directory walked: what its context holds, in order, not yet read.
#[derive(Debug)]
pub struct Source {
    root: PathBuf,
    entries: Vec<Entry>,
    tar_bytes: u64,
    max_bytes: u64,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io { path: path.to_path_buf(), source }
}

/// The tar's size for one entry.
fn tar_size(kind: &Kind) -> u64 {
    match kind {
        Kind::File { size } => BLOCK + size.div_ceil(BLOCK) * BLOCK,
        _ => BLOCK,
    }
}

impl Source {
    /// Walks `dir`, applying its `.dockerignore`, and refuses it when over `max_bytes`.
    pub fn scan(dir: &Path, opts: &ContextOptions) -> Result<Source, ContextError> {
        let root = fs::canonicalize(dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContextError::Missing(dir.to_path_buf()),
            _ => io_error(dir)(e),
        })?;
        if !fs::metadata(&root).map_err(io_error(&root))?.is_dir() {
            return Err(ContextError::NotADirectory(dir.to_path_buf()));
        }
        let ignore_path = root.join(".dockerignore");
        let ignore = match fs::read_to_string(&ignore_path) {
            Ok(text) => Ignore::parse(&text).map_err(ContextError::Ignore)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(io_error(&ignore_path)(e)),
        };
        let dockerfile = opts.dockerfile.as_deref().map(|d| d.trim_start_matches("./").to_string());
        let mut source =
            Source { root: root.clone(), entries: Vec::new(), tar_bytes: 2 * BLOCK, max_bytes: opts.max_bytes };
        let mut largest: Vec<(String, u64)> = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(prefix) = dirs.pop() {
            let abs = if prefix.is_empty() { root.clone() } else { root.join(&prefix) };
            let mut names = Vec::new();
            for item in fs::read_dir(&abs).map_err(io_error(&abs))? {
                let item = item.map_err(io_error(&abs))?;
                let name = item.file_name().into_string().map_err(|_| ContextError::NotUtf8(item.path()))?;
                names.push(name);
            }
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                if name == ".git" {
                    continue;
                }
                let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                let abs_path = root.join(&path);
                let meta = fs::symlink_metadata(&abs_path).map_err(io_error(&abs_path))?;
                let forced = path == ".dockerignore"
                    || match dockerfile.as_deref() {
                        Some(named) => named == path,
                        None => path == "Dockerfile" || path == "dockerfile",
                    };
                let excluded = !forced && ignore.excludes(&path);
                let kind = if meta.is_dir() {
                    let holds_dockerfile = dockerfile.as_deref().is_some_and(|d| d.starts_with(&format!("{path}/")));
                    if !excluded || ignore.has_exceptions() || holds_dockerfile {
                        subdirs.push(path.clone());
                    }
                    Kind::Dir
                } else if meta.file_type().is_symlink() {
                    let target = fs::read_link(&abs_path).map_err(io_error(&abs_path))?;
                    let target = target.into_os_string().into_string().map_err(|_| ContextError::NotUtf8(abs_path))?;
                    Kind::Symlink { target }
                } else if meta.is_file() {
                    Kind::File { size: meta.len() }
                } else {
                    continue;
                };
                if excluded {
                    continue;
                }
                if let Kind::Symlink { target } = &kind {
                    if resolve_link(&path, target).is_none() {
                        return Err(ContextError::SymlinkEscape { path, target: target.clone() });
                    }
                }
                if let Kind::File { size } = kind {
                    largest.push((path.clone(), size));
                    largest.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
                    largest.truncate(LARGEST_SHOWN);
                }
                source.tar_bytes += tar_size(&kind);
                if source.tar_bytes > opts.max_bytes {
                    return Err(ContextError::TooLarge { limit: opts.max_bytes, at_least: source.tar_bytes, largest });
                }
                let mode = meta.permissions().mode() & 0o7777;
                source.entries.push(Entry { path, kind, mode, mtime: meta.mtime().max(0) as u64 });
            }
            // depth first, in name order
            dirs.extend(subdirs.into_iter().rev());
        }
        Ok(source)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The paths of the files and links the context holds (directories are implied).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(|e| e.kind != Kind::Dir).map(|e| e.path.as_str())
    }

    /// The tar's size as counted against the limit.
    pub fn tar_bytes(&self) -> u64 {
        self.tar_bytes
    }

    /// What detection needs: the paths, and the text of `READ_FILES` (a link to one inside the
    /// context is read through).
    pub fn listing(&self) -> Result<Listing, ContextError> {
        let mut listing = Listing::new(self.paths());
        for name in READ_FILES {
            let Some(mut entry) = self.entries.iter().find(|e| e.path == name) else { continue };
            if let Kind::Symlink { target } = &entry.kind {
                let resolved = resolve_link(&entry.path, target);
                match self.entries.iter().find(|e| Some(&e.path) == resolved.as_ref()) {
                    Some(linked) => entry = linked,
                    None => continue,
                }
            }
            let Kind::File { size } = entry.kind else { continue };
            if size > MAX_READ {
                let why = format!("over {} (a manifest, not data, is expected here)", human(MAX_READ));
                return Err(ContextError::Detect(DetectError::BadFile { path: name.to_string(), why }));
            }
            let path = self.root.join(&entry.path);
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            listing.contents.insert(name.to_string(), String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(listing)
    }

    /// Writes the context as a tar to `out`, with `extra` (a path and its text: the generated
    /// Dockerfile) after the source's files. Returns the bytes written.
    pub fn write_tar<W: Write>(&self, out: W, extra: Option<(&str, &str)>) -> Result<u64, ContextError> {
        let mut builder = tar::Builder::new(Counting { inner: out, count: 0 });
        for entry in &self.entries {
            let abs = self.root.join(&entry.path);
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(entry.mtime);
            let written = match &entry.kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder.append_data(&mut header, &entry.path, io::empty())
                }
                Kind::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, &entry.path, target)
                }
                Kind::File { size } => {
                    let file = fs::File::open(&abs).map_err(io_error(&abs))?;
                    if file.metadata().map_err(io_error(&abs))?.len() < *size {
                        return Err(ContextError::Changed(entry.path.clone()));
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(*size);
                    let exact = Exact { inner: file.take(*size), left: *size };
                    builder.append_data(&mut header, &entry.path, exact)
                }
            };
            written.map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ContextError::Changed(entry.path.clone()),
                _ => io_error(&abs)(e),
            })?;
            self.check_size(builder.get_ref().count)?;
        }
        if let Some((path, text)) = extra {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(text.len() as u64);
            builder.append_data(&mut header, path, text.as_bytes()).map_err(io_error(Path::new(path)))?;
        }
        let counting = builder.into_inner().map_err(io_error(&self.root))?;
        self.check_size(counting.count)?;
        Ok(counting.count)
    }

    fn check_size(&self, count: u64) -> Result<(), ContextError> {
        if count > self.max_bytes {
            return Err(ContextError::TooLarge { limit: self.max_bytes, at_least: count, largest: Vec::new() });
        }
        Ok(())
    }
}

/// Where a link at `path` pointing to `target` lands, relative to the root, or `None` when it
/// leaves the root (an absolute target, or `..` above it).
fn resolve_link(path: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// A writer that counts what it passes on.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file's bytes, exactly as many as its header says: ending early is an error, not a short
/// (corrupt) tar entry.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A source and what to build from it, ready to be sent.
#[derive(Debug)]
pub struct Context {
    pub source: Source,
    pub plan: Plan,
}

impl Context {
    /// Walks `dir` and decides what to build.
    pub fn prepare(dir: &Path, opts: &ContextOptions, config: &BuildConfig) -> Result<Context, ContextError> {
        let source = Source::scan(dir, opts)?;
        let listing = source.listing()?;
        let plan = detect::detect(&listing, opts.dockerfile.as_deref(), config).map_err(ContextError::Detect)?;
        Ok(Context { source, plan })
    }

    /// The tar, with the generated Dockerfile if there is one.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<u64, ContextError> {
        let extra = self.plan.generated.as_deref().map(|text| (GENERATED_DOCKERFILE, text));
        self.source.write_tar(out, extra)
    }

    /// The tar in memory (it is at most the configured limit).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ContextError> {
        let mut bytes = Vec::with_capacity(self.source.tar_bytes.min(self.source.max_bytes) as usize + 4096);
        self.write_tar(&mut bytes)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::detect::Language;
    use std::collections::BTreeMap;
    use std::os::unix::fs::symlink;

    /// A directory under the target's temporary folder, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(files: &[(&str, &str)]) -> Dir {
            let path = std::env::temp_dir().join(format!("skiff-context-{}", uuid::Uuid::new_v4().simple()));
            for (name, text) in files {
                let file = path.join(name);
                fs::create_dir_all(file.parent().unwrap()).unwrap();
                fs::write(file, text).unwrap();
            }
            fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            crate::control::best_effort(fs::remove_dir_all(&self.0));
        }
    }

    /// The tar's entries: path → (type, contents or link target, mode, uid).
    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, String, u32, u64)> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let header = entry.header().clone();
            let mut text = String::new();
            match header.entry_type() {
                tar::EntryType::Symlink => text = entry.link_name().unwrap().unwrap().display().to_string(),
                _ => drop(entry.read_to_string(&mut text)),
            }
            out.insert(path, (header.entry_type(), text, header.mode().unwrap(), header.uid().unwrap()));
        }
        out
    }

    fn tar_of(dir: &Dir, opts: &ContextOptions) -> BTreeMap<String, (tar::EntryType, String, u32, u64)> {
        let source = Source::scan(&dir.0, opts).unwrap();
        let mut bytes = Vec::new();
        let n = source.write_tar(&mut bytes, Some(("Dockerfile.skiff", "FROM x\n"))).unwrap();
        assert_eq!(n, bytes.len() as u64);
        assert!(n <= source.tar_bytes() + 2048, "the estimate is close: {n} vs {}", source.tar_bytes());
        entries(&bytes)
    }

    #[test]
    fn dockerignore_and_git_are_honoured() {
        let dir = Dir::new(&[
            (".dockerignore", "# build output\n*.log\nsecrets\n!secrets/public.txt\nnode_modules\n.dockerignore\n"),
            ("index.html", "<p>hi</p>"),
            ("debug.log", "noise"),
            ("sub/keep.log", "kept: *.log is the root only"),
            ("secrets/key.pem", "private"),
            ("secrets/public.txt", "public"),
            ("node_modules/a/index.js", "dep"),
            (".git/HEAD", "ref: refs/heads/main"),
            ("vendor/lib/.git", "gitdir: ../../.git/modules/lib"),
            ("vendor/lib/x.c", "int x;"),
        ]);
        let got = tar_of(&dir, &ContextOptions::default());
        let paths: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                ".dockerignore",
                "Dockerfile.skiff",
                "index.html",
                "secrets/public.txt",
                "sub",
                "sub/keep.log",
                "vendor",
                "vendor/lib",
                "vendor/lib/x.c"
            ]
        );
        assert_eq!(got["index.html"].1, "<p>hi</p>");
        assert_eq!(got["Dockerfile.skiff"].1, "FROM x\n");
        assert_eq!(got["sub"].0, tar::EntryType::Directory);
        assert!(got.values().all(|e| e.3 == 0), "owned by root");
    }

    #[test]
    fn modes_long_names_and_links() {
        let long = format!("{}/{}.txt", "d".repeat(80), "n".repeat(90));
        let dir = Dir::new(&[("run.sh", "#!/bin/sh\n"), (long.as_str(), "deep"), ("data/real.txt", "real")]);
        fs::set_permissions(dir.0.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("data/real.txt", dir.0.join("link.txt")).unwrap();
        symlink("../real.txt", dir.0.join("data/up.txt")).unwrap();
        let got = tar_of(&dir, &ContextOptions::default());
        assert_eq!(got["run.sh"].2 & 0o777, 0o755);
        assert_eq!(got[&long].1, "deep");
        assert_eq!((got["link.txt"].0, got["link.txt"].1.as_str()), (tar::EntryType::Symlink, "data/real.txt"));
        assert!(got.contains_key("data/up.txt"));
    }

    #[test]
    fn links_outside_are_refused() {
        for target in ["/etc/passwd", "../outside", "sub/../../x"] {
            let dir = Dir::new(&[("sub/a", "a")]);
            symlink(target, dir.0.join("escape")).unwrap();
            let e = Source::scan(&dir.0, &ContextOptions::default()).unwrap_err();
            assert!(matches!(e, ContextError::SymlinkEscape { .. }), "{target}: {e}");
            assert!(e.to_string().contains("outside the source directory"), "{e}");
        }
        // excluded, it is no longer a problem
        let dir = Dir::new(&[(".dockerignore", "escape\n")]);
        symlink("/etc", dir.0.join("escape")).unwrap();
        assert!(Source::scan(&dir.0, &ContextOptions::default()).is_ok());
        assert_eq!(resolve_link("a/b/l", "../c"), Some("a/c".into()));
        assert_eq!(resolve_link("l", "./x/./y"), Some("x/y".into()));
        assert_eq!(resolve_link("a/l", "../../x"), None);
    }

    #[test]
    fn the_size_is_bounded() {
        let big = "x".repeat(40_000);
        let dir = Dir::new(&[("big.bin", big.as_str()), ("small.txt", "s"), ("mid.bin", &big[..20_000])]);
        let opts = ContextOptions { max_bytes: 50_000, dockerfile: None };
        let e = Source::scan(&dir.0, &opts).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ContextError::TooLarge { limit: 50_000, .. }), "{text}");
        assert!(text.contains("limit of 48 KiB") && text.contains("big.bin (39 KiB)"), "{text}");
        assert!(text.contains(".dockerignore"), "{text}");
        // leaving the big file out brings it under the limit
        fs::write(dir.0.join(".dockerignore"), "big.bin\n").unwrap();
        let source = Source::scan(&dir.0, &opts).unwrap();
        assert!(source.tar_bytes() < 50_000);
        assert!(!source.paths().any(|p| p == "big.bin"));
    }

    #[test]
    fn a_named_dockerfile_and_the_ignore_file_always_go() {
        let dir = Dir::new(&[
            (".dockerignore", "deploy\n*.Dockerfile\n"),
            ("deploy/web.Dockerfile", "FROM scratch\n"),
            ("deploy/other", "o"),
        ]);
        let opts = ContextOptions { dockerfile: Some("./deploy/web.Dockerfile".into()), ..ContextOptions::default() };
        let source = Source::scan(&dir.0, &opts).unwrap();
        let paths: Vec<&str> = source.paths().collect();
        assert_eq!(paths, [".dockerignore", "deploy/web.Dockerfile"]);
        // unnamed, the root's Dockerfile is the one that goes
        let dir = Dir::new(&[
            (".dockerignore", "Dockerfile\nDockerfile.dev\n"),
            ("Dockerfile", "x"),
            ("Dockerfile.dev", "y"),
        ]);
        let source = Source::scan(&dir.0, &ContextOptions::default()).unwrap();
        assert_eq!(source.paths().collect::<Vec<_>>(), [".dockerignore", "Dockerfile"]);
    }

    #[test]
    fn prepare_detects_and_adds_the_generated_dockerfile() {
        let dir = Dir::new(&[
            ("package.json", r#"{"scripts":{"start":"node s.js"}}"#),
            ("s.js", "x"),
            ("Procfile", "web: node s.js --port $PORT\n"),
        ]);
        let context = Context::prepare(&dir.0, &ContextOptions::default(), &BuildConfig::default()).unwrap();
        assert_eq!(context.plan.language, Language::Node);
        assert_eq!(context.plan.start.as_deref(), Some("node s.js --port $PORT"));
        let got = entries(&context.to_bytes().unwrap());
        assert_eq!(&got["Dockerfile.skiff"].1, context.plan.generated.as_ref().unwrap());

        let own = Dir::new(&[("Dockerfile", "FROM scratch\n"), ("index.html", "x")]);
        let context = Context::prepare(&own.0, &ContextOptions::default(), &BuildConfig::default()).unwrap();
        assert_eq!(context.plan.language, Language::Dockerfile);
        assert!(!entries(&context.to_bytes().unwrap()).contains_key("Dockerfile.skiff"));

        let nothing = Dir::new(&[("notes.txt", "x"), (".dockerignore", "index.html\n"), ("index.html", "x")]);
        let e = Context::prepare(&nothing.0, &ContextOptions::default(), &BuildConfig::default()).unwrap_err();
        assert!(e.to_string().starts_with("nothing to build"), "{e}");
    }

    #[test]
    fn bad_input_is_named() {
        let e = Source::scan(Path::new("/nonexistent/skiff"), &ContextOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "there is no source directory at /nonexistent/skiff");
        let dir = Dir::new(&[("file", "x"), (".dockerignore", "[oops\n")]);
        let e = Source::scan(&dir.0.join("file"), &ContextOptions::default()).unwrap_err();
        assert!(matches!(e, ContextError::NotADirectory(_)), "{e}");
        let e = Source::scan(&dir.0, &ContextOptions::default()).unwrap_err();
        assert!(e.to_string().contains(".dockerignore line 1"), "{e}");
        let huge = Dir::new(&[("package.json", &" ".repeat(MAX_READ as usize + 1))]);
        let e = Context::prepare(&huge.0, &ContextOptions::default(), &BuildConfig::default()).unwrap_err();
        assert!(e.to_string().contains("package.json: over 256 KiB"), "{e}");
    }
}
