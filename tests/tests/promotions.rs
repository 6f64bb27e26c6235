//! Promotions and reliable events, on SQLite and PostgreSQL, over HTTP and over NATS
//! JetStream: promo codes at checkout, and `order.placed` events that are never lost and
//! count exactly once, whatever fails in between. Services run in-process on real ports
//! with real databases; NATS is a private `nats-server` the tests stop and start.

use std::num::NonZeroU32;
use std::time::Duration;
use taproom_client::orders::types as orders;
use taproom_client::promotions::types;
use taproom_server::runtime::events::{self, SIGNATURE_HEADER};
use taproom_server::runtime::outbox::{Relay, RelayOptions};
use taproom_server::runtime::{nats, retention};
use taproom_tests::{
    bearer_client, eventually, on_both_databases, problem, Backend, Nats, Shop, EVENTS_TOKEN,
};
use uuid::Uuid;

/// How events travel in a test.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Http,
    Nats,
}

struct World {
    shop: Shop,
    /// The private NATS server, when events go that way.
    nats: Option<Nats>,
    beer: Uuid,
    admin: taproom_client::promotions::Client,
}

/// The shop with a beer at 4.55 and a promo code `code` (10% off, `max` uses per user).
/// `relay: false` leaves orders without a relay, for tests that drive relays themselves.
async fn world(backend: Backend, transport: Transport, max: u32, relay: bool) -> World {
    let nats = match transport {
        Transport::Nats => Some(Nats::start().await),
        Transport::Http => None,
    };
    let nats_url = nats.as_ref().map(|n| n.url.clone());
    world_on(backend, nats, nats_url, max, relay).await
}

/// `world` on a NATS server of the test's making, reached at `nats_url`.
async fn world_on(
    backend: Backend,
    nats: Option<Nats>,
    nats_url: Option<String>,
    max: u32,
    relay: bool,
) -> World {
    let shop = Shop::start_with(backend, move |config| {
        config.nats_url = nats_url.clone();
        config.outbox_relay = relay;
    })
    .await;
    let beer = shop
        .beers_admin()
        .await
        .create_beer()
        .body(taproom_client::beers::types::CreateBeer {
            sku: "IPA-1".parse().unwrap(),
            name: "Hoppy Days IPA".parse().unwrap(),
            price: "4.55".parse().unwrap(),
            style: None,
            image_url: None,
        })
        .send()
        .await
        .unwrap()
        .id;
    let admin = shop.promotions_admin().await;
    admin
        .create_promotion()
        .body(types::CreatePromotion {
            code: "SPRING-10".parse().unwrap(),
            percent_off: NonZeroU32::new(10).unwrap(),
            max_uses_per_user: NonZeroU32::new(max).unwrap(),
        })
        .send()
        .await
        .unwrap();
    World {
        shop,
        nats,
        beer,
        admin,
    }
}

/// A new order with one beer, checked out with `code`.
async fn buy(
    w: &World,
    client: &taproom_client::orders::Client,
    code: Option<&str>,
) -> Result<orders::Order, taproom_client::orders::Error<orders::Problem>> {
    let order = client.create_order().send().await.unwrap().into_inner();
    client
        .add_order_item()
        .order_id(order.id)
        .body(orders::AddItem {
            beer_id: w.beer,
            quantity: NonZeroU32::new(1).unwrap(),
        })
        .send()
        .await
        .unwrap();
    client
        .checkout_order()
        .order_id(order.id)
        .body(orders::Checkout {
            expected_total: None,
            promo_code: code.map(|c| c.parse().unwrap()),
        })
        .send()
        .await
        .map(|r| r.into_inner())
}

/// Uses of SPRING-10 by `user` that promotions has counted.
async fn counted(w: &World, user: Uuid) -> u32 {
    w.admin
        .check_eligibility()
        .code("SPRING-10")
        .user_id(user)
        .send()
        .await
        .unwrap()
        .uses
}

/// Undelivered events in the orders outbox, as its `readyz` reports them.
async fn backlog(w: &World) -> i64 {
    let orders = taproom_client::orders::Client::new(&w.shop.orders_url, Default::default());
    let health = orders.readyz().send().await.unwrap().into_inner();
    health.outbox.expect("orders reports its outbox").depth
}

/// A relay on the orders database, configured like the service's, with fast retries.
async fn relay(w: &World, claim: Duration) -> Relay {
    let config = w.shop.users.db.config();
    let config = taproom_server::runtime::config::Config {
        nats_url: w.nats.as_ref().map(|n| n.url.clone()),
        ..config
    };
    let orders = &taproom_server::orders::SERVICE;
    let db = taproom_server::runtime::server::connect(&config, orders.name, orders.migrator)
        .await
        .unwrap();
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let options = RelayOptions {
        poll: Duration::from_millis(50),
        claim,
        batch: 5,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
    };
    taproom_server::orders::relay(&config, &db, &w.shop.promotions_url, options, &log)
        .await
        .unwrap()
}

async fn codes_take_a_percentage_off_and_are_limited_per_user(backend: Backend) {
    let w = world(backend, Transport::Http, 2, true).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;

    // Only admins create codes; codes are unique.
    let (_, token) = w.shop.users.register("carol").await;
    let carol = taproom_client::promotions::Client::new_with_client(
        &w.shop.promotions_url,
        bearer_client(&token),
        Default::default(),
    );
    let spring = w
        .admin
        .get_promotion()
        .code("SPRING-10")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!((spring.percent_off, spring.max_uses_per_user), (10, 2));
    // Customers cannot look codes up, so they cannot find them by trying names: the same
    // 403 for a code that exists and one that does not.
    assert_eq!(
        problem(carol.get_promotion().code("SPRING-10").send().await).0,
        403
    );
    assert_eq!(
        problem(carol.get_promotion().code("NOPE-1").send().await).0,
        403
    );
    let again = types::CreatePromotion {
        code: "SPRING-10".parse().unwrap(),
        percent_off: NonZeroU32::new(5).unwrap(),
        max_uses_per_user: NonZeroU32::new(1).unwrap(),
    };
    assert_eq!(
        problem(carol.create_promotion().body(again.clone()).send().await).0,
        403
    );
    assert_eq!(
        problem(w.admin.create_promotion().body(again).send().await).0,
        409
    );
    assert_eq!(
        problem(w.admin.get_promotion().code("NOPE-1").send().await).0,
        404
    );

    // 10% of 4.55 is 0.455: half up, 0.46 off.
    let first = buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    assert_eq!(
        (
            first.subtotal.as_str(),
            first.discount.as_str(),
            first.total.as_str()
        ),
        ("4.55", "0.46", "4.09")
    );
    assert_eq!(first.promo_code.as_deref(), Some("SPRING-10"));
    buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    // A third use is refused even if the events of the first two are still on their way.
    let (status, p) = problem(buy(&w, &alice, Some("SPRING-10")).await);
    assert_eq!(status, 422, "{p:?}");
    // Unknown codes are 422 too; without a code checkout goes on as before.
    assert_eq!(problem(buy(&w, &alice, Some("NOPE-1")).await).0, 422);
    assert_eq!(
        buy(&w, &alice, None).await.unwrap().discount.as_str(),
        "0.00"
    );

    // The events arrive and count: promotions agrees alice has used it twice.
    eventually(20, "both uses counted", || async {
        counted(&w, alice_id).await == 2
    })
    .await;
    eventually(20, "outbox drained", || async { backlog(&w).await == 0 }).await;
    let seen = alice_eligibility(&w, &alice_id).await;
    assert!(!seen.eligible);
    // Someone else still may.
    let (bob_id, bob, _) = w.shop.customer("bob").await;
    assert_eq!(
        buy(&w, &bob, Some("SPRING-10"))
            .await
            .unwrap()
            .total
            .as_str(),
        "4.09"
    );
    eventually(20, "bob's use counted", || async {
        counted(&w, bob_id).await == 1
    })
    .await;
    assert_eq!(counted(&w, alice_id).await, 2, "alice's count unchanged");
}

async fn alice_eligibility(w: &World, alice: &Uuid) -> types::Eligibility {
    w.admin
        .check_eligibility()
        .code("SPRING-10")
        .user_id(*alice)
        .send()
        .await
        .unwrap()
        .into_inner()
}

async fn promotions_down_at_checkout_is_503_and_nothing_is_written(backend: Backend) {
    let mut w = world(backend, Transport::Http, 2, true).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    w.shop.stop_promotions().await;
    let order = alice.create_order().send().await.unwrap().into_inner();
    alice
        .add_order_item()
        .order_id(order.id)
        .body(orders::AddItem {
            beer_id: w.beer,
            quantity: NonZeroU32::new(2).unwrap(),
        })
        .send()
        .await
        .unwrap();
    let result = alice
        .checkout_order()
        .order_id(order.id)
        .body(orders::Checkout {
            expected_total: None,
            promo_code: Some("SPRING-10".parse().unwrap()),
        })
        .send()
        .await;
    match result {
        Err(taproom_client::orders::Error::ErrorResponse(r)) => {
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers()["retry-after"], "5");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let still = alice
        .get_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (still.status, still.promo_code),
        (orders::OrderStatus::Open, None)
    );
    assert_eq!(
        backlog(&w).await,
        0,
        "no event for a checkout that did not happen"
    );

    // Without a code, checkout does not need promotions at all; its event waits.
    let closed = alice
        .checkout_order()
        .order_id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.total.as_str(), "9.10");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        backlog(&w).await,
        1,
        "the event waits while promotions is down"
    );
    w.shop.start_promotions().await;
    eventually(40, "the waiting event is delivered", || async {
        backlog(&w).await == 0
    })
    .await;
    assert_eq!(
        counted(&w, alice_id).await,
        0,
        "an order without a code uses nothing"
    );
}

/// Checkouts while promotions cannot take events, then promotions back: every use is
/// counted exactly once.
async fn uses_are_counted_once_after_promotions_comes_back(backend: Backend, transport: Transport) {
    let mut w = world(backend, transport, 10, false).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    for _ in 0..4 {
        buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    }
    assert_eq!(backlog(&w).await, 4);
    w.shop.stop_promotions().await;
    let relay = relay(&w, Duration::from_secs(30)).await.spawn();
    // Deliveries fail (HTTP: connection refused; NATS: stored in the stream, nobody reading).
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.shop.start_promotions().await;
    eventually(40, "all four uses counted", || async {
        counted(&w, alice_id).await == 4
    })
    .await;
    eventually(20, "outbox drained", || async { backlog(&w).await == 0 }).await;
    drop(relay);
    // A second relay finds nothing left; the count stays.
    let second = relay_of(&w).await;
    assert_eq!(second.run_once().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counted(&w, alice_id).await, 4);
}

async fn relay_of(w: &World) -> Relay {
    relay(w, Duration::from_secs(30)).await
}

/// A relay that sends and dies before marking: the event is sent again by another relay
/// once the dead one's claim expires, and counted once.
async fn a_relay_killed_between_send_and_mark_counts_once(backend: Backend, transport: Transport) {
    let w = world(backend, transport, 10, false).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    buy(&w, &alice, Some("SPRING-10")).await.unwrap();

    let doomed = relay(&w, Duration::from_millis(500)).await;
    let events = doomed.claim().await.unwrap();
    assert_eq!(events.len(), 2);
    for event in &events {
        doomed.sink().send(event).await.unwrap();
    }
    drop(doomed); // killed: nothing marked delivered
    eventually(20, "the sent uses counted", || async {
        counted(&w, alice_id).await == 2
    })
    .await;
    assert_eq!(backlog(&w).await, 2, "not marked delivered");

    let survivor = relay(&w, Duration::from_millis(500)).await;
    assert_eq!(
        survivor.run_once().await.unwrap(),
        0,
        "the dead relay's claim still holds"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        survivor.run_once().await.unwrap(),
        2,
        "taken over and sent again"
    );
    assert_eq!(backlog(&w).await, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        counted(&w, alice_id).await,
        2,
        "the second delivery changed nothing"
    );
}

/// Two relays on one outbox at once (two orders instances): every use counted once.
async fn two_relays_at_once_count_once(backend: Backend, transport: Transport) {
    let w = world(backend, transport, 100, false).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    for _ in 0..12 {
        buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    }
    let (a, b) = (relay_of(&w).await.spawn(), relay_of(&w).await.spawn());
    eventually(40, "outbox drained by two relays", || async {
        backlog(&w).await == 0
    })
    .await;
    eventually(20, "twelve uses", || async {
        counted(&w, alice_id).await == 12
    })
    .await;
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counted(&w, alice_id).await, 12);
}

/// Concurrent checkouts racing for the last use: only the allowed number succeed.
async fn racing_checkouts_get_only_the_uses_left(backend: Backend) {
    let w = world(backend, Transport::Http, 3, true).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    // Two uses left; six checkouts of six orders at once.
    let mut ready = Vec::new();
    for _ in 0..6 {
        let order = alice.create_order().send().await.unwrap().into_inner();
        alice
            .add_order_item()
            .order_id(order.id)
            .body(orders::AddItem {
                beer_id: w.beer,
                quantity: NonZeroU32::new(1).unwrap(),
            })
            .send()
            .await
            .unwrap();
        ready.push(order.id);
    }
    let attempts = ready.iter().map(|id| {
        alice
            .checkout_order()
            .order_id(*id)
            .body(orders::Checkout {
                expected_total: None,
                promo_code: Some("SPRING-10".parse().unwrap()),
            })
            .send()
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 2, "{results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_eq!(problem(r).0, 422);
    }
    eventually(20, "three uses counted", || async {
        counted(&w, alice_id).await == 3
    })
    .await;
    let open = alice
        .list_orders()
        .status(orders::OrderStatus::Open)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        open.items.len(),
        4,
        "the refused orders stay open, unchanged"
    );
}

/// NATS goes down mid-stream and comes back: nothing is lost, nothing counted twice.
async fn nats_restarted_mid_stream_loses_nothing(backend: Backend) {
    let mut w = world(backend, Transport::Nats, 100, true).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    for _ in 0..3 {
        buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    }
    eventually(20, "first three counted", || async {
        counted(&w, alice_id).await == 3
    })
    .await;
    w.nats.as_mut().unwrap().stop();
    for _ in 0..3 {
        // Checkout never waits for NATS: the events wait in the outbox.
        buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(backlog(&w).await > 0, "undelivered while NATS is down");
    w.nats.as_mut().unwrap().restart().await;
    eventually(60, "all six counted", || async {
        counted(&w, alice_id).await == 6
    })
    .await;
    eventually(20, "outbox drained", || async { backlog(&w).await == 0 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counted(&w, alice_id).await, 6);
}

/// Events that are not events (a bad body, a wrong token) are refused and change nothing.
async fn receive_event_takes_only_the_services_events(backend: Backend) {
    let w = world(backend, Transport::Http, 2, true).await;
    let url = format!("{}/v1/events", w.shop.promotions_url);
    let user = Uuid::now_v7();
    // A recent time: an event older than the duplicate check remembers is refused (below),
    // so a fixed date here stopped working a week after it was written.
    let occurred_at = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = serde_json::json!({
        "id": Uuid::now_v7(), "type": "order.placed", "occurred_at": occurred_at,
        "order": {"order_id": Uuid::now_v7(), "user_id": user, "promo_code": "SPRING-10", "total": "4.09"}
    });
    let http = reqwest::Client::new();
    let (_, token) = w.shop.users.register("mallory").await;
    for auth in [None, Some("wrong token".to_string()), Some(token)] {
        let mut req = http.post(&url).json(&event);
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("www-authenticate"));
    }
    assert_eq!(counted(&w, user).await, 0);
    let services = bearer_client(EVENTS_TOKEN);
    let mut bad = event.clone();
    bad["order"]["total"] = serde_json::json!(4.09);
    // Signed, so that it reaches validation: an unsigned body is refused unread.
    let bad = serde_json::to_vec(&bad).unwrap();
    assert_eq!(
        services
            .post(&url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, events::sign(EVENTS_TOKEN, &bad))
            .body(bad)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    // The body exactly as the orders relay sends it, and so as it signs it.
    let typed: types::Event = serde_json::from_value(event.clone()).unwrap();
    let body = serde_json::to_vec(&typed).unwrap();
    let post = |body: Vec<u8>, signature: Option<String>| {
        let mut req = services
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            req = req.header(SIGNATURE_HEADER, s);
        }
        req.send()
    };
    // The right token but no signature, a signature under another key, and a genuine
    // signature replayed on an altered body (the same event, for another user) are all
    // refused, and count nothing.
    let mut altered = typed.clone();
    altered.order.user_id = Uuid::now_v7();
    let forged = [
        (body.clone(), None),
        (body.clone(), Some(events::sign(&"k".repeat(40), &body))),
        (
            serde_json::to_vec(&altered).unwrap(),
            Some(events::sign(EVENTS_TOKEN, &body)),
        ),
    ];
    for (forged_body, signature) in forged {
        let resp = post(forged_body, signature).await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(counted(&w, user).await, 0);
    assert_eq!(counted(&w, altered.order.user_id).await, 0);
    // An event older than the duplicate check remembers, even genuinely signed: refused,
    // since its id may have been forgotten (a replay of a captured event).
    let mut old = typed.clone();
    old.id = Uuid::now_v7();
    old.occurred_at = chrono::Utc::now() - chrono::Duration::days(8);
    let old_body = serde_json::to_vec(&old).unwrap();
    let resp = post(
        old_body.clone(),
        Some(events::sign(EVENTS_TOKEN, &old_body)),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(counted(&w, user).await, 0);
    for duplicate in [false, true] {
        let receipt: types::EventReceipt =
            post(body.clone(), Some(events::sign(EVENTS_TOKEN, &body)))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(receipt.duplicate, duplicate);
    }
    assert_eq!(
        counted(&w, user).await,
        1,
        "one event, one use, however often delivered"
    );
}

/// An `order.placed` event for `user` with the code, as orders would write it.
fn placed(user: Uuid) -> types::Event {
    types::Event {
        id: Uuid::now_v7(),
        type_: types::EventType::OrderPlaced,
        occurred_at: chrono::Utc::now(),
        order: types::PlacedOrder {
            order_id: Uuid::now_v7(),
            user_id: user,
            promo_code: Some("SPRING-10".parse().unwrap()),
            total: "4.09".parse().unwrap(),
        },
    }
}

/// Publishes `body` straight to the events stream, as anyone allowed to publish there
/// could, with `signature` if any; returns once the stream has stored it.
async fn publish(js: &async_nats::jetstream::Context, body: Vec<u8>, signature: Option<String>) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(s) = signature {
        headers.insert(SIGNATURE_HEADER, s.as_str());
    }
    js.publish_with_headers(nats::subject("order.placed"), headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

fn nats_settings(url: &str) -> nats::Settings {
    nats::Settings {
        url: url.into(),
        creds_file: None,
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 20,
    }
}

/// Events published to the JetStream subject directly, without the events token: no
/// signature, a signature under another key, a genuine signature replayed on an altered
/// body. Promotions counts none of them, and counts a genuine event published after them.
async fn forged_events_on_the_stream_are_not_counted(backend: Backend) {
    let w = world(backend, Transport::Nats, 100, true).await;
    let js = nats::connect(&nats_settings(&w.nats.as_ref().unwrap().url))
        .await
        .unwrap();
    let mallory = Uuid::now_v7();
    let genuine = serde_json::to_vec(&placed(mallory)).unwrap();
    let mut altered = placed(mallory);
    altered.order.order_id = Uuid::now_v7();
    publish(&js, serde_json::to_vec(&placed(mallory)).unwrap(), None).await;
    let other = placed(mallory);
    let other = serde_json::to_vec(&other).unwrap();
    publish(
        &js,
        other.clone(),
        Some(events::sign(&"k".repeat(40), &other)),
    )
    .await;
    publish(
        &js,
        serde_json::to_vec(&altered).unwrap(),
        Some(events::sign(EVENTS_TOKEN, &genuine)),
    )
    .await;
    // A genuine event after them: the consumer takes messages in order, so once it is
    // counted the forged ones have been seen.
    let honest = Uuid::now_v7();
    let real = serde_json::to_vec(&placed(honest)).unwrap();
    publish(&js, real.clone(), Some(events::sign(EVENTS_TOKEN, &real))).await;
    eventually(20, "the genuine event counted", || async {
        counted(&w, honest).await == 1
    })
    .await;
    assert_eq!(counted(&w, mallory).await, 0, "a forged event was counted");
}

/// NATS that requires credentials: user and password (URL-encoded) or a token in
/// NATS_URL are used; without them the connection is refused.
async fn nats_credentials_from_the_url_are_used(backend: Backend) {
    let token = Nats::start_with(&["--auth", "s3cret-nats-token"]).await;
    let port = token.url.rsplit(':').next().unwrap().to_string();
    assert!(nats::connect(&nats_settings(&token.url)).await.is_err());
    nats::connect(&nats_settings(&format!(
        "nats://s3cret-nats-token@127.0.0.1:{port}"
    )))
    .await
    .expect("a token in the URL is used");
    drop(token);

    let nats = Nats::start_with(&["--user", "taproom", "--pass", "pa/ss word"]).await;
    assert!(nats::connect(&nats_settings(&nats.url)).await.is_err());
    let port = nats.url.rsplit(':').next().unwrap().to_string();
    let url = format!("nats://taproom:pa%2Fss%20word@127.0.0.1:{port}");
    let w = world_on(backend, Some(nats), Some(url), 10, true).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    eventually(20, "the use counted through authenticated NATS", || async {
        counted(&w, alice_id).await == 1
    })
    .await;
}

/// A stream made without limits (as before retention) gets them when the services
/// start: it cannot grow without bound.
async fn the_stream_is_limited(backend: Backend) {
    let nats = Nats::start().await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: nats::STREAM.into(),
        subjects: vec!["taproom.events.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = nats.url.clone();
    let w = world_on(backend, Some(nats), Some(url), 10, true).await;
    let config = w.shop.users.db.config();
    let info = js
        .get_stream(nats::STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(
        info.max_age,
        Duration::from_secs(config.nats_stream_max_age_secs)
    );
    assert_eq!(info.max_bytes, config.nats_stream_max_bytes);
    assert!(info.max_age >= info.duplicate_window);
}

/// Opens a service's database of the test as the service does.
async fn database(
    w: &World,
    def: &taproom_server::runtime::registry::ServiceDef,
) -> taproom_server::runtime::Db {
    let config = w.shop.users.db.config();
    taproom_server::runtime::server::connect(&config, def.name, def.migrator)
        .await
        .unwrap()
}

const LONG_AGO: &str = "2020-01-01T00:00:00.000000Z";

/// Delivered outbox rows and processed event ids older than their retention are pruned;
/// younger ones and undelivered events (however old) stay.
async fn old_events_are_pruned(backend: Backend) {
    let w = world(backend, Transport::Http, 10, true).await;
    let (alice_id, alice, _) = w.shop.customer("alice").await;
    buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    buy(&w, &alice, Some("SPRING-10")).await.unwrap();
    eventually(20, "both counted", || async {
        counted(&w, alice_id).await == 2
    })
    .await;
    eventually(20, "outbox drained", || async { backlog(&w).await == 0 }).await;
    let orders_db = database(&w, &taproom_server::orders::SERVICE).await;
    let promotions_db = database(&w, &taproom_server::promotions::SERVICE).await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&orders_db.pool)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    // One delivered long ago, and an undelivered event as old, not due for a while.
    sqlx::query("UPDATE outbox SET delivered_at = $1 WHERE id = $2")
        .bind(LONG_AGO)
        .bind(&ids[0])
        .execute(&orders_db.pool)
        .await
        .unwrap();
    let stuck = Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO outbox (id, topic, payload, created_at, attempts, next_attempt_at) \
         VALUES ($1, 'order.placed', '{}', $2, 0, '2999-01-01T00:00:00.000000Z')",
    )
    .bind(&stuck)
    .bind(LONG_AGO)
    .execute(&orders_db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE processed_events SET processed_at = $1 WHERE id = (SELECT MIN(id) FROM processed_events)",
    )
    .bind(LONG_AGO)
    .execute(&promotions_db.pool)
    .await
    .unwrap();

    let config = w.shop.users.db.config();
    let orders_rules = taproom_server::orders::retention_rules(&config);
    let pruned = retention::prune(&orders_db, &orders_rules).await.unwrap();
    assert_eq!(pruned, vec![("outbox", 1), ("idempotency_keys", 0)]);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&orders_db.pool)
        .await
        .unwrap();
    assert_eq!(left, vec![ids[1].clone(), stuck]);
    let pruned = retention::prune(
        &promotions_db,
        &taproom_server::promotions::retention_rules(&config),
    )
    .await
    .unwrap();
    assert_eq!(pruned, vec![("processed_events", 1)]);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM processed_events")
        .fetch_one(&promotions_db.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    // A second pass finds nothing more.
    assert_eq!(
        retention::prune(&orders_db, &orders_rules).await.unwrap(),
        vec![("outbox", 0), ("idempotency_keys", 0)]
    );
}

/// The service runs its pruning by itself: started on a database with an expired row,
/// orders prunes it (its first pass runs at start, the next every PRUNE_INTERVAL_SECS).
async fn orders_prunes_on_its_own(backend: Backend) {
    let mut w = world(backend, Transport::Http, 10, true).await;
    let (_, alice, _) = w.shop.customer("alice").await;
    buy(&w, &alice, None).await.unwrap();
    eventually(20, "outbox drained", || async { backlog(&w).await == 0 }).await;
    let orders_db = database(&w, &taproom_server::orders::SERVICE).await;
    w.shop.stop_orders().await;
    sqlx::query("UPDATE outbox SET delivered_at = $1")
        .bind(LONG_AGO)
        .execute(&orders_db.pool)
        .await
        .unwrap();
    w.shop.start_orders().await;
    eventually(20, "the expired row pruned", || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&orders_db.pool)
            .await
            .unwrap();
        n == 0
    })
    .await;
}

async fn over_http_promotions_back(backend: Backend) {
    uses_are_counted_once_after_promotions_comes_back(backend, Transport::Http).await
}
async fn over_nats_promotions_back(backend: Backend) {
    uses_are_counted_once_after_promotions_comes_back(backend, Transport::Nats).await
}
async fn over_http_relay_killed(backend: Backend) {
    a_relay_killed_between_send_and_mark_counts_once(backend, Transport::Http).await
}
async fn over_nats_relay_killed(backend: Backend) {
    a_relay_killed_between_send_and_mark_counts_once(backend, Transport::Nats).await
}
async fn over_http_two_relays(backend: Backend) {
    two_relays_at_once_count_once(backend, Transport::Http).await
}
async fn over_nats_two_relays(backend: Backend) {
    two_relays_at_once_count_once(backend, Transport::Nats).await
}

on_both_databases!(
    codes_take_a_percentage_off_and_are_limited_per_user,
    promotions_down_at_checkout_is_503_and_nothing_is_written,
    racing_checkouts_get_only_the_uses_left,
    receive_event_takes_only_the_services_events,
    nats_restarted_mid_stream_loses_nothing,
    over_http_promotions_back,
    over_nats_promotions_back,
    over_http_relay_killed,
    over_nats_relay_killed,
    over_http_two_relays,
    over_nats_two_relays,
    forged_events_on_the_stream_are_not_counted,
    nats_credentials_from_the_url_are_used,
    the_stream_is_limited,
    old_events_are_pruned,
    orders_prunes_on_its_own,
);
