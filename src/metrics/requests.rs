//! API requests of one server, by route pattern, method and status, with a latency histogram
//! per route and method.
//!
//! Cardinality is bounded by construction: the route is the *pattern* of the daemon's route
//! list (`/v1/tasks/{id}`, never a raw path) or `unmatched`; the method is one of a fixed list
//! or `other`; the status one of a fixed list or `other`. Every series is a fixed slot of
//! atomics made when the server starts, so counting takes no lock.

use super::{Counter, Histogram, Kind, Page};
use std::time::Duration;

/// The methods counted by name; any other is `other`.
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"];

/// The statuses counted by name (every one the daemons answer with); any other is `other`.
const STATUSES: [u16; 25] = [
    200, 201, 202, 204, 206, 301, 304, 400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 415, 422, 429, 431, 500, 502,
    503, 504,
];

/// The route label of a request no pattern fits.
pub const UNMATCHED: &str = "unmatched";

/// One route pattern and method: counts by status (one more slot for `other`), and latency.
#[derive(Debug, Default)]
struct Slot {
    by_status: Vec<Counter>,
    latency: Histogram,
}

/// The requests of one server.
#[derive(Debug)]
pub struct RequestMetrics {
    /// The distinct patterns of the route list, then `unmatched`.
    patterns: Vec<&'static str>,
    /// `patterns.len() * METHODS.len()` slots, pattern-major.
    slots: Vec<Slot>,
}

/// A path's segments, empty ones dropped (as the routers read paths).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Whether a path fits a pattern, `{...}` taking any one segment.
fn fits(pattern: &str, path: &str) -> bool {
    let mut want = segments(pattern);
    let mut have = segments(path);
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if w.starts_with('{') || w == h => {}
            _ => return false,
        }
    }
}

impl RequestMetrics {
    /// Slots for every pattern of a daemon's route list (`(method, pattern)` pairs).
    pub fn new(routes: &[(&'static str, &'static str)]) -> RequestMetrics {
        let mut patterns: Vec<&'static str> = Vec::new();
        for (_, p) in routes {
            if !patterns.contains(p) {
                patterns.push(p);
            }
        }
        patterns.push(UNMATCHED);
        let slots = (0..patterns.len() * METHODS.len())
            .map(|_| Slot { by_status: (0..=STATUSES.len()).map(|_| Counter::new()).collect(), ..Slot::default() })
            .collect();
        RequestMetrics { patterns, slots }
    }

    /// The pattern a path is counted under: the first of the list it fits, else `unmatched`.
    pub fn pattern_of(&self, path: &str) -> &'static str {
        let listed = &self.patterns[..self.patterns.len() - 1];
        listed.iter().copied().find(|p| fits(p, path)).unwrap_or(UNMATCHED)
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &str, path: &str, status: u16, latency: Duration) {
        let pattern = self.pattern_of(path);
        let p = self.patterns.iter().position(|x| *x == pattern).unwrap_or(self.patterns.len() - 1);
        let m = METHODS.iter().position(|x| *x == method).unwrap_or(METHODS.len() - 1);
        let s = STATUSES.iter().position(|x| *x == status).unwrap_or(STATUSES.len());
        if let Some(slot) = self.slots.get(p * METHODS.len() + m) {
            if let Some(c) = slot.by_status.get(s) {
                c.inc();
            }
            slot.latency.observe(latency);
        }
    }

    /// The slots that have seen requests, with their labels.
    fn used(&self) -> impl Iterator<Item = (&'static str, &'static str, &Slot)> {
        self.slots.iter().enumerate().filter(|(_, s)| s.latency.count() > 0).map(|(i, s)| {
            let (p, m) = (i / METHODS.len(), i % METHODS.len());
            (self.patterns[p], METHODS[m], s)
        })
    }

    /// `skiff_http_requests_total` and `skiff_http_request_duration_seconds`.
    pub fn write(&self, page: &mut Page) {
        page.family(
            "skiff_http_requests_total",
            Kind::Counter,
            "API requests answered, by route pattern, method and status.",
        );
        for (route, method, slot) in self.used() {
            for (i, c) in slot.by_status.iter().enumerate() {
                let n = c.get();
                if n == 0 {
                    continue;
                }
                let status = STATUSES.get(i).map_or_else(|| "other".to_string(), u16::to_string);
                page.sample(
                    "skiff_http_requests_total",
                    &[("route", route), ("method", method), ("status", &status)],
                    n as f64,
                );
            }
        }
        page.family(
            "skiff_http_request_duration_seconds",
            Kind::Histogram,
            "Time from a request read whole to its answer ready (a stream: to its head), by route pattern and method.",
        );
        for (route, method, slot) in self.used() {
            page.histogram(
                "skiff_http_request_duration_seconds",
                &[("route", route), ("method", method)],
                &slot.latency.value(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: [(&str, &str); 4] =
        [("GET", "/v1/tasks"), ("POST", "/v1/tasks"), ("GET", "/v1/tasks/{id}"), ("GET", "/v1/tasks/{id}/logs")];

    #[test]
    fn paths_are_counted_under_their_pattern_and_the_rest_as_unmatched() {
        let m = RequestMetrics::new(&ROUTES);
        assert_eq!(m.pattern_of("/v1/tasks/"), "/v1/tasks");
        assert_eq!(m.pattern_of("/v1/tasks/3f2b9c1e-8d4a-4f6b-9a7e-1c2d3e4f5a6b"), "/v1/tasks/{id}");
        assert_eq!(m.pattern_of("/v1/tasks/anything/logs"), "/v1/tasks/{id}/logs");
        for raw in ["/", "/v1/tasks/a/b/c", "/etc/passwd", "/v1/tasks/x/logs/y"] {
            assert_eq!(m.pattern_of(raw), UNMATCHED, "{raw}");
        }
    }

    #[test]
    fn a_thousand_distinct_paths_and_methods_make_a_bounded_page() {
        let m = RequestMetrics::new(&ROUTES);
        for i in 0..1000 {
            m.observe(&format!("M{i}"), &format!("/v1/tasks/{i}"), 404, Duration::from_millis(1));
            m.observe("GET", &format!("/random/{i}"), 600 + i as u16, Duration::from_millis(1));
        }
        m.observe("GET", "/v1/tasks", 200, Duration::from_millis(2));
        let mut page = Page::new();
        m.write(&mut page);
        let text = page.into_string();
        let samples: Vec<&str> = text.lines().filter(|l| l.starts_with("skiff_http_requests_total")).collect();
        assert_eq!(
            samples,
            [
                "skiff_http_requests_total{route=\"/v1/tasks\",method=\"GET\",status=\"200\"} 1",
                "skiff_http_requests_total{route=\"/v1/tasks/{id}\",method=\"other\",status=\"404\"} 1000",
                "skiff_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"other\"} 1000",
            ]
        );
        assert!(text
            .contains("skiff_http_request_duration_seconds_count{route=\"/v1/tasks/{id}\",method=\"other\"} 1000\n"));
    }
}
