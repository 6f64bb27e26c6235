//! The static API reference (`cargo xtask docs`) in a real headless browser, opened from
//! `file://` with the browser's name resolution switched off: every operation of a
//! service is listed with its summary, and the index links every service.
//!
//! Needs `chromium` and `chromedriver` (see `browser.rs`).

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use taproom_tests::start_chromedriver;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `cargo xtask docs --out <out>` as a developer would.
fn build_docs(out: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["xtask", "docs", "--out"])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "cargo xtask docs failed");
}

/// (operationId, summary) of every operation in the service's bundled spec.
fn operations(service: &str) -> Vec<(String, String)> {
    let path = workspace_root().join(format!("openapi/bundled/{service}.yaml"));
    let doc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                let summary = op["summary"].as_str().unwrap_or_default().to_string();
                out.push((id.to_string(), summary));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_docs_list_every_operation_offline() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_path_buf();
    tokio::task::spawn_blocking(move || build_docs(&out_dir))
        .await
        .unwrap();
    let expected = operations("orders");
    assert!(expected.len() > 5, "{expected:?}");

    let (_driver, driver_url) = start_chromedriver().await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            // No host resolves: anything the pages fetched from a network would fail.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1200,900",
                     "--host-resolver-rules=MAP * ~NOTFOUND"]
        }),
    );
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a chromium session");
    let index = format!("file://{}/index.html", out.path().display());
    let outcome = async {
        browser.goto(&index).await?;
        let mut links = Vec::new();
        for a in browser.find_all(Locator::Css("li > a:first-child")).await? {
            links.push(a.attr("href").await?.unwrap_or_default());
        }
        // Follow the index's link, as a reader would.
        browser
            .find(Locator::Css("a[href='orders/index.html']"))
            .await?
            .click()
            .await?;
        let title = browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("#swagger-ui .information-container .title"))
            .await?
            .text()
            .await?;
        let mut blocks = Vec::new();
        for (id, _) in &expected {
            let text = browser
                .find(Locator::Css(&format!("[id$='-{id}'] .opblock-summary")))
                .await?
                .text()
                .await?;
            blocks.push(text);
        }
        Ok::<_, fantoccini::error::CmdError>((links, title, blocks))
    }
    .await;
    browser.close().await.ok();
    let (links, title, blocks) = outcome.expect("reading the static docs");
    // Every service by name (as `cargo xtask` lists them), then the combined document.
    let mut names: Vec<&str> = taproom_server::SERVICES.iter().map(|s| s.name).collect();
    names.sort();
    names.push("gateway");
    assert_eq!(
        links,
        names
            .iter()
            .map(|s| format!("{s}/index.html"))
            .collect::<Vec<_>>()
    );
    assert!(title.contains("Taproom orders"), "title: {title:?}");
    for ((id, summary), block) in expected.iter().zip(&blocks) {
        assert!(
            block.contains(id.as_str()) && block.contains(summary.as_str()),
            "{id} / {summary:?} not shown: {block:?}"
        );
    }
}
