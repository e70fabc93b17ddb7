//! Sources from git: a repository cloned with the git CLI into a directory and checked out at a
//! ref (a branch, a tag or a commit), for `deploy::context` to make a build context of (which
//! leaves `.git` out).
//!
//! git runs a remote's programs and its own helpers, so what it may do is narrowed first:
//! only `file://`, `https://`, `ssh://` and scp-like `user@host:path` URLs (never a transport
//! helper such as `ext::`, which runs a command), git's own protocol allow-list set to the same,
//! no hooks, no submodules, no prompt (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), a deadline
//! for the whole clone and a bound on the bytes it writes (the process group is killed past
//! either). git's words are kept for the error.
//!
//! Owns the git process; what is built of the directory is for the caller.

use crate::logfmt::short;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds of one clone.
#[derive(Debug, Clone)]
pub struct CloneLimits {
    /// The whole clone and checkout.
    pub deadline: Duration,
    /// Bytes written under the directory (the history and the checked-out tree).
    pub max_bytes: u64,
}

impl Default for CloneLimits {
    fn default() -> CloneLimits {
        CloneLimits { deadline: Duration::from_secs(300), max_bytes: 512 * 1024 * 1024 }
    }
}

/// How much of git's output an error keeps (its end: where git says what went wrong).
const WORDS_KEPT: u64 = 2048;
/// How often a running git is checked for its deadline and its size.
const CHECK_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub enum GitError {
    /// A URL of a kind that is not cloned, or malformed.
    BadUrl {
        url: String,
        why: &'static str,
    },
    /// A ref that is not a branch, tag or commit name.
    BadRef {
        reference: String,
        why: &'static str,
    },
    /// git failed: what it was doing, and its words.
    Failed {
        doing: &'static str,
        words: String,
    },
    /// The ref is not in the repository.
    NoRef {
        reference: String,
    },
    TooLarge {
        limit: u64,
    },
    Deadline(Duration),
    /// git could not be run (not installed?) or watched.
    Io(io::Error),
}

impl fmt::Display for GitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitError::BadUrl { url, why } => write!(f, "the git URL {url:?} {why}"),
            GitError::BadRef { reference, why } => write!(f, "the git ref {reference:?} {why}"),
            GitError::Failed { doing, words } => write!(f, "git {doing} failed: {words}"),
            GitError::NoRef { reference } => {
                write!(f, "the git ref {reference:?} is not a branch, tag or commit of the repository")
            }
            GitError::TooLarge { limit } => {
                write!(f, "the git clone is over its limit of {} MiB", limit / (1024 * 1024))
            }
            GitError::Deadline(limit) => write!(f, "the git clone took longer than its {}s deadline", limit.as_secs()),
            GitError::Io(e) => write!(f, "cannot run git: {e}"),
        }
    }
}

impl std::error::Error for GitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GitError::Io(e) => Some(e),
            _ => None,
        }
    }
}

const KINDS: &str = "is not cloned: only file://, https://, ssh:// and scp-like user@host:path URLs are";

/// Whether `url` is one Skiff clones: `file:///path`, `https://host/…`, `ssh://[user@]host/…` or
/// `user@host:path`. Anything else, a transport helper (`ext::`, `fd::`) above all, is refused.
pub fn check_url(url: &str) -> Result<(), GitError> {
    let bad = |why: &'static str| Err(GitError::BadUrl { url: short(url), why });
    if url.is_empty() || url.len() > 2048 {
        return bad("must be 1 to 2048 characters");
    }
    // a transport helper first: `ext::` runs a command
    if url.contains("::") {
        return bad(KINDS);
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("has spaces or control characters");
    }
    if url.starts_with('-') {
        return bad("starts with '-'");
    }
    let lower = url.to_ascii_lowercase();
    if let Some(path) = lower.strip_prefix("file://") {
        return if path.starts_with('/') { Ok(()) } else { bad("must be file:///an/absolute/path") };
    }
    for scheme in ["https://", "ssh://"] {
        if let Some(rest) = lower.strip_prefix(scheme) {
            let host = rest.split('/').next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or("");
            return if host.is_empty() { bad("has no host") } else { Ok(()) };
        }
    }
    if url.contains("://") || url.contains("::") {
        return bad(KINDS);
    }
    // scp-like: user@host:path, no '/' before the ':' (else git reads a local path)
    let Some((user_host, path)) = url.split_once(':') else { return bad(KINDS) };
    let Some((user, host)) = user_host.split_once('@') else { return bad(KINDS) };
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plain(user) || !plain(host) || host.starts_with('-') || path.is_empty() {
        return bad(KINDS);
    }
    Ok(())
}

/// Whether `reference` can name a branch, a tag or a commit (git's `check-ref-format` rules,
/// roughly, and never an option).
pub fn check_ref(reference: &str) -> Result<(), GitError> {
    let bad = |why: &'static str| Err(GitError::BadRef { reference: short(reference), why });
    if reference.is_empty() || reference.len() > 255 {
        return bad("must be 1 to 255 characters");
    }
    if reference.starts_with('-') || reference.starts_with('/') || reference.ends_with('/') {
        return bad("must not start with '-' or '/', nor end with '/'");
    }
    let refused =
        |c: char| c.is_control() || c.is_whitespace() || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\');
    if reference.chars().any(refused) || reference.contains("..") || reference.contains("@{") {
        return bad("has characters a ref cannot have");
    }
    Ok(())
}

/// Clones `url` into `dest` (which must not exist) and checks out `reference` (the default
/// branch when `None`), detached. Returns the commit checked out.
pub fn clone(url: &str, reference: Option<&str>, dest: &Path, limits: &CloneLimits) -> Result<String, GitError> {
    check_url(url)?;
    if let Some(r) = reference {
        check_ref(r)?;
    }
    let until = Instant::now() + limits.deadline;
    let log = dest.with_extension("git-log");
    let run = |args: &[&str], cwd: Option<&Path>, doing: &'static str| {
        run_git(args, cwd, dest, &log, until, limits).map_err(|e| match e {
            GitError::Failed { words, .. } => GitError::Failed { doing, words },
            e => e,
        })
    };
    let dest_str = dest.to_str().ok_or_else(|| GitError::Io(io::Error::other("a clone path that is not UTF-8")))?;
    let mut args = vec!["clone", "--quiet", "--no-checkout"];
    args.extend(["--", url, dest_str]);
    run(&args, None, "clone")?;
    let commit = match reference {
        None => run(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], Some(dest), "rev-parse")?,
        Some(r) => {
            // a tag or a commit as it is, a branch as the remote's
            let mut found = None;
            for candidate in [format!("{r}^{{commit}}"), format!("refs/remotes/origin/{r}^{{commit}}")] {
                if let Ok(sha) =
                    run(&["rev-parse", "--verify", "--quiet", "--end-of-options", &candidate], Some(dest), "rev-parse")
                {
                    found = Some(sha);
                    break;
                }
            }
            found.ok_or_else(|| GitError::NoRef { reference: short(r) })?
        }
    };
    let commit = commit.trim().to_string();
    if commit.len() < 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(GitError::Failed { doing: "rev-parse", words: short(&commit) });
    }
    run(&["checkout", "--quiet", "--detach", &commit], Some(dest), "checkout")?;
    crate::control::best_effort(std::fs::remove_file(&log));
    Ok(commit)
}

/// Runs one git command with the narrowed configuration, its output to `log`, until it ends,
/// the deadline passes or `watch` grows past the limit. Returns what it printed.
fn run_git(
    args: &[&str],
    cwd: Option<&Path>,
    watch: &Path,
    log: &Path,
    until: Instant,
    limits: &CloneLimits,
) -> Result<String, GitError> {
    let out = File::create(log).map_err(GitError::Io)?;
    let err = out.try_clone().map_err(GitError::Io)?;
    let mut command = Command::new("git");
    for setting in [
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "protocol.allow=never",
        "protocol.file.allow=always",
        "protocol.https.allow=always",
        "protocol.ssh.allow=always",
        "submodule.recurse=false",
        "advice.detachedHead=false",
    ] {
        command.args(["-c", setting]);
    }
    command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // its own process group: a kill reaches ssh and the remote helpers too
        .process_group(0);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let mut child = command.spawn().map_err(GitError::Io)?;
    let kill = |child: &mut std::process::Child| {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on the process group this function started; no memory is touched
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        crate::control::best_effort(child.wait());
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Err(GitError::Io(e));
            }
        }
        if Instant::now() >= until {
            kill(&mut child);
            return Err(GitError::Deadline(limits.deadline));
        }
        if size_over(watch, limits.max_bytes) {
            kill(&mut child);
            return Err(GitError::TooLarge { limit: limits.max_bytes });
        }
        std::thread::sleep(CHECK_EVERY);
    };
    // a command quicker than the first check is measured once it is done
    if status.success() && size_over(watch, limits.max_bytes) {
        return Err(GitError::TooLarge { limit: limits.max_bytes });
    }
    let printed = tail(log).map_err(GitError::Io)?;
    if status.success() {
        Ok(printed)
    } else {
        let words = printed.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        Err(GitError::Failed { doing: "", words: if words.is_empty() { status.to_string() } else { words } })
    }
}

/// The end of a log file, as text.
fn tail(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(WORDS_KEPT)))?;
    let mut bytes = Vec::new();
    file.take(WORDS_KEPT).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether the files under `dir` hold more than `max` bytes (the walk stops once they do).
fn size_over(dir: &Path, max: u64) -> bool {
    let mut total = 0u64;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(items) = std::fs::read_dir(&d) else { continue };
        for item in items.flatten() {
            let Ok(meta) = item.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                dirs.push(item.path());
            } else {
                total += meta.len();
                if total > max {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_kinds_of_url_are_cloned() {
        for ok in [
            "file:///srv/repo",
            "https://example.org/a/b.git",
            "ssh://git@example.org/a/b.git",
            "ssh://example.org:2222/a",
            "git@github.com:owner/repo.git",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::17",
            "http://example.org/a.git",
            "git://example.org/a.git",
            "file://relative/path",
            "/srv/repo",
            "../repo",
            "-uhelp",
            "--upload-pack=touch /tmp/x",
            "https://",
            "host:path",
            "user@-oProxyCommand=x:path",
            "user@host:",
            "",
            "https://example.org/a b",
        ] {
            let e = check_url(bad).expect_err(bad);
            assert!(matches!(e, GitError::BadUrl { .. }), "{bad}: {e}");
        }
        let words = check_url("ext::sh -c x").expect_err("refused").to_string();
        assert!(words.contains("only file://, https://, ssh://"), "{words}");
    }

    #[test]
    fn refs_are_names_not_options() {
        for ok in ["main", "v1.2.0", "feature/x", "0123abcd", "refs/tags/v1"] {
            assert!(check_ref(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-b", "--upload-pack=x", "a..b", "a b", "a^", "a~1", "a:b", "@{-1}", "/x", "x/"] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
    }

    /// `git` in `dir`, as a test's repository is made.
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
    fn a_local_repository_is_cloned_at_a_branch_a_tag_or_a_commit() {
        let base = std::env::temp_dir().join(format!("skiff-git-{}", uuid::Uuid::new_v4().simple()));
        let repo = base.join("repo");
        std::fs::create_dir_all(&repo).expect("repo dir");
        git(&repo, &["init", "--quiet"]);
        std::fs::write(repo.join("f"), "one").expect("file");
        git(&repo, &["add", "f"]);
        git(&repo, &["commit", "--quiet", "-m", "one"]);
        let first = git(&repo, &["rev-parse", "HEAD"]);
        git(&repo, &["tag", "v1"]);
        git(&repo, &["checkout", "--quiet", "-b", "next"]);
        std::fs::write(repo.join("f"), "two").expect("file");
        git(&repo, &["commit", "--quiet", "-am", "two"]);
        git(&repo, &["checkout", "--quiet", "main"]);
        let url = format!("file://{}", repo.display());
        let limits = CloneLimits::default();
        for (i, (reference, want)) in
            [(None, "one"), (Some("v1"), "one"), (Some("next"), "two"), (Some(&first[..12]), "one")].iter().enumerate()
        {
            let dest = base.join(format!("clone{i}"));
            let commit = clone(&url, *reference, &dest, &limits).unwrap_or_else(|e| panic!("{reference:?}: {e}"));
            assert_eq!(commit.len(), 40);
            assert_eq!(std::fs::read_to_string(dest.join("f")).expect("checked out"), *want, "{reference:?}");
        }
        let missing = clone(&url, Some("nope"), &base.join("missing"), &limits).expect_err("no such ref");
        assert!(matches!(missing, GitError::NoRef { .. }), "{missing}");
        let gone = format!("file://{}", base.join("absent").display());
        let e = clone(&gone, None, &base.join("absent-clone"), &limits).expect_err("no repository");
        let words = e.to_string();
        assert!(
            words.starts_with("git clone failed: ") && words.contains("does not appear to be a git repository"),
            "{words}"
        );
        let small = CloneLimits { max_bytes: 10, ..CloneLimits::default() };
        let e = clone(&url, None, &base.join("small"), &small).expect_err("over its size");
        assert!(matches!(e, GitError::TooLarge { .. }), "{e}");
        crate::control::best_effort(std::fs::remove_dir_all(&base));
    }

    #[test]
    fn the_walk_stops_past_the_limit() {
        let dir = std::env::temp_dir().join(format!("skiff-git-size-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("a/b")).expect("dirs");
        std::fs::write(dir.join("a/one"), vec![0u8; 600]).expect("file");
        std::fs::write(dir.join("a/b/two"), vec![0u8; 600]).expect("file");
        assert!(!size_over(&dir, 1200));
        assert!(size_over(&dir, 1199));
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }
}
