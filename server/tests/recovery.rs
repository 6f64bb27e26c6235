//! Event delivery after a crash and across instances, with real processes on PostgreSQL:
//! - an orders process SIGKILLed while sending an event: once it is started again, the
//!   event goes out within seconds (its claim is a short lease the dead relay no longer
//!   renews), and promotions takes it once;
//! - a checkout on an instance without a relay reaches promotions through another
//!   instance's relay at once (PostgreSQL NOTIFY), not at that relay's next poll.
//!
//! Latencies are printed, not asserted against targets (those are the bench's); the
//! bounds below only tell a working wake-up or lease from a missing one.

mod support;

use sqlx::{Connection, Row};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use support::fleet::{add_beer, bearer, login, ready, register, Fleet};
use taproom_client::orders::types as orders;
use uuid::Uuid;

/// A fleet with users, beers and promotions, an admin, a beer and a customer.
struct Shop {
    fleet: Fleet,
    users: String,
    beers: String,
    promotions: String,
    beer_id: Uuid,
    customer: String,
}

async fn shop() -> Shop {
    let mut fleet = Fleet::new();
    fleet.create_admin("opsadmin", "ops admin password");
    let users = fleet.start("users", &[]);
    let beers = fleet.start("beers", &[("USERS_URL", &users)]);
    let promotions = fleet.start("promotions", &[("USERS_URL", &users)]);
    for url in [&users, &beers, &promotions] {
        ready(url).await;
    }
    let admin = login(&users, "opsadmin", "ops admin password").await;
    let beer_id = add_beer(&beers, &admin, "OPS-1", "3.00").await;
    register(&users, "buyer", "buyer password").await;
    Shop {
        beer_id,
        customer: login(&users, "buyer", "buyer password").await,
        fleet,
        users,
        beers,
        promotions,
    }
}

impl Shop {
    /// Starts an orders process with promotions at `promotions` (which may be a black
    /// hole) and `extra` settings; its base URL once ready.
    async fn start_orders(&mut self, promotions: &str, extra: &[(&str, &str)]) -> String {
        let mut env = vec![
            ("USERS_URL", self.users.as_str()),
            ("BEERS_URL", self.beers.as_str()),
            ("PROMOTIONS_URL", promotions),
        ];
        env.extend_from_slice(extra);
        let url = self.fleet.start("orders", &env);
        ready(&url).await;
        url
    }

    /// One checkout through the orders instance at `orders`; the order's id (which is
    /// also its event's subject).
    async fn buy(&self, orders: &str) -> Uuid {
        let client = taproom_client::orders::Client::new_with_client(
            orders,
            bearer(&self.customer),
            Default::default(),
        );
        let order = client.create_order().send().await.unwrap();
        client
            .add_order_item()
            .order_id(order.id)
            .body(orders::AddItem {
                beer_id: self.beer_id,
                quantity: NonZeroU32::new(1).unwrap(),
            })
            .send()
            .await
            .unwrap();
        client
            .checkout_order()
            .order_id(order.id)
            .idempotency_key(format!("checkout-{}", order.id))
            .body(orders::Checkout {
                expected_total: None,
                promo_code: None,
            })
            .send()
            .await
            .unwrap();
        order.id
    }
}

/// The orders outbox rows: (delivered, claimed until) per event.
async fn outbox(db: &mut sqlx::PgConnection) -> Vec<(bool, Option<String>)> {
    sqlx::query("SELECT delivered_at IS NOT NULL AS delivered, claimed_until FROM outbox")
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("delivered"), r.get("claimed_until")))
        .collect()
}

async fn processed_events(promotions_db: &str) -> i64 {
    let mut db = sqlx::PgConnection::connect(promotions_db).await.unwrap();
    sqlx::query("SELECT COUNT(*) AS n FROM processed_events")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_relays_events_go_out_within_seconds_of_the_restart() {
    let mut shop = shop().await;
    // A promotions that accepts connections and never answers: the relay's send hangs
    // with the event claimed, as when a crash comes mid-delivery.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole = format!("http://{}", black_hole.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in black_hole.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let first = shop
        .start_orders(&hole, &[("SERVICE_TIMEOUT_MS", "60000")])
        .await;
    shop.buy(&first).await;

    let mut db = sqlx::PgConnection::connect(&shop.fleet.database_url("orders"))
        .await
        .unwrap();
    // Wait past several lease lengths: the stuck relay keeps renewing its claim.
    let claimed_at = Instant::now();
    let lease = Duration::from_secs(3);
    loop {
        let rows = outbox(&mut db).await;
        assert_eq!(rows.len(), 1, "one event: {rows:?}");
        assert!(!rows[0].0, "delivered to a black hole?");
        if rows[0].1.is_some() && claimed_at.elapsed() > lease * 2 {
            break;
        }
        assert!(
            claimed_at.elapsed() < Duration::from_secs(20),
            "the event was never claimed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let until: String = outbox(&mut db).await[0].1.clone().unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    assert!(
        until > chrono::Utc::now(),
        "the claim is renewed while the relay is alive (held until {until})"
    );
    assert_eq!(
        held.lock().unwrap().len(),
        1,
        "the relay sent once, to the black hole"
    );

    // The only orders process dies holding the claim; it comes back with promotions.
    let index = shop.fleet.index("orders");
    let killed = shop.fleet.signal(index, "KILL");
    assert!(!killed.success());
    let restarted_at = Instant::now();
    let promotions = shop.promotions.clone();
    shop.start_orders(&promotions, &[]).await;
    loop {
        if outbox(&mut db).await[0].0 {
            break;
        }
        // The lease is 3 s: far within the 30 s a non-renewed claim used to hold.
        assert!(
            restarted_at.elapsed() < Duration::from_secs(10),
            "the dead relay's event is still waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = restarted_at.elapsed();
    eprintln!(
        "recovery: the killed relay's event was delivered {} ms after the restart",
        took.as_millis()
    );
    assert_eq!(
        processed_events(&shop.fleet.database_url("promotions")).await,
        1,
        "promotions took the event once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_relay_is_woken_by_the_commit() {
    let mut shop = shop().await;
    let promotions = shop.promotions.clone();
    // Checkouts land on an instance without a relay; the other one's relay would look
    // only once a minute without a notification.
    let taking = shop
        .start_orders(&promotions, &[("OUTBOX_RELAY", "false")])
        .await;
    shop.start_orders(&promotions, &[("OUTBOX_POLL_MS", "60000")])
        .await;

    let mut db = sqlx::PgConnection::connect(&shop.fleet.database_url("orders"))
        .await
        .unwrap();
    let mut latencies = Vec::new();
    for n in 1..=20 {
        let order = shop.buy(&taking).await;
        let committed = Instant::now();
        loop {
            let delivered: bool = sqlx::query(
                "SELECT delivered_at IS NOT NULL AS delivered FROM outbox WHERE payload LIKE $1",
            )
            .bind(format!("%{order}%"))
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get("delivered");
            if delivered {
                break;
            }
            assert!(
                committed.elapsed() < Duration::from_secs(20),
                "checkout {n} was not delivered until the relay's poll"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(committed.elapsed());
    }
    latencies.sort();
    eprintln!(
        "cross-instance event latency over 20 checkouts: p50 {} ms, max {} ms",
        latencies[10].as_millis(),
        latencies[19].as_millis()
    );
    assert_eq!(
        processed_events(&shop.fleet.database_url("promotions")).await,
        20
    );
}
