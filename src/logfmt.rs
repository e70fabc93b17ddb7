//! Values in log lines, so that every line a daemon writes is `key=value` pairs a log shipper can
//! split: `q(&value)` shows a value bare when it is one word, and quoted (with `\"` and `\\`
//! escaped) when it holds a space, `=`, a quote, a control character or nothing at all;
//! `short(&text)` cuts what a client controls (a request path) to a bounded length.
//!
//! Owns the quoting rule and its parser (`parse_line`, used by the tests that read real log
//! lines); must not initialise or configure the logger (that is `cli`).

use std::fmt::{self, Display, Write};

/// How many characters of a client-controlled value (a path, a header) a log line keeps.
pub const MAX_LOGGED_CHARS: usize = 200;

/// A value shown bare or quoted, as the rule above says.
pub struct Quoted<'a, T: ?Sized>(&'a T);

/// Wraps a value for a `key={}` field: `info!("task started name={}", q(&name))`.
pub fn q<T: Display + ?Sized>(value: &T) -> Quoted<'_, T> {
    Quoted(value)
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty() || s.chars().any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control())
}

impl<T: Display + ?Sized> Display for Quoted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        if !needs_quotes(&text) {
            return f.write_str(&text);
        }
        f.write_char('"')?;
        for c in text.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// At most `MAX_LOGGED_CHARS` characters of `text`, with `…` when some were cut.
pub fn short(text: &str) -> String {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// A log line taken apart: `TIME [LEVEL] message words key=value ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub level: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// Parses a line as the daemons write it; `Err` says what does not fit. The message is the
/// words before the first `key=value`; after it, everything must be `key=value` pairs whose
/// values are bare words or quoted strings.
pub fn parse_line(line: &str) -> Result<LogLine, String> {
    let (time, rest) = line.split_once(' ').ok_or("no time")?;
    let (level, rest) = rest.split_once(' ').ok_or("no level")?;
    let level = level.strip_prefix('[').and_then(|l| l.strip_suffix(']')).ok_or("no [LEVEL]")?;
    let mut message = Vec::new();
    let mut fields = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            word.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            if !fields.is_empty() {
                return Err(format!("{word:?} after the fields: not key=value"));
            }
            message.push(word);
            continue;
        }
        chars.next(); // '='
        if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(format!("{word:?} is not a key"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("the value of {word} has no closing quote")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some(c @ ('"' | '\\')) => value.push(c),
                        Some('u') => {
                            let code: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                            let c = u32::from_str_radix(&code, 16).ok().and_then(char::from_u32);
                            value.push(c.ok_or_else(|| format!("bad escape in the value of {word}"))?);
                        }
                        _ => return Err(format!("bad escape in the value of {word}")),
                    },
                    Some(c) => value.push(c),
                }
            }
            if chars.peek().is_some_and(|&c| c != ' ') {
                return Err(format!("text right after the quoted value of {word}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c == '=' || c == '"' {
                    return Err(format!("the value of {word} holds {c:?} unquoted"));
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((word, value));
    }
    Ok(LogLine { time: time.to_string(), level: level.to_string(), message: message.join(" "), fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(q("worker1").to_string(), "worker1");
        assert_eq!(q(&42).to_string(), "42");
        assert_eq!(q("no node fits").to_string(), r#""no node fits""#);
        assert_eq!(q("a=b").to_string(), r#""a=b""#);
        assert_eq!(q(r#"say "hi""#).to_string(), r#""say \"hi\"""#);
        assert_eq!(q("back\\slash").to_string(), r#""back\\slash""#);
        assert_eq!(q("two\nlines").to_string(), r#""two\nlines""#);
        assert_eq!(q("").to_string(), r#""""#);
    }

    #[test]
    fn quoted_values_parse_back() {
        for value in ["plain", "with space", "k=v", r#"q"uote"#, "\\", "", "line\nbreak", "bell\u{7}", "é ü"] {
            let line = format!("2026-12-04T02:46:08.123Z [INFO] something happened key={} next=1", q(value));
            let parsed = parse_line(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(parsed.message, "something happened");
            assert_eq!(parsed.fields, vec![("key".to_string(), value.to_string()), ("next".into(), "1".into())]);
        }
    }

    #[test]
    fn unparseable_lines_are_refused() {
        for bad in [
            "2026-12-04T02:46:08.123Z [INFO] a error=cannot reach it",
            "2026-12-04T02:46:08.123Z [INFO] a path=/x?a=b",
            "2026-12-04T02:46:08.123Z [INFO] a why=\"open",
            "2026-12-04T02:46:08.123Z INFO a b=c",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(short("abc"), "abc");
        let long = "é".repeat(MAX_LOGGED_CHARS + 50);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), MAX_LOGGED_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
