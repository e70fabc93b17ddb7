//! The cluster token: where it comes from (`SKIFF_TOKEN` or `--token-file`), how a request proves
//! it has it (`Authorization: Bearer <token>`, compared in constant time), and where a daemon may
//! listen with or without one (safe by default: no token, loopback only).
//!
//! A worker's API starts arbitrary containers: left open, it is remote root on its host. The token
//! never appears in logs or in `Debug` output.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// The environment variable that carries the token.
pub const TOKEN_ENV: &str = "SKIFF_TOKEN";
/// Tokens shorter than this are refused: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// The shared secret of a cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(text: &str) -> Result<Token, String> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(format!("the token must be at least {MIN_TOKEN_LEN} characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        Ok(Token(text.to_string()))
    }

    /// The value of an `Authorization` header carrying it.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header value carries this token. The comparison takes the
    /// same time wherever the first difference is.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        // the scheme is case-insensitive (RFC 7235)
        let Some((scheme, given)) = header.and_then(|h| h.trim().split_once(' ')) else { return false };
        scheme.eq_ignore_ascii_case("bearer") && constant_time_eq(given.trim().as_bytes(), self.0.as_bytes())
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    // keep the optimiser from cutting the loop short
    std::hint::black_box(diff) == 0
}

/// The token from `--token-file` if given, else from `SKIFF_TOKEN`, else none. A token file
/// others may read (group or world bits set) is refused.
pub fn load(file: Option<&Path>, env: Option<String>) -> Result<Option<Token>, String> {
    if let Some(path) = file {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("--token-file {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "--token-file {}: readable by others (mode {mode:04o}); make it private with chmod 600",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("--token-file {}: {e}", path.display()))?;
        return Token::new(&text).map(Some).map_err(|e| format!("--token-file {}: {e}", path.display()));
    }
    match env.filter(|v| !v.trim().is_empty()) {
        Some(v) => Token::new(&v).map(Some).map_err(|e| format!("{TOKEN_ENV}: {e}")),
        None => Ok(None),
    }
}

/// Where a daemon listens: with a token, on all interfaces unless `--bind` narrows it; without
/// one, on loopback only, and a non-loopback `--bind` is refused.
pub fn bind_address(flag: Option<IpAddr>, has_token: bool) -> Result<IpAddr, String> {
    match (flag, has_token) {
        (Some(ip), true) => Ok(ip),
        (None, true) => Ok(IpAddr::from([0, 0, 0, 0])),
        (Some(ip), false) if ip.is_loopback() => Ok(ip),
        (Some(ip), false) => Err(format!(
            "refusing to listen on {ip} without a token: anyone who reaches it could run containers; \
             set {TOKEN_ENV} or --token-file"
        )),
        (None, false) => Ok(IpAddr::from([127, 0, 0, 1])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef-secret";

    #[test]
    fn tokens_are_checked_and_never_shown() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in the middle").is_err());
        let t = Token::new(&format!("  {GOOD}\n")).expect("trimmed");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(t.accepts(Some(&format!("Bearer {GOOD}"))));
        assert!(t.accepts(Some(&format!("bearer {GOOD}"))));
        assert!(!t.accepts(Some(&format!("Basic {GOOD}"))));
        assert!(!t.accepts(Some(&format!("Bearer {GOOD}x"))));
        assert!(!t.accepts(Some(GOOD)));
        assert!(!t.accepts(Some("Bearer ")));
        assert!(!t.accepts(None));
        assert_eq!(t.header_value(), format!("Bearer {GOOD}"));
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_sources() {
        assert_eq!(load(None, None), Ok(None));
        assert_eq!(load(None, Some(" ".into())), Ok(None));
        assert_eq!(load(None, Some(GOOD.into())), Ok(Some(Token(GOOD.into()))));
        assert!(load(None, Some("short".into())).is_err());
        let dir = std::env::temp_dir().join(format!("skiff-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, GOOD).expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load(Some(&file), None).unwrap_err();
        assert!(e.contains("readable by others (mode 0644)"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // the file wins over the environment
        assert_eq!(load(Some(&file), Some("another-token-of-length".into())), Ok(Some(Token(GOOD.into()))));
        assert!(load(Some(&dir.join("missing")), None).is_err());
        crate::control::best_effort(std::fs::remove_dir_all(&dir));
    }

    #[test]
    fn where_to_listen() {
        let any: IpAddr = [0, 0, 0, 0].into();
        let lo: IpAddr = [127, 0, 0, 1].into();
        let lan: IpAddr = [10, 0, 0, 5].into();
        assert_eq!(bind_address(None, true), Ok(any));
        assert_eq!(bind_address(Some(lan), true), Ok(lan));
        assert_eq!(bind_address(None, false), Ok(lo));
        assert_eq!(bind_address(Some(lo), false), Ok(lo));
        assert!(bind_address(Some(lan), false).is_err());
        assert!(bind_address(Some(any), false).is_err());
    }
}
