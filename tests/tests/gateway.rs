//! The front door: a real nginx with `deploy/nginx.conf` in front of every service, and the
//! whole shopping flow through it with the generated clients pointed at the gateway.

use serde_json::Value;
use std::num::NonZeroU32;
use taproom_tests::{bearer_client, eventually, on_both_databases, problem, Backend, Nginx, Shop};

fn addr(url: &str) -> Vec<String> {
    vec![url.trim_start_matches("http://").to_string()]
}

async fn the_shop_works_through_the_gateway(backend: Backend) {
    let mut shop = Shop::start(backend).await;
    let config = shop.users.db.config();
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let tasks = taproom_server::tasks::start(&config, &shop.users.peers(), &log)
        .await
        .unwrap();
    let tasks_url = format!("http://{}", tasks.local_addr());
    let gateway = Nginx::start(&[
        ("users", addr(&shop.users.base_url)),
        ("beers", addr(&shop.beers_url)),
        ("orders", addr(&shop.orders_url)),
        ("tasks", addr(&tasks_url)),
        ("promotions", addr(&shop.promotions_url)),
    ])
    .await;
    let gw = gateway.url.as_str();

    // Register and log in through the gateway.
    let users = taproom_client::users::Client::new(gw, Default::default());
    users
        .create_user()
        .body(taproom_client::users::types::CreateUser {
            username: "alice".parse().unwrap(),
            email: "alice@example.com".parse().unwrap(),
            password: "a long password".parse().unwrap(),
            first_name: None,
            last_name: None,
        })
        .send()
        .await
        .unwrap();
    let token = users
        .create_token()
        .body(taproom_client::users::types::Credentials {
            username: Some("alice".parse().unwrap()),
            email: None,
            password: "a long password".parse().unwrap(),
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let me = taproom_client::users::Client::new_with_client(
        gw,
        bearer_client(&token),
        Default::default(),
    );
    assert_eq!(
        me.get_current_user()
            .send()
            .await
            .unwrap()
            .username
            .as_str(),
        "alice"
    );
    let jwks = users.get_jwks().send().await.unwrap();
    assert!(!jwks.keys.is_empty(), "/.well-known is routed to users");

    // An admin fills the catalogue and makes a promo code, through the gateway.
    let admin_token = shop.users.admin_token().await;
    let beer = taproom_client::beers::Client::new_with_client(
        gw,
        bearer_client(&admin_token),
        Default::default(),
    )
    .create_beer()
    .body(taproom_client::beers::types::CreateBeer {
        sku: "IPA-1".parse().unwrap(),
        name: "Hoppy Days IPA".parse().unwrap(),
        price: "4.00".parse().unwrap(),
        style: None,
        image_url: None,
    })
    .send()
    .await
    .unwrap()
    .into_inner();
    taproom_client::promotions::Client::new_with_client(
        gw,
        bearer_client(&admin_token),
        Default::default(),
    )
    .create_promotion()
    .body(taproom_client::promotions::types::CreatePromotion {
        code: "GATE-25".parse().unwrap(),
        percent_off: NonZeroU32::new(25).unwrap(),
        max_uses_per_user: NonZeroU32::new(1).unwrap(),
    })
    .send()
    .await
    .unwrap();

    // Browse, fill an order, check out with the code.
    let beers = taproom_client::beers::Client::new(gw, Default::default());
    assert_eq!(
        beers
            .list_beers()
            .q("hoppy")
            .send()
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let orders = taproom_client::orders::Client::new_with_client(
        gw,
        bearer_client(&token),
        Default::default(),
    );
    let order = orders.create_order().send().await.unwrap().into_inner();
    orders
        .add_order_item()
        .order_id(order.id)
        .body(taproom_client::orders::types::AddItem {
            beer_id: beer.id,
            quantity: NonZeroU32::new(3).unwrap(),
        })
        .send()
        .await
        .unwrap();
    let closed = orders
        .checkout_order()
        .order_id(order.id)
        .idempotency_key("gateway-1")
        .body(taproom_client::orders::types::Checkout {
            expected_total: None,
            promo_code: Some("GATE-25".parse().unwrap()),
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (closed.subtotal.as_str(), closed.total.as_str()),
        ("12.00", "9.00")
    );

    // And a to-do.
    let todo = taproom_client::tasks::Client::new_with_client(
        gw,
        bearer_client(&token),
        Default::default(),
    );
    todo.create_task()
        .body(taproom_client::tasks::types::CreateTask {
            title: "Collect the beer".parse().unwrap(),
            description: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(todo.list_tasks().send().await.unwrap().items.len(), 1);

    // Request ids pass through both ways and show up in the gateway's log.
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{gw}/v1/beers/{}", beer.id))
        .header("x-request-id", "through-the-gate-7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "through-the-gate-7");
    // nginx writes the line just after answering.
    eventually(5, "the request id in the gateway's log", || async {
        gateway
            .access_log()
            .contains("request_id=through-the-gate-7")
    })
    .await;

    // The combined API reference, with every service's operations.
    let page = http.get(format!("{gw}/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/gateway/openapi.json"));
    let doc: Value = http
        .get(format!("{gw}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = doc.to_string();
    for op in [
        "create_user",
        "list_beers",
        "checkout_order",
        "create_task",
        "create_promotion",
        "get_jwks",
    ] {
        assert!(
            text.contains(&format!("\"operationId\":\"{op}\"")),
            "{op} in the gateway document"
        );
    }
    assert_eq!(
        http.get(format!("{gw}/docs/swagger-ui.css"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // What the gateway answers itself: problems too.
    let resp = http.get(format!("{gw}/v2/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 404);
    let resp = http
        .post(format!("{gw}/v1/users"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    // A service with no live instance: 503 problem with Retry-After, not a hang.
    shop.stop_beers().await;
    let (status, p) = problem(beers.get_beer().beer_id(beer.id).send().await);
    assert_eq!(status, 503, "{p:?}");
    let resp = http.get(format!("{gw}/v1/beers")).send().await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "5");
    drop(tasks);
}

on_both_databases!(the_shop_works_through_the_gateway);
