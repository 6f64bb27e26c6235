//! The load generator: `connections` keep-alive HTTP/1.1 connections, each sending one
//! request after another for a fixed time, every latency recorded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One kind of request: method, a path per request number, headers, body.
#[derive(Clone)]
pub struct Case {
    pub method: http::Method,
    pub paths: Arc<Vec<String>>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Bodies, one per request in turn (none: empty bodies).
    pub bodies: Arc<Vec<Bytes>>,
    /// The status every answer must have.
    pub expect: u16,
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    histogram: hdrhistogram::Histogram<u64>,
    seconds: f64,
}

impl Stats {
    fn new(histogram: hdrhistogram::Histogram<u64>, errors: u64, seconds: f64) -> Stats {
        Stats {
            requests: histogram.len(),
            errors,
            rps: histogram.len() as f64 / seconds,
            p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
            histogram,
            seconds,
        }
    }

    /// Several runs as one: every latency of all of them, throughput over their summed
    /// measured time.
    pub fn merge<'a>(runs: impl IntoIterator<Item = &'a Stats>) -> anyhow::Result<Stats> {
        let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let (mut errors, mut seconds) = (0, 0.0);
        for run in runs {
            histogram.add(&run.histogram)?;
            errors += run.errors;
            seconds += run.seconds;
        }
        Ok(Stats::new(histogram, errors, seconds))
    }
}

/// Two servers measured with the same case in turns.
pub struct Pair {
    pub a: Stats,
    pub b: Stats,
    /// `b`'s throughput over `a`'s, one per round.
    pub ratios: Vec<f64>,
    /// `b`'s p99 over `a`'s, one per round: a disturbance of the machine during one run
    /// weighs on the merged p99 of its side alone, so the rounds' spread shows it.
    pub p99_ratios: Vec<f64>,
}

impl Pair {
    /// `b`'s throughput over `a`'s over all rounds.
    pub fn ratio(&self) -> f64 {
        self.b.rps / self.a.rps
    }
}

/// `case` against `a` and `b`, `rounds` times in the order a, b, b, a: a drift in the
/// machine's load (other work on a shared 2-core machine) weighs on both alike, and the
/// rounds' spread says how steady the machine was.
pub async fn paired(
    (a, b): (&str, &str),
    case: &Case,
    connections: usize,
    (warmup, duration): (Duration, Duration),
    rounds: usize,
) -> anyhow::Result<Pair> {
    let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
    let (mut ratios, mut p99_ratios) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let mut round = Vec::new();
        for (side, url) in [("a", a), ("b", b), ("b", b), ("a", a)] {
            let stats = run(url, case, connections, warmup, duration).await?;
            // Each run on its own, for a tail that one run alone makes (the report
            // merges them).
            eprintln!(
                "bench:   {side}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                stats.rps, stats.p50_ms, stats.p99_ms
            );
            round.push(stats);
        }
        let (ratio, p99_ratio) = round_ratios(&round)?;
        ratios.push(ratio);
        p99_ratios.push(p99_ratio);
        b_runs.extend(round.drain(1..3));
        a_runs.append(&mut round);
    }
    Ok(Pair {
        a: Stats::merge(&a_runs)?,
        b: Stats::merge(&b_runs)?,
        ratios,
        p99_ratios,
    })
}

/// One round of a, b, b, a: `b`'s throughput over `a`'s, and `b`'s p99 over `a`'s (each
/// side's two runs as one).
fn round_ratios(round: &[Stats]) -> anyhow::Result<(f64, f64)> {
    let [a1, b1, b2, a2] = round else {
        anyhow::bail!("a round is four runs, not {}", round.len());
    };
    let ratio = (b1.rps + b2.rps) / (a1.rps + a2.rps);
    let a = Stats::merge([a1, a2])?;
    let b = Stats::merge([b1, b2])?;
    Ok((ratio, b.p99_ms / a.p99_ms))
}

async fn connection(
    addr: std::net::SocketAddr,
    host: String,
    case: Case,
    offset: usize,
    warmup_until: Instant,
    stop_at: Instant,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64)> {
    let mut sender = connect(addr).await?;
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut n = offset;
    loop {
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        let path = &case.paths[n % case.paths.len()];
        let mut request = http::Request::builder()
            .method(case.method.clone())
            .uri(path.as_str())
            .header(http::header::HOST, &host);
        for (name, value) in &case.headers {
            request = request.header(name, value);
        }
        let body = match case.bodies.len() {
            0 => Bytes::new(),
            len => case.bodies[n % len].clone(),
        };
        let request = request.body(Full::new(body))?;
        n += 1;
        if sender.ready().await.is_err() {
            // The server closed the connection between requests (nginx does after
            // `keepalive_requests`): a client opens a new one, and so does this.
            sender = connect(addr).await?;
            sender.ready().await?;
        }
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        if now >= warmup_until {
            histogram.record(now.elapsed().as_micros().max(1) as u64)?;
            if status != case.expect {
                errors += 1;
            }
        }
    }
    Ok((histogram, errors))
}

async fn connect(
    addr: std::net::SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Runs `case` against `base` ("http://host:port") with `connections` connections: a
/// warm-up, then `duration` measured.
pub async fn run(
    base: &str,
    case: &Case,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let uri: http::Uri = base.parse()?;
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let addr = tokio::net::lookup_host(host.as_str())
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
    let start = Instant::now();
    let warmup_until = start + warmup;
    let stop_at = warmup_until + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            tokio::spawn(connection(
                addr,
                host.clone(),
                case.clone(),
                i * 7919,
                warmup_until,
                stop_at,
            ))
        })
        .collect();
    let mut total = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        total.add(h)?;
        errors += e;
    }
    Ok(Stats::new(total, errors, duration.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `n` requests a second for one second, each taking `latency_us`, plus
    /// `slow` requests of 10 ms.
    fn run(n: u64, latency_us: u64, slow: u64) -> Stats {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        h.record_n(latency_us, n - slow).unwrap();
        h.record_n(10_000, slow).unwrap();
        Stats::new(h, 0, 1.0)
    }

    #[test]
    fn a_round_compares_each_sides_two_runs_as_one() {
        // b is slower at the tail in one of its runs only: 3% of its requests at 10 ms
        // in one run, so 1.5% over both, past the 99th percentile.
        let round = [
            run(1000, 500, 0),
            run(900, 600, 27),
            run(900, 600, 0),
            run(1000, 500, 0),
        ];
        let (ratio, p99_ratio) = round_ratios(&round).unwrap();
        assert!((ratio - 0.9).abs() < 1e-9, "{ratio}");
        assert!((p99_ratio - 20.0).abs() < 0.1, "{p99_ratio}");
        // With the slow requests under 1% of b's, b's p99 is its usual latency.
        let round = [
            run(1000, 500, 0),
            run(900, 600, 9),
            run(900, 600, 0),
            run(1000, 500, 0),
        ];
        let (_, p99_ratio) = round_ratios(&round).unwrap();
        assert!((p99_ratio - 1.2).abs() < 0.01, "{p99_ratio}");
        assert!(round_ratios(&round[..3]).is_err());
    }
}
