//! What the front door costs, and how the ratios move with the number of connections:
//! the same cases through `server all`'s built-in gateway and through nginx with
//! `deploy/nginx.conf`, both in front of `server all`'s own tasks (whose port is the
//! direct row); and baseline vs tasks at 1, 16 and 256 connections.

use crate::load::{self, Case, Stats};
use crate::Proc;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

// Shared with the tests, which use all of it.
#[allow(dead_code)]
#[path = "../../tests/src/nginx.rs"]
mod nginx;

/// The services, as `openapi/` lists them (one YAML each besides `common.yaml`).
pub fn service_names() -> Result<Vec<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir:?}"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            if stem != "common" {
                names.push(stem.into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// `cmd` (`server all` with the run's databases) on free ports; its process and each
/// server's base URL by name (`gateway`, `tasks`, …).
fn server_all(mut cmd: Command) -> Result<(Proc, BTreeMap<String, String>)> {
    cmd.env("GATEWAY_PORT", "0");
    for name in service_names()? {
        cmd.env(format!("{}_PORT", name.to_uppercase()), "0");
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut urls = BTreeMap::new();
    let mut line = String::new();
    while !(urls.contains_key("gateway") && urls.contains_key("tasks")) {
        line.clear();
        anyhow::ensure!(
            stderr.read_line(&mut line)? > 0,
            "server all stopped before saying where gateway and tasks listen"
        );
        if let Some((name, rest)) = line.split_once(" listening on http://") {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            urls.insert(name.trim().to_string(), format!("http://{addr}"));
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    let url = urls["tasks"].clone();
    Ok((Proc { child, url }, urls))
}

/// One front door's measurement of one case.
pub struct Door {
    pub case: String,
    pub direct: Stats,
    pub gateway: Stats,
    pub nginx: Stats,
}

/// `cases` (name, case) directly at the tasks of `server_all_cmd` (`server all`), through
/// its gateway and through nginx, `connections` each.
pub async fn front_doors(
    server_all_cmd: Command,
    http: &reqwest::Client,
    cases: &[(&str, &Case)],
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<Door>> {
    let (all, urls) = server_all(server_all_cmd)?;
    crate::ready(http, &all.url, Duration::from_secs(60)).await?;
    let tasks_addr = all.url.trim_start_matches("http://").to_string();
    let nginx = nginx::Nginx::start(&[("tasks", vec![tasks_addr])]).await;
    let mut doors = Vec::new();
    for (name, case) in cases {
        eprintln!("bench: {name} direct / built-in gateway / nginx");
        let mut runs = Vec::new();
        for url in [&all.url, &urls["gateway"], &nginx.url] {
            runs.push(load::run(url, case, connections, warmup, duration).await?);
        }
        let nginx_run = runs.pop().expect("three runs");
        let gateway_run = runs.pop().expect("three runs");
        doors.push(Door {
            case: name.to_string(),
            direct: runs.pop().expect("three runs"),
            gateway: gateway_run,
            nginx: nginx_run,
        });
    }
    Ok(doors)
}

pub fn render_doors(doors: &[Door], connections: usize, (md, csv): &mut (String, String)) {
    md.push_str(&format!(
        "\n### The front door ({connections} connections)\n\n\
         The same requests straight to `server all`'s tasks, through its built-in gateway, and \
         through nginx with `deploy/nginx.conf` (both in front of that same tasks). `ping` is \
         not routed by either (each service has its own).\n\n\
         | operation | direct req/s | gateway req/s | gateway / direct | nginx req/s | nginx / direct | direct p50 / p99 ms | gateway p50 / p99 ms | nginx p50 / p99 ms | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    ));
    for d in doors {
        let (g, n) = (d.gateway.rps / d.direct.rps, d.nginx.rps / d.direct.rps);
        let errors = d.direct.errors + d.gateway.errors + d.nginx.errors;
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {g:.2} | {:.0} | {n:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {errors} |\n",
            d.case, d.direct.rps, d.gateway.rps, d.nginx.rps,
            d.direct.p50_ms, d.direct.p99_ms, d.gateway.p50_ms, d.gateway.p99_ms, d.nginx.p50_ms, d.nginx.p99_ms,
        ));
        csv.push_str(&format!(
            "front door gateway {},{:.1},{:.1},{g:.3},,{:.3},{:.3},{:.3},{:.3},{errors},{}\n\
             front door nginx {},{:.1},{:.1},{n:.3},,{:.3},{:.3},{:.3},{:.3},{errors},{}\n",
            d.case,
            d.direct.rps,
            d.gateway.rps,
            d.direct.p50_ms,
            d.direct.p99_ms,
            d.gateway.p50_ms,
            d.gateway.p99_ms,
            d.gateway.requests,
            d.case,
            d.direct.rps,
            d.nginx.rps,
            d.direct.p50_ms,
            d.direct.p99_ms,
            d.nginx.p50_ms,
            d.nginx.p99_ms,
            d.nginx.requests,
        ));
    }
}

/// Baseline and tasks at each number of connections: (connections, case, baseline, tasks).
pub type Sweep = Vec<(usize, String, Stats, Stats)>;

pub fn render_sweep(sweep: &Sweep, (md, csv): &mut (String, String)) {
    md.push_str(
        "\n### By connections\n\n\
         | connections | operation | baseline req/s | taproom req/s | ratio | baseline p50 / p99 ms | taproom p50 / p99 ms | p99 / baseline p99 | errors |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (connections, name, b, t) in sweep {
        let (ratio, p99) = (t.rps / b.rps, t.p99_ms / b.p99_ms);
        let errors = b.errors + t.errors;
        md.push_str(&format!(
            "| {connections} | {name} | {:.0} | {:.0} | {ratio:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {p99:.2} | {errors} |\n",
            b.rps, t.rps, b.p50_ms, b.p99_ms, t.p50_ms, t.p99_ms
        ));
        csv.push_str(&format!(
            "{name} at {connections} connections,{:.1},{:.1},{ratio:.3},,{:.3},{:.3},{:.3},{:.3},{errors},{}\n",
            b.rps, t.rps, b.p50_ms, b.p99_ms, t.p50_ms, t.p99_ms, t.requests
        ));
    }
}
