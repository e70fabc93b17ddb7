//! `.dockerignore` as the Docker CLI reads it: which paths of a source directory stay out of a
//! build context. Pure: text in, a matcher out; the walk that asks it is `deploy::context`.
//!
//! The subset supported (docs/deploy.md repeats it):
//! - one pattern a line; a line whose first character is `#` is a comment; whitespace around a
//!   pattern is trimmed; empty lines are skipped; a UTF-8 byte-order mark on the first line too;
//! - a pattern is cleaned as a path (`./a/` is `a`, `a//b` is `a/b`, `a/../b` is `b`) and a leading
//!   `/` dropped: patterns are relative to the context's root, and `.` is ignored, as Docker does;
//! - `*` matches any run of characters but `/`, `?` one character but `/`, `[abc]`, `[a-z]` and
//!   `[^a-z]` one character of a class (never `/`), `\x` the character `x`;
//! - `**` matches any number of directories, none included (`**/*.log`, `a/**/b`), and at the
//!   end of a pattern everything below (`build/**`);
//! - a pattern matches a path or any of its parent directories (`node_modules` leaves out all
//!   below it); `!pattern` brings back what an earlier pattern left out; the last match wins.
//!
//! Unlike `.gitignore`, a pattern without a `/` does not match at every depth: `*.log` is
//! `a.log` at the root only, `**/*.log` is every one.

use std::fmt;

/// A `.dockerignore` line that is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreError {
    pub line: usize,
    pub pattern: String,
    pub why: &'static str,
}

impl fmt::Display for IgnoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ".dockerignore line {}: {:?} is not a pattern: {}", self.line, self.pattern, self.why)
    }
}

impl std::error::Error for IgnoreError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` (and its `/`) before more of the pattern: zero or more whole directories.
    Dirs,
    /// `**` at the end: anything.
    Rest,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    tokens: Vec<Token>,
    exception: bool,
}

/// The patterns of one `.dockerignore`, in order.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Reads a `.dockerignore`'s text.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            let cleaned = clean(pattern);
            if cleaned.is_empty() || cleaned == "." {
                continue;
            }
            let tokens =
                compile(&cleaned).map_err(|why| IgnoreError { line: i + 1, pattern: raw.trim().to_string(), why })?;
            rules.push(Rule { tokens, exception });
        }
        Ok(Ignore { rules })
    }

    /// True when some `!` pattern exists: an excluded directory may then hold included files,
    /// and the walk must look inside it.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// True when `path` (relative to the root, `/`-separated, no leading `/`) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        let text: Vec<char> = path.chars().collect();
        let parents: Vec<usize> = text.iter().enumerate().filter(|(_, c)| **c == '/').map(|(i, _)| i).collect();
        let mut excluded = false;
        for rule in &self.rules {
            // an exclusion cannot change a path not yet excluded, nor a pattern one already so
            if rule.exception != excluded {
                continue;
            }
            let matched =
                matches(&rule.tokens, &text) || parents.iter().any(|&end| matches(&rule.tokens, &text[..end]));
            if matched {
                excluded = !rule.exception;
            }
        }
        excluded
    }
}

/// A path cleaned as Go's `filepath.Clean` does, then made relative to the root.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if pattern.starts_with('/') => {}
            other => parts.push(other),
        }
    }
    if parts.is_empty() && !pattern.starts_with('/') {
        return ".".to_string();
    }
    parts.join("/")
}

fn compile(pattern: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() { Token::Rest } else { Token::Dirs });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => {
                i += 1;
                let c = *chars.get(i).ok_or("it ends with a lone backslash")?;
                tokens.push(Token::Char(c));
            }
            '[' => {
                let (token, next) = class(&chars, i + 1)?;
                tokens.push(token);
                i = next;
                continue;
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

/// A character class starting just after its `[`: the token and the index after its `]`.
fn class(chars: &[char], mut i: usize) -> Result<(Token, usize), &'static str> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let one = |i: &mut usize| -> Result<char, &'static str> {
        let c = *chars.get(*i).ok_or("a [ is not closed")?;
        *i += 1;
        match c {
            '\\' => {
                let e = *chars.get(*i).ok_or("a [ is not closed")?;
                *i += 1;
                Ok(e)
            }
            '-' | ']' => Err("a class has a - or ] where a character belongs (escape it with \\)"),
            c => Ok(c),
        }
    };
    loop {
        if chars.get(i) == Some(&']') {
            if ranges.is_empty() {
                return Err("a class is empty");
            }
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let low = one(&mut i)?;
        let high = if chars.get(i) == Some(&'-') {
            i += 1;
            one(&mut i)?
        } else {
            low
        };
        if high < low {
            return Err("a range in a class runs backwards");
        }
        ranges.push((low, high));
    }
}

/// Whether `tokens` match the whole of `text`: the positions reachable after each token, kept
/// as a set, so no pattern can make matching exponential.
fn matches(tokens: &[Token], text: &[char]) -> bool {
    let n = text.len();
    let mut states = vec![false; n + 1];
    states[0] = true;
    for token in tokens {
        let mut next = vec![false; n + 1];
        match token {
            Token::Char(c) => (0..n).for_each(|i| next[i + 1] = states[i] && text[i] == *c),
            Token::One => (0..n).for_each(|i| next[i + 1] = states[i] && text[i] != '/'),
            Token::Class { negated, ranges } => (0..n).for_each(|i| {
                let c = text[i];
                let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
                next[i + 1] = states[i] && c != '/' && inside != *negated;
            }),
            Token::Star => {
                next[0] = states[0];
                for i in 1..=n {
                    next[i] = states[i] || (next[i - 1] && text[i - 1] != '/');
                }
            }
            Token::Rest => {
                next[0] = states[0];
                for i in 1..=n {
                    next[i] = states[i] || next[i - 1];
                }
            }
            Token::Dirs => {
                // `(.*/)?`: stay, or skip to just after any later `/`
                let mut seen = false;
                for i in 0..=n {
                    next[i] = states[i] || (seen && i > 0 && text[i - 1] == '/');
                    seen |= states[i];
                }
            }
        }
        if !next.iter().any(|s| *s) {
            return false;
        }
        states = next;
    }
    states[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn patterns_and_paths() {
        // (patterns, path, left out)
        let cases: &[(&str, &str, bool)] = &[
            ("*.log", "a.log", true),
            ("*.log", "sub/a.log", false),
            ("**/*.log", "sub/deep/a.log", true),
            ("**/*.log", "a.log", true),
            ("node_modules", "node_modules/x/y.js", true),
            ("node_modules", "src/node_modules/y.js", false),
            ("/build/", "build/out.bin", true),
            ("./build", "build", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("build/**", "build/x/y", true),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("[a-c].md", "b.md", true),
            ("[a-c].md", "d.md", false),
            ("[^a-c].md", "d.md", true),
            ("x[^a]y", "x/y", false),
            ("a*", "a/b", true),
            ("*", "anything/at/all", true),
            ("\\*.md", "*.md", true),
            ("\\*.md", "a.md", false),
            ("a/../b", "b", true),
            ("# comment", "# comment", false),
            (" spaced.txt  ", "spaced.txt", true),
            (".", "x", false),
            ("docs\n!docs/keep.md", "docs/keep.md", false),
            ("docs\n!docs/keep.md", "docs/other.md", true),
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md\nREADME.md", "README.md", true),
            ("!a.txt", "a.txt", false),
            ("secret\n! secret/public", "secret/public/x", false),
        ];
        for (patterns, path, out) in cases {
            assert_eq!(ignore(patterns).excludes(path), *out, "patterns {patterns:?}, path {path:?}");
        }
    }

    #[test]
    fn comments_blank_lines_and_bom() {
        let i = ignore("\u{feff}# a comment\n\n   \n*.tmp\n  # not a comment: a pattern\n");
        assert!(i.excludes("x.tmp"));
        assert!(i.excludes("# not a comment: a pattern"));
        assert!(!i.excludes("a comment"));
        assert!(!i.has_exceptions());
        assert!(ignore("a\n!b").has_exceptions());
    }

    #[test]
    fn bad_patterns_name_their_line() {
        for (text, why) in [
            ("ok\n[abc", "not closed"),
            ("a\\", "backslash"),
            ("[]", "empty"),
            ("[z-a]", "backwards"),
            ("[a-]", "- or ]"),
        ] {
            let e = Ignore::parse(text).unwrap_err();
            assert!(e.why.contains(why), "{text:?}: {e}");
            assert!(e.to_string().starts_with(".dockerignore line"), "{e}");
        }
        assert_eq!(Ignore::parse("ok\n[abc").unwrap_err().line, 2);
    }

    #[test]
    fn many_stars_stay_fast() {
        let i = ignore("*a*a*a*a*a*a*a*a*a*a*b");
        let long = "a".repeat(2000);
        let start = std::time::Instant::now();
        assert!(!i.excludes(&long));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn clean_as_go_does() {
        assert_eq!(clean("./a/"), "a");
        assert_eq!(clean("/a//b"), "a/b");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../b"), "b");
        assert_eq!(clean("./"), ".");
    }

    /// The matcher's meaning restated as a plain backtracking search, slow but obvious.
    fn reference(tokens: &[Token], text: &[char]) -> bool {
        let Some((token, rest)) = tokens.split_first() else { return text.is_empty() };
        let one = |ok: &dyn Fn(char) -> bool| text.first().is_some_and(|c| ok(*c)) && reference(rest, &text[1..]);
        match token {
            Token::Char(c) => one(&|t| t == *c),
            Token::One => one(&|t| t != '/'),
            Token::Class { negated, ranges } => {
                one(&|t| t != '/' && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&t)) != *negated)
            }
            Token::Star => {
                let run = text.iter().take_while(|c| **c != '/').count();
                (0..=run).any(|i| reference(rest, &text[i..]))
            }
            Token::Rest => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Token::Dirs => {
                reference(rest, text) || (1..=text.len()).any(|i| text[i - 1] == '/' && reference(rest, &text[i..]))
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_matcher_agrees_with_a_plain_search(pattern in "([ab/?*]|\\*\\*|\\[a\\]|\\[\\^b\\]){0,8}", path in "[ab/]{0,12}") {
            if let Ok(tokens) = compile(&pattern) {
                let text: Vec<char> = path.chars().collect();
                proptest::prop_assert_eq!(matches(&tokens, &text), reference(&tokens, &text), "{:?} on {:?}", pattern, path);
            }
        }

        #[test]
        fn any_dockerignore_is_read_without_panicking(text in "\\PC{0,200}", path in "[a-z/.]{0,30}") {
            if let Ok(ignore) = Ignore::parse(&text) {
                let _excluded = ignore.excludes(&path);
            }
        }
    }
}
