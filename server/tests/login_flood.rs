//! A flood of bad logins against the real `server all` process: password hashing is
//! admitted a few at a time (the rest get 503 at once), each client address has its own
//! rate limit (429), memory stays bounded and every service keeps answering.

mod support;

use std::collections::BTreeMap;

/// Peak resident memory (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// The bound: the process at rest (~50 MiB in a debug build) plus one argon2 block
/// (19 MiB) per hashing thread and the connections' buffers, with room to spare (99 MiB
/// measured on 2 cores). Without admission control the 250 logins that pass the address
/// limit would hash at once and ask for ~4.7 GiB.
const PEAK_RSS_BOUND_MIB: u64 = 160;

#[tokio::test]
async fn five_hundred_parallel_bad_logins_are_refused_cheaply() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = taproom_server::SERVICES.iter().map(|s| s.name).collect();
    let ports: Vec<String> = names
        .iter()
        .map(|name| format!("{}_PORT", name.to_uppercase()))
        .collect();
    let mut env = vec![("LOG_LEVEL", "critical"), ("GATEWAY", "false")];
    env.extend(ports.iter().map(|port| (port.as_str(), "0")));
    let all = support::ServerAll::start(dir.path(), &env, &names);
    let pid = all.child.id();
    let users = all.url("users").to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let before = peak_rss_mib(pid);

    // 500 logins at once: half from as many addresses (each reaches the password check
    // unless the hashing gate is full), half from one address (its rate limit).
    let logins = (0..500).map(|i| {
        let http = http.clone();
        let url = format!("{users}/v1/auth/token");
        let address = if i % 2 == 0 {
            format!("10.{}.{}.1", i / 250, i % 250)
        } else {
            "203.0.113.7".to_string()
        };
        async move {
            let resp = http
                .post(url)
                .header("x-forwarded-for", address)
                .json(&serde_json::json!({"username": format!("nobody{i}"), "password": "guess"}))
                .send()
                .await
                .expect("every login gets an answer");
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let problem: serde_json::Value = resp.json().await.expect("a problem body");
            assert_eq!(problem["status"], status, "{problem}");
            (status, retry_after)
        }
    });
    let flood = tokio::spawn(futures::future::join_all(logins));
    // Meanwhile every service keeps answering.
    let mut pings = 0;
    while !flood.is_finished() {
        for name in &names {
            let resp = http
                .get(format!("{}/ping", all.url(name)))
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name} /ping during the flood: {e}"));
            assert_eq!(resp.status(), 200, "{name} /ping during the flood");
            pings += 1;
        }
    }
    let answers = flood.await.unwrap();
    let peak = peak_rss_mib(pid);

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (status, retry_after) in &answers {
        *by_status.entry(*status).or_default() += 1;
        if matches!(status, 429 | 503) {
            assert!(retry_after, "{status} without Retry-After");
        }
    }
    eprintln!(
        "500 bad logins: {by_status:?}; peak RSS {before} MiB before, {peak} MiB after; {pings} pings answered during the flood"
    );
    assert!(
        by_status.keys().all(|s| matches!(s, 401 | 429 | 503)),
        "only 401, 429 and 503: {by_status:?}"
    );
    assert!(
        by_status.get(&503).copied().unwrap_or(0) > 0,
        "the hashing gate refused some: {by_status:?}"
    );
    assert!(
        by_status.get(&429).copied().unwrap_or(0) > 0,
        "the address limit refused some: {by_status:?}"
    );
    assert!(
        by_status.get(&401).copied().unwrap_or(0) > 0,
        "some were checked: {by_status:?}"
    );
    assert!(
        peak < PEAK_RSS_BOUND_MIB,
        "peak RSS {peak} MiB, bound {PEAK_RSS_BOUND_MIB} MiB"
    );
    // And the service is still there for the next login.
    let resp = http
        .post(format!("{users}/v1/auth/token"))
        .json(&serde_json::json!({"username": "nobody", "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
