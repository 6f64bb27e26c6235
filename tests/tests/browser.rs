//! The `/docs` page in a real headless browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver). It loads the embedded Swagger UI, runs `ping` with
//! "Try it out" → "Execute", and reads the live response off the page; then logs in with
//! the "Authorize" dialog (bearer token) and runs `get_current_user` the same way.
//!
//! Needs `chromium` and `chromedriver` on PATH (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Set `CHROMEDRIVER` to use another driver binary.

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::Duration;
use taproom_tests::start_chromedriver;
use taproom_tests::{Backend, Users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_page_runs_an_operation_in_a_real_browser() {
    let users = Users::start(Backend::Sqlite).await;
    let password = "docs reader password";
    let body = serde_json::json!({"username": "docs_reader", "email": "docs@example.com", "password": password});
    let created = users
        .raw()
        .post(format!("{}/v1/users", users.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let token = users.login("docs_reader", password).await;
    let (_driver, driver_url) = start_chromedriver().await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1200,900"]
        }),
    );
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a chromium session");
    let outcome = async {
        browser.goto(&format!("{}/docs", users.base_url)).await?;
        let title = browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("#swagger-ui .information-container .title"))
            .await?
            .text()
            .await?;
        assert!(title.contains("Taproom users"), "docs title: {title:?}");
        // Every operation of the spec is listed.
        for op in [
            "ping",
            "create_user",
            "list_users",
            "get_user",
            "update_user",
            "delete_user",
        ] {
            browser
                .find(Locator::Css(&format!("[id$='-{op}']")))
                .await?;
        }
        // Run `ping` with "Try it out" against the running service.
        let (ping_status, ping_body) = execute(&browser, "ping").await?;
        // Authorize with a bearer token through the dialog, then call `get_current_user`.
        browser
            .find(Locator::Css(".auth-wrapper .authorize"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(".modal-ux .auth-container"))
            .await?;
        let mut authorized = false;
        for container in browser
            .find_all(Locator::Css(".modal-ux .auth-container"))
            .await?
        {
            if container.text().await?.contains("bearerAuth") {
                container
                    .find(Locator::Css("input"))
                    .await?
                    .send_keys(&token)
                    .await?;
                container
                    .find(Locator::Css("button.authorize"))
                    .await?
                    .click()
                    .await?;
                authorized = true;
                break;
            }
        }
        assert!(authorized, "the Authorize dialog offers bearerAuth");
        browser
            .find(Locator::Css(".modal-ux .close-modal"))
            .await?
            .click()
            .await?;
        let (me_status, me_body) = execute(&browser, "get_current_user").await?;
        Ok::<_, fantoccini::error::CmdError>((ping_status, ping_body, me_status, me_body))
    }
    .await;
    browser.close().await.ok();
    let (status, response, me_status, me) = outcome.expect("driving the docs page");
    assert_eq!(status.trim(), "200", "status shown on the page");
    assert!(
        response.contains("pong!"),
        "response shown on the page: {response:?}"
    );
    assert_eq!(
        me_status.trim(),
        "200",
        "get_current_user after Authorize: {me}"
    );
    assert!(
        me.contains("docs_reader"),
        "the caller shown on the page: {me:?}"
    );
}

/// Opens an operation, presses "Try it out" if needed and "Execute"; the status and the
/// response shown on the page.
async fn execute(
    browser: &fantoccini::Client,
    op: &str,
) -> Result<(String, String), fantoccini::error::CmdError> {
    let block = format!("[id$='-{op}']");
    browser
        .find(Locator::Css(&format!("{block} .opblock-summary-control")))
        .await?
        .click()
        .await?;
    if let Ok(button) = browser
        .find(Locator::Css(&format!("{block} .try-out__btn")))
        .await
    {
        if button.text().await?.contains("Try it out") {
            button.click().await?;
        }
    }
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&format!("{block} .execute")))
        .await?
        .click()
        .await?;
    let response = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&format!(
            "{block} .live-responses-table .response .response-col_description"
        )))
        .await?
        .text()
        .await?;
    let status = browser
        .find(Locator::Css(&format!(
            "{block} .live-responses-table .response .response-col_status"
        )))
        .await?
        .text()
        .await?;
    Ok((status, response))
}
