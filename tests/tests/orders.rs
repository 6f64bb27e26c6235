//! Contract tests of the orders service, on SQLite and PostgreSQL, through the generated
//! clients: the shopping flow across users, beers and orders, exact money, the catalogue
//! failing underneath, idempotent and concurrent checkout, and other users' orders.

use serde_json::{json, Value};
use std::num::NonZeroU32;
use taproom_client::orders::{types, Client};
use taproom_tests::{bearer_client, on_both_databases, problem, Backend, Shop};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

async fn beer(shop: &Shop, sku: &str, name: &str, price: &str) -> Uuid {
    let admin = shop.beers_admin().await;
    admin
        .create_beer()
        .body(taproom_client::beers::types::CreateBeer {
            sku: sku.parse().unwrap(),
            name: name.parse().unwrap(),
            price: price.parse().unwrap(),
            style: None,
            image_url: None,
        })
        .send()
        .await
        .unwrap()
        .id
}

async fn new_order(client: &Client) -> types::Order {
    client.create_order().send().await.unwrap().into_inner()
}

async fn add(client: &Client, order: Uuid, beer: Uuid, quantity: u32) -> types::Order {
    client
        .add_order_item()
        .order_id(order)
        .body(types::AddItem {
            beer_id: beer,
            quantity: NonZeroU32::new(quantity).unwrap(),
        })
        .send()
        .await
        .unwrap()
        .into_inner()
}

fn add_item(
    client: &Client,
    order: Uuid,
    beer: Uuid,
    quantity: u32,
) -> taproom_client::orders::builder::AddOrderItem<'_> {
    client
        .add_order_item()
        .order_id(order)
        .body(types::AddItem {
            beer_id: beer,
            quantity: NonZeroU32::new(quantity).unwrap(),
        })
}

async fn a_customer_browses_fills_and_checks_out_an_order(backend: Backend) {
    let shop = Shop::start(backend).await;
    let ipa = beer(&shop, "IPA-1", "Hoppy Days IPA", "4.50").await;
    let stout = beer(&shop, "STOUT-1", "Dark Night", "5.25").await;
    let (alice_id, alice, alice_http) = shop.customer("alice").await;

    // Browse (public), then start an order.
    let catalogue = shop.beers.list_beers().send().await.unwrap().into_inner();
    assert_eq!(catalogue.items.len(), 2);
    let resp = alice_http
        .post(format!("{}/v1/orders", shop.orders_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let order: types::Order = resp.json().await.unwrap();
    assert_eq!(location, format!("/v1/orders/{}", order.id));
    assert_eq!(order.user_id, alice_id);
    assert_eq!(order.status, types::OrderStatus::Open);
    assert!(order.items.is_empty());
    assert_eq!(
        (order.subtotal.as_str(), order.total.as_str()),
        ("0.00", "0.00")
    );

    // Items snapshot the catalogue; the same beer again adds to its quantity.
    add(&alice, order.id, ipa, 2).await;
    add(&alice, order.id, stout, 1).await;
    let filled = add(&alice, order.id, ipa, 1).await;
    let lines: Vec<(&str, &str, u32, &str)> = filled
        .items
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                i.unit_price.as_str(),
                i.quantity,
                i.line_total.as_str(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("Hoppy Days IPA", "4.50", 3, "13.50"),
            ("Dark Night", "5.25", 1, "5.25")
        ]
    );
    assert_eq!(filled.items[0].sku, "IPA-1");
    assert_eq!(
        (
            filled.subtotal.as_str(),
            filled.discount.as_str(),
            filled.total.as_str()
        ),
        ("18.75", "0.00", "18.75")
    );

    // A later catalogue price change does not touch the snapshot.
    shop.beers_admin()
        .await
        .update_beer()
        .beer_id(ipa)
        .body(taproom_client::beers::types::UpdateBeer {
            price: Some("9.00".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    let again = alice
        .get_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.total.as_str(), "18.75");

    // Remove an item; removing it again is 404.
    let without = alice
        .remove_order_item()
        .order_id(order.id)
        .beer_id(stout)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(without.items.len(), 1);
    assert_eq!(without.total.as_str(), "13.50");
    assert_eq!(
        problem(
            alice
                .remove_order_item()
                .order_id(order.id)
                .beer_id(stout)
                .send()
                .await
        )
        .0,
        404
    );

    // Checkout closes it and returns the final totals.
    let closed = alice
        .checkout_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.status, types::OrderStatus::Closed);
    assert_eq!(closed.total.as_str(), "13.50");
    assert!(closed.closed_at.is_some());
    assert_eq!(
        alice
            .get_order()
            .order_id(order.id)
            .send()
            .await
            .unwrap()
            .into_inner(),
        closed
    );

    // A closed order never changes again: 409, nothing written.
    let (status, p) = problem(add_item(&alice, order.id, stout, 1).send().await);
    assert_eq!(status, 409, "{p:?}");
    assert_eq!(
        problem(
            alice
                .remove_order_item()
                .order_id(order.id)
                .beer_id(ipa)
                .send()
                .await
        )
        .0,
        409
    );
    assert_eq!(
        problem(alice.checkout_order().order_id(order.id).send().await).0,
        409
    );
    assert_eq!(
        alice
            .get_order()
            .order_id(order.id)
            .send()
            .await
            .unwrap()
            .into_inner(),
        closed
    );

    // Lists: own orders, filterable by status.
    let open = new_order(&alice).await;
    let all = alice.list_orders().send().await.unwrap().into_inner();
    assert_eq!(
        all.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        [order.id, open.id]
    );
    let only_open = alice
        .list_orders()
        .status(types::OrderStatus::Open)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        only_open.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        [open.id]
    );
    let paged = alice
        .list_orders()
        .limit(NonZeroU32::new(1).unwrap())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paged.items.len(), 1);
    let rest = alice
        .list_orders()
        .limit(NonZeroU32::new(1).unwrap())
        .page_token(paged.next_page_token.unwrap())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.items[0].id, open.id);
    assert!(rest.next_page_token.is_none());
}

async fn money_is_exact_to_the_cent(backend: Backend) {
    let shop = Shop::start(backend).await;
    let dime = beer(&shop, "DIME-1", "Ten Cent Lager", "0.10").await;
    let fifth = beer(&shop, "FIFTH-1", "Twenty", "0.20").await;
    let big = beer(&shop, "BIG-1", "Most Expensive", "999999.99").await;
    let (_, alice, _) = shop.customer("alice").await;
    let order = new_order(&alice).await;
    let o = add(&alice, order.id, dime, 3).await;
    assert_eq!(
        (o.items[0].line_total.as_str(), o.total.as_str()),
        ("0.30", "0.30"),
        "3 x 0.10 = 0.30"
    );
    let o = add(&alice, order.id, fifth, 1).await;
    assert_eq!(o.total.as_str(), "0.50");
    let o = add(&alice, order.id, big, 100).await;
    assert_eq!(o.items[2].line_total.as_str(), "99999999.00");
    assert_eq!(o.total.as_str(), "99999999.50");
    let closed = alice
        .checkout_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.total.as_str(), "99999999.50");
}

async fn bad_items_are_refused_and_nothing_is_written(backend: Backend) {
    let shop = Shop::start(backend).await;
    let ipa = beer(&shop, "IPA-1", "Hoppy Days IPA", "4.50").await;
    let (_, alice, alice_http) = shop.customer("alice").await;
    let order = new_order(&alice).await;

    // Unknown beer: 422.
    let (status, p) = problem(add_item(&alice, order.id, Uuid::now_v7(), 1).send().await);
    assert_eq!(status, 422, "{p:?}");
    // At most 100 of one beer, counting what is already there.
    add(&alice, order.id, ipa, 60).await;
    let (status, _) = problem(add_item(&alice, order.id, ipa, 41).send().await);
    assert_eq!(status, 422);
    assert_eq!(add(&alice, order.id, ipa, 40).await.items[0].quantity, 100);
    // Quantities outside 1..100, and other malformed bodies: 400 with the pointer.
    let url = format!("{}/v1/orders/{}/items", shop.orders_url, order.id);
    for (body, pointer) in [
        (json!({"beer_id": ipa, "quantity": 0}), "/quantity"),
        (json!({"beer_id": ipa, "quantity": 101}), "/quantity"),
        (json!({"beer_id": ipa, "quantity": 1.5}), "/quantity"),
        (json!({"beer_id": "nope", "quantity": 1}), "/beer_id"),
        (json!({"beer_id": ipa}), "/quantity"),
        (
            json!({"beer_id": ipa, "quantity": 1, "price": "0.01"}),
            "/price",
        ),
    ] {
        let resp = alice_http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    let now = alice
        .get_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.items.len(), 1);
    assert_eq!(now.items[0].quantity, 100);

    // An empty order cannot be checked out; a wrong expected_total is 409; both leave it open.
    let empty = new_order(&alice).await;
    assert_eq!(
        problem(alice.checkout_order().order_id(empty.id).send().await).0,
        422
    );
    let (status, p) = problem(
        alice
            .checkout_order()
            .order_id(order.id)
            .body(types::Checkout {
                expected_total: Some("1.00".parse().unwrap()),
                promo_code: None,
            })
            .send()
            .await,
    );
    assert_eq!(status, 409);
    assert!(p.detail.unwrap().contains("450.00"));
    assert_eq!(
        alice
            .get_order()
            .order_id(order.id)
            .send()
            .await
            .unwrap()
            .status,
        types::OrderStatus::Open
    );
    let closed = alice
        .checkout_order()
        .order_id(order.id)
        .body(types::Checkout {
            expected_total: Some("450.00".parse().unwrap()),
            promo_code: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status, types::OrderStatus::Closed);
    // No token: 401.
    let anonymous = Client::new(&shop.orders_url, Default::default());
    assert_eq!(problem(anonymous.create_order().send().await).0, 401);
    assert_eq!(
        problem(anonymous.get_order().order_id(order.id).send().await).0,
        401
    );
}

async fn the_catalogue_down_is_503_and_nothing_is_written(backend: Backend) {
    let mut shop = Shop::start(backend).await;
    let ipa = beer(&shop, "IPA-1", "Hoppy Days IPA", "4.50").await;
    let (_, alice, _) = shop.customer("alice").await;
    let order = new_order(&alice).await;
    add(&alice, order.id, ipa, 1).await;

    shop.stop_beers().await;
    let result = add_item(&alice, order.id, ipa, 2).send().await;
    match result {
        Err(taproom_client::orders::Error::ErrorResponse(r)) => {
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers()["retry-after"], "5");
            assert!(r.detail.as_deref().unwrap().contains("nothing was changed"));
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let now = alice
        .get_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.items.len(), 1);
    assert_eq!(now.items[0].quantity, 1, "no partial item");
    // What does not need the catalogue still works.
    assert_eq!(
        alice
            .checkout_order()
            .order_id(order.id)
            .send()
            .await
            .unwrap()
            .total
            .as_str(),
        "4.50"
    );
}

/// A stand-in for the beers service on a local port: records the head of every request,
/// then answers each as `answer` says (or never, when `None`).
async fn fake_beers(
    answer: Option<String>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
                match answer {
                    Some(response) => {
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                    // Hold the connection open and say nothing.
                    None => tokio::time::sleep(std::time::Duration::from_secs(30)).await,
                }
            });
        }
    });
    (url, rx)
}

/// Orders, on `shop`'s users and database, against some other beers service.
async fn orders_against(
    shop: &Shop,
    beers_url: &str,
    timeout_ms: u64,
) -> (
    dropshot::HttpServer<taproom_server::orders::OrdersContext>,
    Client,
    String,
) {
    let mut config = shop.users.db.config();
    config.service_timeout_ms = timeout_ms;
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let mut peers = shop.peers();
    peers.insert("beers", beers_url.to_string());
    let server = taproom_server::orders::start(&config, &peers, &log)
        .await
        .unwrap();
    let (_, token) = shop.users.register("bob").await;
    let url = format!("http://{}", server.local_addr());
    let client = Client::new_with_client(&url, bearer_client(&token), Default::default());
    (server, client, token)
}

async fn a_slow_catalogue_is_cut_off_at_the_timeout(backend: Backend) {
    let shop = Shop::start(backend).await;
    let (slow_url, mut requests) = fake_beers(None).await;
    let (_server, bob, _) = orders_against(&shop, &slow_url, 300).await;
    let order = new_order(&bob).await;
    let started = std::time::Instant::now();
    let (status, p) = problem(add_item(&bob, order.id, Uuid::now_v7(), 1).send().await);
    assert_eq!(status, 503, "{p:?}");
    assert!(requests.recv().await.is_some(), "the catalogue was asked");
    // Bounded by SERVICE_TIMEOUT_MS (300 ms here), not by the fake's 30 s silence.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(bob
        .get_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn lookups_carry_the_callers_token_and_request_id(backend: Backend) {
    let shop = Shop::start(backend).await;
    let body = r#"{"type":"about:blank","title":"Not Found","status":404,"request_id":"x"}"#;
    let not_found = format!(
        "HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (url, mut requests) = fake_beers(Some(not_found)).await;
    let (_server, _, token) = orders_against(&shop, &url, 2000).await;
    let orders_url = format!("http://{}", _server.local_addr());
    let http = bearer_client(&token);
    let order: types::Order = http
        .post(format!("{orders_url}/v1/orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = http
        .post(format!("{orders_url}/v1/orders/{}/items", order.id))
        .header("x-request-id", "trace-me-42")
        .json(&json!({"beer_id": Uuid::now_v7(), "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422, "the catalogue said 404");
    let head = requests.recv().await.unwrap();
    assert!(head.starts_with("get /v1/beers/"), "{head}");
    assert!(head.contains("x-request-id: trace-me-42\r\n"), "{head}");
    assert!(
        head.contains(&format!(
            "authorization: bearer {}\r\n",
            token.to_lowercase()
        )),
        "{head}"
    );
}

async fn checkout_is_idempotent_with_a_key(backend: Backend) {
    let shop = Shop::start(backend).await;
    let ipa = beer(&shop, "IPA-1", "Hoppy Days IPA", "4.50").await;
    let (_, alice, _) = shop.customer("alice").await;
    let order = new_order(&alice).await;
    add(&alice, order.id, ipa, 2).await;
    let checkout = |key: &str| {
        alice
            .checkout_order()
            .order_id(order.id)
            .idempotency_key(key.to_string())
    };

    let first = checkout("key-1").send().await.unwrap().into_inner();
    assert_eq!(first.total.as_str(), "9.00");
    // A retry with the same key: the same answer, not a 409.
    let retry = checkout("key-1").send().await.unwrap().into_inner();
    assert_eq!(retry, first);
    // Without the key, or with a new one, the order is simply closed.
    assert_eq!(
        problem(alice.checkout_order().order_id(order.id).send().await).0,
        409
    );
    assert_eq!(problem(checkout("key-2").send().await).0, 409);
    // The same key for a different request: 422.
    let (status, p) = problem(
        checkout("key-1")
            .body(types::Checkout {
                expected_total: Some("9.00".parse().unwrap()),
                promo_code: None,
            })
            .send()
            .await,
    );
    assert_eq!(status, 422, "{p:?}");
    let other = new_order(&alice).await;
    add(&alice, other.id, ipa, 1).await;
    let (status, _) = problem(
        alice
            .checkout_order()
            .order_id(other.id)
            .idempotency_key("key-1")
            .send()
            .await,
    );
    assert_eq!(status, 422);
    assert_eq!(
        alice
            .get_order()
            .order_id(other.id)
            .send()
            .await
            .unwrap()
            .status,
        types::OrderStatus::Open
    );
    // Keys are per user: bob's key-1 is his own.
    let (_, bob, _) = shop.customer("bob").await;
    let bobs = new_order(&bob).await;
    add(&bob, bobs.id, ipa, 1).await;
    let done = bob
        .checkout_order()
        .order_id(bobs.id)
        .idempotency_key("key-1")
        .send()
        .await
        .unwrap();
    assert_eq!(done.total.as_str(), "4.50");
    // Malformed keys are refused before anything happens.
    let (_, token) = shop.users.register("carol").await;
    let http = bearer_client(&token);
    for bad in ["", &"k".repeat(256), "has space"] {
        let resp = http
            .post(format!(
                "{}/v1/orders/{}/checkout",
                shop.orders_url, other.id
            ))
            .header("idempotency-key", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "key {bad:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["pointer"], "/header/Idempotency-Key");
    }
}

async fn concurrent_checkouts_close_an_order_once(backend: Backend) {
    let shop = Shop::start(backend).await;
    let ipa = beer(&shop, "IPA-1", "Hoppy Days IPA", "4.50").await;
    let (_, alice, _) = shop.customer("alice").await;

    // No key: of eight at once, exactly one wins; the rest are told it is closed.
    let order = new_order(&alice).await;
    add(&alice, order.id, ipa, 1).await;
    let attempts = (0..8).map(|_| alice.checkout_order().order_id(order.id).send());
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_eq!(problem(r).0, 409);
    }

    // One key, sent eight times at once (a client retrying eagerly): all get the one answer.
    let order = new_order(&alice).await;
    add(&alice, order.id, ipa, 3).await;
    let attempts = (0..8).map(|_| {
        alice
            .checkout_order()
            .order_id(order.id)
            .idempotency_key("same")
            .send()
    });
    let results = futures::future::join_all(attempts).await;
    let bodies: Vec<types::Order> = results
        .into_iter()
        .map(|r| r.expect("every retry succeeds").into_inner())
        .collect();
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "one answer for one key"
    );
    assert_eq!(bodies[0].total.as_str(), "13.50");

    // Adding while checking out: either the item made it in before closing, or it is 409.
    let order = new_order(&alice).await;
    add(&alice, order.id, ipa, 1).await;
    let (added, closed) = tokio::join!(
        add_item(&alice, order.id, ipa, 1).send(),
        alice.checkout_order().order_id(order.id).send()
    );
    let closed = closed.unwrap().into_inner();
    let final_order = alice
        .get_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(final_order, closed, "nothing changed after checkout");
    match added {
        Ok(_) => assert_eq!(closed.items[0].quantity, 2),
        Err(e) => {
            assert_eq!(problem::<(), _>(Err(e)).0, 409);
            assert_eq!(closed.items[0].quantity, 1);
        }
    }
}

async fn other_peoples_orders_do_not_exist_for_you(backend: Backend) {
    let shop = Shop::start(backend).await;
    let ipa = beer(&shop, "IPA-1", "Hoppy Days IPA", "4.50").await;
    let (alice_id, alice, _) = shop.customer("alice").await;
    let (_, mallory, _) = shop.customer("mallory").await;
    let order = new_order(&alice).await;
    add(&alice, order.id, ipa, 1).await;

    assert_eq!(
        problem(mallory.get_order().order_id(order.id).send().await).0,
        404
    );
    assert_eq!(
        problem(add_item(&mallory, order.id, ipa, 1).send().await).0,
        404
    );
    assert_eq!(
        problem(
            mallory
                .remove_order_item()
                .order_id(order.id)
                .beer_id(ipa)
                .send()
                .await
        )
        .0,
        404
    );
    assert_eq!(
        problem(mallory.checkout_order().order_id(order.id).send().await).0,
        404
    );
    assert!(mallory.list_orders().send().await.unwrap().items.is_empty());
    // The same answer as for an order that does not exist at all.
    let (status, nobody) = problem(mallory.get_order().order_id(Uuid::now_v7()).send().await);
    let (_, theirs) = problem(mallory.get_order().order_id(order.id).send().await);
    assert_eq!((status, nobody.detail), (404, theirs.detail));
    // Untouched by all that.
    let now = alice
        .get_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!((now.items.len(), now.status), (1, types::OrderStatus::Open));

    // An admin sees everyone's.
    let admin = shop.orders_admin().await;
    assert_eq!(
        admin
            .get_order()
            .order_id(order.id)
            .send()
            .await
            .unwrap()
            .user_id,
        alice_id
    );
    let everyone = admin.list_orders().send().await.unwrap().into_inner();
    assert_eq!(
        everyone.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        [order.id]
    );
}

/// Idempotency keys expire after IDEMPOTENCY_RETENTION_SECS: checkout no longer deletes
/// expired ones (under the order's lock); the periodic pruning does, and keeps live ones.
/// An expired key may be used again.
async fn expired_idempotency_keys_are_pruned_outside_checkout(backend: Backend) {
    let shop = Shop::start(backend).await;
    let ipa = beer(&shop, "IPA-1", "Hoppy Days IPA", "4.50").await;
    let (alice_id, alice, _) = shop.customer("alice").await;
    let config = shop.users.db.config();
    let orders = &taproom_server::orders::SERVICE;
    let db = taproom_server::runtime::server::connect(&config, orders.name, orders.migrator)
        .await
        .unwrap();
    let long_ago = "2020-01-01T00:00:00.000000Z";
    // Someone's key from long ago, and alice's own "again", expired, for another request.
    for (user, key) in [(Uuid::now_v7(), "ancient"), (alice_id, "again")] {
        sqlx::query(
            "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, response, created_at) \
             VALUES ($1, $2, 'another request', '{}', $3)",
        )
        .bind(user.to_string())
        .bind(key)
        .bind(long_ago)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let checkout = |order: Uuid, key: &'static str| {
        alice
            .checkout_order()
            .order_id(order)
            .idempotency_key(key.to_string())
            .send()
    };
    let order = new_order(&alice).await;
    add(&alice, order.id, ipa, 1).await;
    checkout(order.id, "fresh").await.unwrap();
    let keys = || async {
        let mut keys: Vec<String> = sqlx::query_scalar("SELECT idem_key FROM idempotency_keys")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        keys.sort();
        keys
    };
    assert_eq!(
        keys().await,
        ["again", "ancient", "fresh"],
        "checkout pruned nothing"
    );
    // The expired key is not replayed (its request differs): it is simply taken again.
    let second = new_order(&alice).await;
    add(&alice, second.id, ipa, 2).await;
    let closed = checkout(second.id, "again").await.unwrap().into_inner();
    assert_eq!(closed.total.as_str(), "9.00");
    assert_eq!(
        checkout(second.id, "again").await.unwrap().into_inner(),
        closed
    );

    let pruned = taproom_server::runtime::retention::prune(
        &db,
        &taproom_server::orders::retention_rules(&config),
    )
    .await
    .unwrap();
    assert!(pruned.contains(&("idempotency_keys", 1)), "{pruned:?}");
    assert_eq!(keys().await, ["again", "fresh"]);
    // Kept keys still replay.
    assert_eq!(
        checkout(order.id, "fresh").await.unwrap().into_inner().id,
        order.id
    );
}

on_both_databases!(
    expired_idempotency_keys_are_pruned_outside_checkout,
    a_customer_browses_fills_and_checks_out_an_order,
    money_is_exact_to_the_cent,
    bad_items_are_refused_and_nothing_is_written,
    the_catalogue_down_is_503_and_nothing_is_written,
    a_slow_catalogue_is_cut_off_at_the_timeout,
    lookups_carry_the_callers_token_and_request_id,
    checkout_is_idempotent_with_a_key,
    concurrent_checkouts_close_an_order_once,
    other_peoples_orders_do_not_exist_for_you,
);
