//! The Prometheus text exposition format (version 0.0.4), written by hand: a `Page` that takes
//! families (`# HELP`, `# TYPE`) and their samples, escapes help text and label values, writes
//! numbers as Prometheus parses them (`+Inf`, `-Inf`, `NaN`), and a histogram's cumulative
//! `_bucket{le=...}` lines with `_sum` and `_count`.
//!
//! Owns only the format: what is measured, and where, is elsewhere in `metrics`. A family is
//! written whole, all its samples after its `# TYPE` line, as the format requires.

use std::fmt::Write as _;

/// The content type of a page (what Prometheus asks for by default and `promtool` checks).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The kind of a family, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A histogram's state at one instant: the upper bounds (seconds, ascending, `+Inf` not among
/// them), the observations that fell in each bucket (not cumulative; one more for `+Inf`), and
/// the sum of every observation.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue<'a> {
    pub bounds: &'a [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// A page being written. Label pairs are `(name, value)`; names are ours (constants), values
/// may come from anywhere and are escaped.
#[derive(Debug, Default)]
pub struct Page {
    out: String,
}

impl Page {
    pub fn new() -> Page {
        Page::default()
    }

    /// Starts a family: its help line and its type line.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_into(&mut self.out, help, false);
        self.out.push('\n');
        // writing to a String cannot fail
        crate::control::best_effort(writeln!(self.out, "# TYPE {name} {}", kind.as_str()));
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        push_number(&mut self.out, value);
        self.out.push('\n');
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram's lines for one label set, under a family started with `Kind::Histogram`:
    /// the buckets cumulated, then `+Inf`, `_sum` and `_count` (the `+Inf` bucket's count, so the
    /// two always agree).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramValue<'_>) {
        let bucket = format!("{name}_bucket");
        let mut cumulated = 0u64;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulated += h.counts.get(i).copied().unwrap_or(0);
            self.out.push_str(&bucket);
            let mut le = String::new();
            push_number(&mut le, *bound);
            self.labels(labels, Some(&le));
            crate::control::best_effort(writeln!(self.out, " {cumulated}"));
        }
        cumulated += h.counts.get(h.bounds.len()..).map_or(0, |rest| rest.iter().sum());
        self.out.push_str(&bucket);
        self.labels(labels, Some("+Inf"));
        crate::control::best_effort(writeln!(self.out, " {cumulated}"));
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, cumulated as f64);
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (name, value) in labels.iter().copied().chain(le.map(|v| ("le", v))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value, true);
            self.out.push('"');
        }
        self.out.push('}');
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// Backslash and newline escaped (and the double quote too in a label value), as the format
/// wants them.
fn escape_into(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A number as Prometheus reads it: integers without a fraction, the infinities and NaN by
/// their names in the format.
fn push_number(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust's shortest round-trip form: "3", "0.25", "1e-7", all of which Prometheus parses
        crate::control::best_effort(write!(out, "{value}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_type_and_samples_with_escaped_labels() {
        let mut page = Page::new();
        page.family("skiff_tasks", Kind::Gauge, "Tasks by state.\nA second line with a \\ in it.");
        page.sample("skiff_tasks", &[("state", "Running")], 3.0);
        page.sample("skiff_tasks", &[("state", "we\"ird\\\nvalue"), ("node", "a")], 0.5);
        page.single("process_open_fds", Kind::Gauge, "Open file descriptors.", 12.0);
        assert_eq!(
            page.into_string(),
            "# HELP skiff_tasks Tasks by state.\\nA second line with a \\\\ in it.\n\
             # TYPE skiff_tasks gauge\n\
             skiff_tasks{state=\"Running\"} 3\n\
             skiff_tasks{state=\"we\\\"ird\\\\\\nvalue\",node=\"a\"} 0.5\n\
             # HELP process_open_fds Open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 12\n"
        );
    }

    #[test]
    fn numbers_are_written_as_prometheus_parses_them() {
        let cases = [
            (0.0, "0"),
            (42.0, "42"),
            (0.25, "0.25"),
            (1e-7, "0.0000001"),
            (1.5e12, "1500000000000"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (-3.5, "-3.5"),
        ];
        for (value, text) in cases {
            let mut s = String::new();
            push_number(&mut s, value);
            assert_eq!(s, text, "{value}");
            assert!(text == "NaN" || text.replace("Inf", "inf").parse::<f64>() == Ok(value), "{text} reads back");
        }
    }

    #[test]
    fn a_histogram_is_cumulative_and_its_count_is_the_inf_bucket() {
        let mut page = Page::new();
        page.family("x_seconds", Kind::Histogram, "Latency.");
        let h = HistogramValue { bounds: &[0.1, 1.0], counts: vec![2, 0, 3], sum: 7.25 };
        page.histogram("x_seconds", &[("route", "/v1/tasks/{id}")], &h);
        page.histogram("x_seconds", &[], &HistogramValue { bounds: &[0.1, 1.0], counts: vec![0, 0, 0], sum: 0.0 });
        let text = page.into_string();
        let expected = "x_seconds_bucket{route=\"/v1/tasks/{id}\",le=\"0.1\"} 2\n\
             x_seconds_bucket{route=\"/v1/tasks/{id}\",le=\"1\"} 2\n\
             x_seconds_bucket{route=\"/v1/tasks/{id}\",le=\"+Inf\"} 5\n\
             x_seconds_sum{route=\"/v1/tasks/{id}\"} 7.25\n\
             x_seconds_count{route=\"/v1/tasks/{id}\"} 5\n\
             x_seconds_bucket{le=\"0.1\"} 0\n";
        assert!(text.contains(expected), "{text}");
        assert!(text.ends_with("x_seconds_bucket{le=\"+Inf\"} 0\nx_seconds_sum 0\nx_seconds_count 0\n"), "{text}");
    }
}
