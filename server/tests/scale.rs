//! Horizontal scale behind the gateway: real `server` processes (two of orders, two of
//! tasks) against one PostgreSQL, a real nginx with `deploy/nginx.conf` in front, a bounded
//! load through it, and one instance of each scaled service stopped with SIGTERM mid-run.
//! Afterwards: every request succeeded (some after an explicit retry, counted), and the
//! data is exactly what the successful requests say: nothing lost, nothing twice, every
//! `order.placed` event counted once although two relays shared the outbox.
//!
//! PostgreSQL from `TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/test);
//! the test creates and drops its own databases (`support::fleet`).

#[path = "../../tests/src/nginx.rs"]
mod nginx;
mod support;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fleet::{add_beer, bearer, login, ready, register, Fleet};
use taproom_client::orders::types as orders;
use uuid::Uuid;

/// Retries a request whose failure is the gateway's (no answer, 502/503), counting
/// retries; a failure of the service itself is returned at once.
async fn with_retries<T, E: std::fmt::Debug, F, Fut>(retries: &AtomicUsize, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, taproom_client::orders::Error<E>>>,
{
    for attempt in 0..4 {
        match call().await {
            Ok(v) => return v,
            Err(taproom_client::orders::Error::ErrorResponse(r))
                if attempt < 3 && matches!(r.status().as_u16(), 502 | 503) =>
            {
                retries.fetch_add(1, Ordering::Relaxed);
            }
            Err(taproom_client::orders::Error::CommunicationError(_)) if attempt < 3 => {
                retries.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("request failed without a retry: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_to_one_instance_under_load_loses_nothing() {
    let mut fleet = Fleet::new();
    let admin_password = "scale admin password";
    fleet.create_admin("scaleadmin", admin_password);

    let users = fleet.start("users", &[]);
    let beers = fleet.start("beers", &[("USERS_URL", &users)]);
    let promotions = fleet.start("promotions", &[("USERS_URL", &users)]);
    let peers = [
        ("USERS_URL", users.as_str()),
        ("BEERS_URL", &beers),
        ("PROMOTIONS_URL", &promotions),
    ];
    let orders_1 = fleet.start("orders", &peers);
    let orders_2 = fleet.start("orders", &peers);
    let tasks_1 = fleet.start("tasks", &[("USERS_URL", &users)]);
    let tasks_2 = fleet.start("tasks", &[("USERS_URL", &users)]);
    for url in [
        &users,
        &beers,
        &promotions,
        &orders_1,
        &orders_2,
        &tasks_1,
        &tasks_2,
    ] {
        ready(url).await;
    }
    let addr = |u: &str| u.trim_start_matches("http://").to_string();
    let gateway = nginx::Nginx::start(&[
        ("users", vec![addr(&users)]),
        ("beers", vec![addr(&beers)]),
        ("promotions", vec![addr(&promotions)]),
        ("orders", vec![addr(&orders_1), addr(&orders_2)]),
        ("tasks", vec![addr(&tasks_1), addr(&tasks_2)]),
    ])
    .await;
    let gw = gateway.url.clone();

    // Set-up through the gateway: a beer, a promo code, four customers.
    let admin = login(&gw, "scaleadmin", admin_password).await;
    let beer_id = add_beer(&gw, &admin, "SCALE-1", "2.50").await;
    let made = bearer(&admin)
        .post(format!("{gw}/v1/promotions"))
        .json(
            &serde_json::json!({"code": "SCALE-10", "percent_off": 10, "max_uses_per_user": 1000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let mut customers = Vec::new();
    for i in 0..4 {
        let name = format!("customer{i}");
        let id = register(&gw, &name, "customer password").await;
        customers.push((id, login(&gw, &name, "customer password").await));
    }

    // The load: each worker buys (create, add two, check out with a code and a key) and
    // writes a to-do, again and again, for a bounded time.
    let retries = Arc::new(AtomicUsize::new(0));
    let stop_at = Instant::now() + Duration::from_secs(6);
    let mut workers = Vec::new();
    for w in 0..8 {
        let (user_id, token) = customers[w % customers.len()].clone();
        let gw = gw.clone();
        let retries = retries.clone();
        workers.push(tokio::spawn(async move {
            let orders_client = taproom_client::orders::Client::new_with_client(
                &gw,
                bearer(&token),
                Default::default(),
            );
            let tasks_http = bearer(&token);
            let (mut bought, mut todos) = (Vec::new(), 0usize);
            while Instant::now() < stop_at {
                let order = with_retries::<_, orders::Problem, _, _>(&retries, || {
                    orders_client.create_order().send()
                })
                .await;
                with_retries(&retries, || {
                    orders_client
                        .add_order_item()
                        .order_id(order.id)
                        .body(orders::AddItem {
                            beer_id,
                            quantity: NonZeroU32::new(2).unwrap(),
                        })
                        .send()
                })
                .await;
                let key = format!("checkout-{}", order.id);
                let closed = with_retries(&retries, || {
                    orders_client
                        .checkout_order()
                        .order_id(order.id)
                        .idempotency_key(key.clone())
                        .body(orders::Checkout {
                            expected_total: None,
                            promo_code: Some("SCALE-10".parse().unwrap()),
                        })
                        .send()
                })
                .await;
                bought.push(closed.into_inner());
                let mut attempt = 0;
                loop {
                    let resp = tasks_http
                        .post(format!("{gw}/v1/tasks"))
                        .json(&serde_json::json!({"title": format!("worker {w} task {todos}")}))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 201 => break,
                        Ok(r) if attempt < 3 && matches!(r.status().as_u16(), 502 | 503) => {}
                        Err(_) if attempt < 3 => {}
                        other => panic!("create_task failed without a retry: {other:?}"),
                    }
                    attempt += 1;
                    retries.fetch_add(1, Ordering::Relaxed);
                }
                todos += 1;
            }
            (user_id, bought, todos)
        }));
    }
    // Mid-run: SIGTERM to the first orders and the first tasks instance.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let orders_index = fleet.index("orders");
    let tasks_index = fleet.index("tasks");
    // Waiting for the drained exits blocks; the load goes on meanwhile.
    let (orders_exit, tasks_exit, returned) = tokio::task::spawn_blocking(move || {
        let o = fleet.signal(orders_index, "TERM");
        let t = fleet.signal(tasks_index, "TERM");
        (o, t, fleet)
    })
    .await
    .unwrap();
    let _fleet = returned;
    assert!(
        orders_exit.success() && tasks_exit.success(),
        "clean exits: {orders_exit:?} {tasks_exit:?}"
    );

    let mut per_user: std::collections::HashMap<Uuid, (Vec<orders::Order>, usize)> =
        Default::default();
    for worker in workers {
        let (user, bought, todos) = worker.await.expect("no request failed unretried");
        let entry = per_user.entry(user).or_default();
        entry.0.extend(bought);
        entry.1 += todos;
    }
    let total_orders: usize = per_user.values().map(|(b, _)| b.len()).sum();
    assert!(total_orders >= 8, "the load ran ({total_orders} orders)");
    eprintln!(
        "scale: {total_orders} checkouts, {} tasks, {} retried requests",
        per_user.values().map(|(_, t)| t).sum::<usize>(),
        retries.load(Ordering::Relaxed)
    );

    // Nothing lost, nothing twice: what the services hold is what the answers said.
    let survivor = taproom_client::orders::Client::new(&orders_2, Default::default());
    let promotions_admin = taproom_client::promotions::Client::new_with_client(
        &gw,
        bearer(&admin),
        Default::default(),
    );
    for (user, token) in &customers {
        let Some((bought, todos)) = per_user.get(user) else {
            continue;
        };
        let orders_client =
            taproom_client::orders::Client::new_with_client(&gw, bearer(token), Default::default());
        let mut held = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut req = orders_client
                .list_orders()
                .limit(NonZeroU32::new(100).unwrap());
            if let Some(t) = &page_token {
                req = req.page_token(t.clone());
            }
            let page = req.send().await.unwrap().into_inner();
            held.extend(page.items);
            match page.next_page_token {
                Some(t) => page_token = Some(t),
                None => break,
            }
        }
        let mut held_ids: Vec<Uuid> = held.iter().map(|o| o.id).collect();
        let mut bought_ids: Vec<Uuid> = bought.iter().map(|o| o.id).collect();
        held_ids.sort();
        bought_ids.sort();
        assert_eq!(held_ids, bought_ids, "every order created is there, once");
        for order in &held {
            assert_eq!(order.status, orders::OrderStatus::Closed);
            assert_eq!(
                (order.items.len(), order.items[0].quantity),
                (1, 2),
                "added once"
            );
            assert_eq!(
                (order.subtotal.as_str(), order.total.as_str()),
                ("5.00", "4.50")
            );
        }
        // A fast machine writes more than one page of to-dos: walk every page.
        let mut titles = std::collections::BTreeSet::new();
        let mut listed = 0usize;
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![("limit", "100".to_owned())];
            query.extend(page_token.take().map(|t| ("page_token", t)));
            let page: serde_json::Value = bearer(token)
                .get(format!("{gw}/v1/tasks"))
                .query(&query)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for task in page["items"].as_array().unwrap() {
                listed += 1;
                titles.insert(task["title"].as_str().unwrap().to_owned());
            }
            match page["next_page_token"].as_str() {
                Some(t) => page_token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!((listed, titles.len()), (*todos, *todos), "every task once");
        // Both relays drained the shared outbox; each use counted exactly once.
        let expected = bought.len() as u32;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = survivor.readyz().send().await.unwrap().into_inner();
            let uses = promotions_admin
                .check_eligibility()
                .code("SCALE-10")
                .user_id(*user)
                .send()
                .await
                .unwrap()
                .uses;
            if health.outbox.as_ref().map(|b| b.depth) == Some(0) && uses == expected {
                break;
            }
            assert!(uses <= expected, "a use counted twice: {uses} > {expected}");
            assert!(
                Instant::now() < deadline,
                "events not delivered: {uses} of {expected}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Both instances of each scaled service took requests before one was stopped.
    let log = gateway.access_log();
    for instance in [&orders_1, &orders_2, &tasks_1, &tasks_2] {
        assert!(
            log.contains(&format!("upstream={}", addr(instance))),
            "{instance} served through the gateway"
        );
    }
}
