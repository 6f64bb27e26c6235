//! The web client end to end, in a real browser: every service and the built-in gateway
//! (which serves the embedded app at `/`), a seeded catalogue and promo code, and the
//! Playwright suite `web/e2e/run.mjs` driving Debian's Chromium through it: registration
//! with a validation error at its field, browsing pages and searching, a cart checked out
//! with a promo code, the order history, the to-dos, a wrong password; then an exercise
//! (seeded here) solved wrong and right in the browser, graded in the bubblewrap sandbox,
//! and its score; then, with promotions, tasks and exercises stopped, their 503s shown as
//! messages. axe-core checks every page and screenshots of each are kept (the path is
//! printed). The exercises service needs bubblewrap (it refuses to start without a
//! working sandbox).
//!
//! Needs node and `npm ci` in web/ (playwright-core, axe-core), and Chromium (`CHROMIUM`,
//! default /usr/bin/chromium); `.ci/run` installs them. nginx serving the same files is
//! checked by `nginx_serves_the_app_with_its_headers`.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use taproom_tests::{bearer_client, Backend, Exercises, Nginx, Shop};

const PROMO: &str = "TAPROOM-10";

/// The exercise the browser solves (web/e2e/run.mjs submits a wrong and a right `fizzbuzz`).
const FIZZBUZZ_TESTS: &str = "\
def test_fizz():
    assert fizzbuzz(9) == 'Fizz', fizzbuzz(9)

def test_fizzbuzz():
    assert fizzbuzz(30) == 'FizzBuzz', fizzbuzz(30)

def test_number():
    assert fizzbuzz(7) == '7', fizzbuzz(7)
";

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// Runs one phase of the browser suite; panics with its output when it fails.
fn run_phase(phase: &str, base_url: &str, artifacts: &Path) {
    let web = web_dir();
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `npm ci` in web/ (node 20 or later)"
    );
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let out = std::process::Command::new(&node)
        .args(["e2e/run.mjs", phase])
        .current_dir(&web)
        .env("BASE_URL", base_url)
        .env("ARTIFACTS", artifacts)
        .env("PROMO_CODE", PROMO)
        .env("EXPECT_REFRESH", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {node:?} ({e}): install node 20 or later"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "web e2e phase {phase} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Where the screenshots go: under the target directory, kept after the test.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-e2e");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_works_in_a_real_browser() {
    // Access tokens that live 20 s: the app refreshes a token 30 s before it expires, so
    // every signed-in call of the suite first rotates the refresh token, one at a time.
    let mut shop = Shop::start_with(Backend::Sqlite, |c| {
        c.token_ttl_secs = 20;
        Exercises::test_sandbox(c);
    })
    .await;
    // Scores and exercises beside the shop, wired as `server all` wires them.
    let config = shop.users.db.config();
    let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
        .expect("logger");
    let scores = taproom_server::scores::start(&config, &shop.users.peers(), &log)
        .await
        .expect("scores starts");
    let scores_url = format!("http://{}", scores.local_addr());
    let mut peers = shop.users.peers();
    peers.insert("scores", scores_url.clone());
    let exercises = taproom_server::exercises::start(&config, &peers, &log)
        .await
        .expect("exercises starts (it needs a working bubblewrap sandbox)");
    let exercises_url = format!("http://{}", exercises.local_addr());
    let (tasks, gateway, gw) = shop
        .behind_gateway_with(vec![("exercises", exercises_url), ("scores", scores_url)])
        .await;

    // Twelve beers (two pages of ten), two of them the ones the suite orders.
    let admin = bearer_client(&shop.users.admin_token().await);
    let mut beers = vec![
        ("IPA-1".to_string(), "Hoppy Days IPA".to_string(), "4.00"),
        ("STOUT-1".to_string(), "Midnight Stout".to_string(), "6.00"),
    ];
    beers.extend((1..=10).map(|i| (format!("LAGER-{i}"), format!("Lager number {i}"), "3.50")));
    for (sku, name, price) in beers {
        let created = admin
            .post(format!("{gw}/v1/beers"))
            .json(&serde_json::json!({"sku": sku, "name": name, "price": price, "style": "Ale"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    }
    let created = admin
        .post(format!("{gw}/v1/promotions"))
        .json(&taproom_client::promotions::types::CreatePromotion {
            code: PROMO.parse().unwrap(),
            percent_off: NonZeroU32::new(10).unwrap(),
            max_uses_per_user: NonZeroU32::new(2).unwrap(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let created = admin
        .post(format!("{gw}/v1/exercises"))
        .json(&serde_json::json!({
            "title": "FizzBuzz",
            // Markdown the page shows as text: the tag must not become an element.
            "statement": "Write `fizzbuzz(n)`: `Fizz` for multiples of 3, `Buzz` of 5, \
                          `FizzBuzz` of both, else `n` as text. <img src=x onerror=alert(1)>",
            "language": "python3",
            "starter_code": "def fizzbuzz(n):\n    return str(n)\n",
            "test_code": FIZZBUZZ_TESTS,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    let artifacts = artifacts_dir();
    println!("screenshots in {}", artifacts.display());
    let base = gw.clone();
    let dir = artifacts.clone();
    tokio::task::spawn_blocking(move || run_phase("shop", &base, &dir))
        .await
        .unwrap();
    let base = gw.clone();
    let dir = artifacts.clone();
    tokio::task::spawn_blocking(move || run_phase("exercises", &base, &dir))
        .await
        .unwrap();

    // Stop promotions (orders then answers 503 for a checkout with a code), tasks and
    // exercises (the gateway answers 503 for them).
    shop.stop_promotions().await;
    tasks.close().await.unwrap();
    exercises.close().await.unwrap();
    let base = gw.clone();
    let dir = artifacts.clone();
    tokio::task::spawn_blocking(move || run_phase("outage", &base, &dir))
        .await
        .unwrap();
    for page in [
        "shop-catalogue",
        "shop-checkout-done",
        "exercises-exercise-failed",
        "exercises-exercise-passed",
        "exercises-scores",
        "outage-checkout-503",
        "outage-exercises-503",
    ] {
        assert!(
            artifacts.join(format!("{page}.png")).is_file(),
            "no screenshot {page}.png"
        );
    }
    drop(gateway);
    scores.close().await.unwrap();
}

/// nginx (deploy/nginx.conf) serves the built app with the same headers as the built-in
/// gateway, and the API beside it on the same origin.
#[tokio::test]
async fn nginx_serves_the_app_with_its_headers() {
    let shop = Shop::start(Backend::Sqlite).await;
    let addr = |url: &str| vec![url.trim_start_matches("http://").to_string()];
    let nginx = Nginx::start(&[
        ("users", addr(&shop.users.base_url)),
        ("beers", addr(&shop.beers_url)),
        ("orders", addr(&shop.orders_url)),
        ("tasks", addr(&shop.orders_url)),
        ("promotions", addr(&shop.promotions_url)),
    ])
    .await;
    let dist = web_dir().join("dist");
    for (path, file, media_type) in [
        ("/", "index.html", "text/html"),
        ("/assets/app.js", "assets/app.js", "javascript"),
        ("/assets/app.css", "assets/app.css", "text/css"),
    ] {
        let answer = reqwest::get(format!("{}{path}", nginx.url)).await.unwrap();
        assert_eq!(answer.status(), 200, "{path}: {}", nginx.error_log());
        let headers = answer.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .contains(media_type),
            "{path}: {headers:?}"
        );
        assert_eq!(
            headers["content-security-policy"],
            taproom_server::webapp::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            answer.bytes().await.unwrap(),
            std::fs::read(dist.join(file)).unwrap(),
            "{path}"
        );
    }
    // The API is still the services', and unknown paths still a problem.
    let beers = reqwest::get(format!("{}/v1/beers", nginx.url))
        .await
        .unwrap();
    assert_eq!(beers.status(), 200);
    let missing = reqwest::get(format!("{}/nothing-here", nginx.url))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}
