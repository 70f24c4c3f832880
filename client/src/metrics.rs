//! Prometheus metrics for the client's long-running processes, and a reader of what any
//! Prometheus endpoint serves.
//!
//! - [`serve`] answers `GET /metrics` with a `prometheus-client` registry as OpenMetrics
//!   text, on a thread of its own, with the server `lemal-vn --metrics` uses
//!   ([`lemal_app::http`]); [`serve_with`] hands every other request to an [`Endpoint`], which
//!   may refuse it from its request line and peer address before its body is read.
//! - [`scrape`] fetches an endpoint (`http://HOST:PORT/metrics`, plain HTTP) and
//!   [`Samples::parse`] reads the text exposition, Prometheus 0.0.4 or OpenMetrics 1.0, into
//!   samples that [`Samples::get`] looks up by metric name and labels. `lemal localnet status`
//!   reads each verifying node's worker lag with it.
//!
//! ```
//! use lemal_client::metrics::Samples;
//!
//! let text = "# TYPE lemal_worker_lag_blocks gauge\nlemal_worker_lag_blocks 2\n\
//!             lemal_proofs_verified_total{kind=\"range\",verdict=\"correct\"} 12\n# EOF\n";
//! let samples = Samples::parse(text).unwrap();
//! assert_eq!(samples.get("lemal_worker_lag_blocks", &[]), Some(2.0));
//! assert_eq!(samples.get("lemal_proofs_verified_total", &[("kind", "range")]), Some(12.0));
//! ```

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The server: `GET /metrics` from a registry, every other request to an [`Endpoint`], within
/// bounds on connections, header and body sizes and read times (see [`lemal_app::http`]).
pub use lemal_app::http::{serve, serve_with, Endpoint, Refused, Reply, CONTENT_TYPE};

/// How long [`scrape`] waits to connect, and then for each read.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest page [`scrape`] reads.
const MAX_PAGE_BYTES: u64 = 16 << 20;

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The URL is not `http://HOST:PORT/PATH`.
    #[error("{0:?} is not an http://HOST:PORT/PATH URL")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("{url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The error.
        source: io::Error,
    },
    /// The server answered with another status than 200, or not with HTTP.
    #[error("{url}: {status}")]
    Http {
        /// The URL.
        url: String,
        /// The status line, or what was wrong with the answer.
        status: String,
    },
    /// A line of the page is not a sample.
    #[error("line {line}: {text:?} is not a sample")]
    Parse {
        /// The line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
}

/// One sample: a metric name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name as exposed (`lemal_proofs_verified_total`, `..._bucket`, ...).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The samples of one page, in page order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Read a text exposition (Prometheus 0.0.4 or OpenMetrics 1.0). Comment lines (`# HELP`,
    /// `# TYPE`, `# EOF`) and blank lines are skipped; timestamps and exemplars are dropped.
    pub fn parse(text: &str) -> Result<Samples, MetricsError> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_line(line)
                .ok_or_else(|| MetricsError::Parse { line: i + 1, text: line.to_owned() })?;
            out.push(sample);
        }
        Ok(Samples(out))
    }

    /// The samples named `name` that carry every label of `labels` (and possibly others).
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name
                && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
    }

    /// The value of the first sample named `name` that carries every label of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).next().map(|s| s.value)
    }

    /// The sum over the samples named `name` that carry every label of `labels` (`None` when
    /// there is none): a counter's total across the labels left open.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).map(|s| s.value).reduce(|a, b| a + b)
    }
}

/// `name{label="value",...} value [timestamp] [# exemplar]`.
fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample { name: name.to_owned(), labels, value: parse_value(value)? })
}

/// Read `label="value",...}` into `labels`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Option<&'a str> {
    loop {
        s = s.trim_start().trim_start_matches(',').trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some(after);
        }
        let (key, after) = s.split_once('=')?;
        let mut chars = after.trim_start().strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        s = &after.trim_start()[1 + end + 1..];
    }
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Fetch `url` (`http://HOST:PORT/PATH`) and read its samples.
pub fn scrape(url: &str) -> Result<Samples, MetricsError> {
    let bad_url = || MetricsError::Url(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad_url)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let unreachable = |source| MetricsError::Unreachable { url: url.to_owned(), source };
    let addr = authority.to_socket_addrs().map_err(|_| bad_url())?.next().ok_or_else(bad_url)?;
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).map_err(unreachable)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).map_err(unreachable)?;
    // HTTP/1.0: the answer is the body up to the close, never chunked.
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: {CONTENT_TYPE},text/plain;q=0.5\r\n\r\n"
    )
    .map_err(unreachable)?;
    let mut page = Vec::new();
    stream.take(MAX_PAGE_BYTES).read_to_end(&mut page).map_err(unreachable)?;
    let page = String::from_utf8_lossy(&page);
    let http = |status: &str| MetricsError::Http { url: url.to_owned(), status: status.to_owned() };
    let (head, body) = page.split_once("\r\n\r\n").ok_or_else(|| http("no end of headers"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(http(status));
    }
    Samples::parse(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;

    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    /// What CometBFT serves (Prometheus text 0.0.4, from Go's client library).
    const COMETBFT: &str = "\
# HELP cometbft_consensus_height Height of the chain.
# TYPE cometbft_consensus_height gauge
cometbft_consensus_height{chain_id=\"lemal-e2e\"} 42
# HELP cometbft_p2p_peers Number of peers.
cometbft_p2p_peers{chain_id=\"lemal-e2e\"} 3
go_gc_duration_seconds{quantile=\"0.5\"} 4.5e-05
go_memstats_alloc_bytes 1.234e+07 1700000000000
";

    #[test]
    fn prometheus_text_reads_into_samples_with_their_labels() {
        let s = Samples::parse(COMETBFT).unwrap();
        assert_eq!(s.0.len(), 4);
        assert_eq!(s.get("cometbft_consensus_height", &[]), Some(42.0));
        assert_eq!(s.get("cometbft_consensus_height", &[("chain_id", "lemal-e2e")]), Some(42.0));
        assert_eq!(s.get("cometbft_consensus_height", &[("chain_id", "other")]), None);
        assert_eq!(s.get("go_gc_duration_seconds", &[("quantile", "0.5")]), Some(4.5e-5));
        assert_eq!(s.get("go_memstats_alloc_bytes", &[]), Some(1.234e7), "timestamp dropped");
        assert_eq!(s.get("absent", &[]), None);
    }

    #[test]
    fn label_values_keep_escapes_commas_and_braces() {
        let line =
            "m{a=\"x,y\",b=\"say \\\"hi\\\"\",c=\"back\\\\slash\\n\", d = \"}\" ,} 1.5 # {} 1";
        let s = Samples::parse(line).unwrap();
        let labels = &s.0[0].labels;
        assert_eq!(labels["a"], "x,y");
        assert_eq!(labels["b"], "say \"hi\"");
        assert_eq!(labels["c"], "back\\slash\n");
        assert_eq!(labels["d"], "}");
        assert_eq!(s.0[0].value, 1.5);
    }

    #[test]
    fn special_values_and_sums() {
        let text = "h_bucket{le=\"0.1\"} 2\nh_bucket{le=\"+Inf\"} 3\nn NaN\nm -Inf\n\
                    c_total{k=\"a\"} 2\nc_total{k=\"b\"} 5\n";
        let s = Samples::parse(text).unwrap();
        assert_eq!(s.get("h_bucket", &[("le", "+Inf")]), Some(3.0));
        assert!(s.get("n", &[]).unwrap().is_nan());
        assert_eq!(s.get("m", &[]), Some(f64::NEG_INFINITY));
        assert_eq!(s.sum("c_total", &[]), Some(7.0));
        assert_eq!(s.sum("c_total", &[("k", "b")]), Some(5.0));
        assert_eq!(s.sum("d_total", &[]), None);
    }

    #[test]
    fn lines_that_are_not_samples_are_refused_with_their_number() {
        for bad in ["x", "x{a=\"1\" 2", "x{a=1} 2", "x 1e", "{a=\"1\"} 2", "x{a=\"1\"}"] {
            let text = format!("# HELP x y\n{bad}\n");
            assert!(
                matches!(Samples::parse(&text), Err(MetricsError::Parse { line: 2, .. })),
                "{bad:?}"
            );
        }
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
    struct Kind {
        kind: &'static str,
    }

    #[test]
    fn a_served_registry_scrapes_back_into_the_same_values() {
        let mut registry = Registry::default();
        let family = Family::<Kind, Counter>::default();
        registry.register("lemal_test_things", "Things", family.clone());
        family.get_or_create(&Kind { kind: "range" }).inc_by(3);
        let addr = serve("127.0.0.1:0".parse().unwrap(), Arc::new(registry)).unwrap();
        let s = scrape(&format!("http://{addr}/metrics")).unwrap();
        assert_eq!(s.get("lemal_test_things_total", &[("kind", "range")]), Some(3.0));
        let missing = scrape(&format!("http://{addr}/other"));
        assert!(
            matches!(missing, Err(MetricsError::Http { status, .. }) if status.contains("404"))
        );
        assert!(serve(addr, Arc::new(Registry::default())).is_err(), "port taken");
    }

    #[test]
    fn unreachable_endpoints_and_bad_urls_are_told_apart() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let closed = scrape(&format!("http://{free}/metrics"));
        assert!(matches!(closed, Err(MetricsError::Unreachable { .. })));
        assert!(matches!(scrape("https://127.0.0.1:1/metrics"), Err(MetricsError::Url(_))));
        assert!(matches!(scrape("http://no port/metrics"), Err(MetricsError::Url(_))));
    }
}
