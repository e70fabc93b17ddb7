//! The manager's dashboard: one page (`/`), its script (`/dashboard.js`) and its style sheet
//! (`/dashboard.css`), embedded in the binary, and how they are answered: their types, a strong
//! `ETag` (so a reload costs a 304), `Cache-Control: no-cache` (a new binary's page is seen at
//! once), and a Content-Security-Policy that lets the page load nothing but these three files
//! and talk to nothing but this manager.
//!
//! The page holds no data: everything it shows it asks the API for, with the cluster token the
//! person gives it (so the assets are served without the token). Must not know the API's
//! domain types: the script reads the JSON the routes document.

use crate::http::{Request, Response};

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// Nothing but this origin, no inline script or style, no frames, no plugins; `data:` images
/// only for the empty favicon (so the browser does not ask `/favicon.ico`, which needs the token).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One of the dashboard's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Page,
    Script,
    Style,
}

impl Asset {
    pub const ALL: [Asset; 3] = [Asset::Page, Asset::Script, Asset::Style];

    /// Where it is served.
    pub fn path(self) -> &'static str {
        match self {
            Asset::Page => "/",
            Asset::Script => "/dashboard.js",
            Asset::Style => "/dashboard.css",
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Asset::Page => PAGE,
            Asset::Script => SCRIPT,
            Asset::Style => STYLE,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Asset::Page => "text/html; charset=utf-8",
            Asset::Script => "text/javascript; charset=utf-8",
            Asset::Style => "text/css; charset=utf-8",
        }
    }

    /// A strong validator: the file's FNV-1a hash, computed at compile time.
    pub fn etag(self) -> String {
        const HASHES: [u64; 3] = [fnv1a(PAGE.as_bytes()), fnv1a(SCRIPT.as_bytes()), fnv1a(STYLE.as_bytes())];
        format!("\"{:016x}\"", HASHES[self as usize])
    }
}

/// 64-bit FNV-1a: enough to tell two versions of a file apart, and a `const fn`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Whether an `If-None-Match` value names this `etag` (or is `*`); weak tags compare by their
/// opaque part, as RFC 9110 says a GET's weak comparison does.
fn matches(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(list) = if_none_match else { return false };
    list.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The answer to `GET` (or `HEAD`) of an asset: 200 with the file, or 304 when the browser's
/// copy is current; both with the validator and the security headers.
pub fn serve(asset: Asset, req: &Request) -> Response {
    let etag = asset.etag();
    let resp = if matches(req.header("if-none-match"), &etag) {
        Response::bytes(304, asset.content_type(), Vec::new())
    } else {
        Response::bytes(200, asset.content_type(), asset.body().as_bytes().to_vec())
    };
    resp.with_header("ETag", &etag)
        .with_header("Cache-Control", "no-cache")
        .with_header("Content-Security-Policy", CSP)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, if_none_match: Option<&str>) -> Request {
        let mut headers = Vec::new();
        if let Some(v) = if_none_match {
            headers.push(("If-None-Match".to_string(), v.to_string()));
        }
        Request {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
            headers,
            body: Vec::new(),
            remote: None,
            spooled: None,
        }
    }

    fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
        resp.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn assets_are_served_with_their_type_validator_and_policy() {
        for asset in Asset::ALL {
            let resp = serve(asset, &get(asset.path(), None));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.bytes_of(), asset.body().as_bytes());
            assert_eq!(resp.content_type, asset.content_type());
            assert_eq!(header(&resp, "Cache-Control"), Some("no-cache"));
            assert_eq!(header(&resp, "Content-Security-Policy"), Some(CSP));
            let etag = header(&resp, "ETag").expect("an ETag").to_string();
            assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18, "{etag}");

            let again = serve(asset, &get(asset.path(), Some(&etag)));
            assert_eq!(again.status, 304, "{asset:?}: the browser's copy is current");
            assert!(again.bytes_of().is_empty());
            assert_eq!(header(&again, "ETag"), Some(etag.as_str()));
            let listed = format!("\"0000000000000000\", W/{etag}");
            assert_eq!(serve(asset, &get(asset.path(), Some(&listed))).status, 304, "one of a list, weak");
            assert_eq!(serve(asset, &get(asset.path(), Some("*"))).status, 304);
            assert_eq!(serve(asset, &get(asset.path(), Some("\"stale\""))).status, 200, "another version");
        }
        let tags: std::collections::BTreeSet<String> = Asset::ALL.iter().map(|a| a.etag()).collect();
        assert_eq!(tags.len(), 3, "each file has its own validator");
    }

    #[test]
    fn the_policy_forbids_inline_code_and_other_origins() {
        assert!(CSP.starts_with("default-src 'none';"));
        assert!(!CSP.contains("unsafe") && !CSP.contains("http") && !CSP.contains('*'), "{CSP}");
        // the page loads its script and style from their own routes, and nothing inline
        let page = Asset::Page.body();
        assert!(page.contains(r#"<script src="/dashboard.js" defer></script>"#));
        assert!(page.contains(r#"<link rel="stylesheet" href="/dashboard.css">"#));
        assert_eq!(page.matches("<script").count(), 1, "no inline script");
        assert!(!page.contains("<style") && !page.contains(" style="), "no inline style");
        let handler = page.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "an inline handler: on{}", handler.unwrap_or_default());
        // no other origin: the one URL the script builds is a link to a task's published port
        assert!(!page.contains("://") && !Asset::Style.body().contains("://"));
        assert_eq!(Asset::Script.body().matches("://").count(), 1, "only the port links' http://");
    }

    #[test]
    fn the_page_stays_small() {
        let total: usize = Asset::ALL.iter().map(|a| a.body().len()).sum();
        assert!(total < 60 * 1024, "the dashboard is {total} bytes; the budget is 60 KiB");
    }
}
