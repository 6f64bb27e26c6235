//! Contract tests of the tasks service, on SQLite and PostgreSQL (and, with feature `aws`,
//! on DynamoDB and in Lambda mode), through the generated client: each user manages only
//! their own tasks, with tokens from the users service.

use serde_json::{json, Value};
use taproom_client::tasks::{types, Error};
use taproom_tests::{on_every_tasks_store, Backend, Tasks};
use uuid::Uuid;

fn status<T: std::fmt::Debug>(result: Result<T, Error<types::Problem>>) -> u16 {
    match result {
        Err(Error::ErrorResponse(rv)) => rv.status().as_u16(),
        other => panic!("expected an error response, got {other:?}"),
    }
}

fn new_task(title: &str) -> types::CreateTask {
    types::CreateTask {
        title: title.parse().unwrap(),
        description: None,
    }
}

async fn tasks_are_created_read_changed_and_deleted(backend: Backend) {
    let tasks = Tasks::start(backend).await;
    let (_, alice, alice_http) = tasks.user("alice").await;
    let resp = alice_http
        .post(format!("{}/v1/tasks", tasks.base_url))
        .json(&json!({"title": "Buy hops", "description": "Cascade, 50 g"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let task: types::Task = resp.json().await.unwrap();
    assert_eq!(location, format!("/v1/tasks/{}", task.id));
    assert_eq!(
        (task.title.as_str(), task.description.as_deref(), task.done),
        ("Buy hops", Some("Cascade, 50 g"), false)
    );
    assert_eq!(task.created_at, task.updated_at);
    assert_eq!(
        alice
            .get_task()
            .task_id(task.id)
            .send()
            .await
            .unwrap()
            .into_inner(),
        task
    );

    let done = alice
        .update_task()
        .task_id(task.id)
        .body(types::UpdateTask {
            done: Some(true),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(done.done);
    assert_eq!(
        (done.title.as_str(), done.description.as_deref()),
        ("Buy hops", Some("Cascade, 50 g")),
        "untouched fields kept"
    );
    assert!(done.updated_at > task.updated_at);
    let cleared = alice
        .update_task()
        .task_id(task.id)
        .body(types::UpdateTask {
            description: Some("".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.description, None);
    assert!(cleared.done);

    assert_eq!(
        alice
            .delete_task()
            .task_id(task.id)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(status(alice.get_task().task_id(task.id).send().await), 404);
    assert_eq!(
        status(alice.delete_task().task_id(task.id).send().await),
        404
    );
}

async fn listing_filters_and_pages_own_tasks(backend: Backend) {
    let tasks = Tasks::start(backend).await;
    let (_, alice, _) = tasks.user("alice").await;
    let (_, bob, _) = tasks.user("bob").await;
    let mut mine = Vec::new();
    for i in 0..5 {
        let t = alice
            .create_task()
            .body(new_task(&format!("task {i}")))
            .send()
            .await
            .unwrap()
            .into_inner();
        mine.push(t.id);
    }
    bob.create_task()
        .body(new_task("bob's"))
        .send()
        .await
        .unwrap();
    for id in [mine[1], mine[3]] {
        let body = types::UpdateTask {
            done: Some(true),
            ..Default::default()
        };
        alice
            .update_task()
            .task_id(id)
            .body(body)
            .send()
            .await
            .unwrap();
    }
    // Pages of two, oldest first, only Alice's.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = alice
            .list_tasks()
            .limit(std::num::NonZeroU32::new(2).unwrap());
        if let Some(t) = &token {
            req = req.page_token(t.as_str());
        }
        let page = req.send().await.unwrap().into_inner();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, mine);
    let done: Vec<Uuid> = alice
        .list_tasks()
        .done(true)
        .send()
        .await
        .unwrap()
        .into_inner()
        .items
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(done, vec![mine[1], mine[3]]);
    let open = alice
        .list_tasks()
        .done(false)
        .send()
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(open.len(), 3);
    assert!(open.iter().all(|t| !t.done));
    assert_eq!(
        bob.list_tasks()
            .send()
            .await
            .unwrap()
            .into_inner()
            .items
            .len(),
        1
    );
}

async fn another_users_task_is_404_for_every_operation(backend: Backend) {
    let tasks = Tasks::start(backend).await;
    let (_, alice, _) = tasks.user("alice").await;
    let (_, bob, bob_http) = tasks.user("bob").await;
    let task = alice
        .create_task()
        .body(new_task("private"))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(bob.get_task().task_id(task.id).send().await), 404);
    let change = types::UpdateTask {
        title: Some("mine now".parse().unwrap()),
        done: Some(true),
        ..Default::default()
    };
    assert_eq!(
        status(bob.update_task().task_id(task.id).body(change).send().await),
        404
    );
    assert_eq!(status(bob.delete_task().task_id(task.id).send().await), 404);
    // Bob's answer is exactly what a task that never existed gets.
    let theirs: Value = bob_http
        .get(format!("{}/v1/tasks/{}", tasks.base_url, task.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nowhere: Value = bob_http
        .get(format!("{}/v1/tasks/{}", tasks.base_url, Uuid::now_v7()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&theirs["status"], &theirs["detail"]),
        (&nowhere["status"], &nowhere["detail"])
    );
    assert!(!theirs.to_string().contains("private"));
    // Nothing changed for Alice.
    assert_eq!(
        alice
            .get_task()
            .task_id(task.id)
            .send()
            .await
            .unwrap()
            .into_inner(),
        task
    );
}

async fn tokens_are_required_and_checked(backend: Backend) {
    let tasks = Tasks::start(backend).await;
    let (_, alice, _) = tasks.user("alice").await;
    let task = alice
        .create_task()
        .body(new_task("x"))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(tasks.client.list_tasks().send().await), 401);
    assert_eq!(
        status(tasks.client.get_task().task_id(task.id).send().await),
        401
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/tasks", tasks.base_url))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // Every operation refuses a missing, expired or foreign-signed token.
    let now = chrono::Utc::now().timestamp();
    let expired = tasks
        .users
        .sign(json!({"sub": Uuid::now_v7().to_string(), "role": "user", "iat": now - 7200, "exp": now - 3600, "iss": "taproom-users"}))
        .await;
    let elsewhere = Tasks::start(backend).await;
    let (_, _, foreign_http) = elsewhere.user("mallory").await;
    let id = task.id;
    let url = |path: &str| format!("{}{path}", tasks.base_url);
    let no_token = reqwest::Client::new();
    let expired_http = taproom_tests::bearer_client(&expired);
    for http in [&no_token, &expired_http, &foreign_http] {
        let requests = [
            http.get(url("/v1/tasks")),
            http.post(url("/v1/tasks")).json(&json!({"title": "x"})),
            http.get(url(&format!("/v1/tasks/{id}"))),
            http.patch(url(&format!("/v1/tasks/{id}")))
                .json(&json!({"done": true})),
            http.delete(url(&format!("/v1/tasks/{id}"))),
        ];
        for request in requests {
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{:?}", resp.url());
            assert!(resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
        }
    }
    assert_eq!(
        alice
            .get_task()
            .task_id(id)
            .send()
            .await
            .unwrap()
            .into_inner(),
        task,
        "nothing changed"
    );
    // A token from another Taproom's users service (another signing key) is refused.
    let elsewhere = Tasks::start(backend).await;
    let (_, _, foreign_http) = elsewhere.user("mallory").await;
    let resp = foreign_http
        .get(format!("{}/v1/tasks", tasks.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

async fn bad_input_is_refused_with_every_violation(backend: Backend) {
    let tasks = Tasks::start(backend).await;
    let (_, alice, alice_http) = tasks.user("alice").await;
    let url = format!("{}/v1/tasks", tasks.base_url);
    for (what, body, pointers) in [
        ("empty title", json!({"title": ""}), vec!["/title"]),
        (
            "long title",
            json!({"title": "t".repeat(201)}),
            vec!["/title"],
        ),
        (
            "long description",
            json!({"title": "ok", "description": "d".repeat(10_001)}),
            vec!["/description"],
        ),
        ("no title", json!({"description": "x"}), vec!["/title"]),
        (
            "unknown field",
            json!({"title": "ok", "owner_id": Uuid::now_v7()}),
            vec!["/owner_id"],
        ),
        (
            "wrong types",
            json!({"title": 5, "description": []}),
            vec!["/title", "/description"],
        ),
    ] {
        let resp = alice_http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        let problem: Value = resp.json().await.unwrap();
        let found: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        for p in pointers {
            assert!(found.contains(&p), "{what}: {p} missing in {problem}");
        }
    }
    let task = alice
        .create_task()
        .body(new_task("ok"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let resp = alice_http
        .patch(format!("{url}/{}", task.id))
        .json(&json!({"done": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    for query in ["done=maybe", "limit=0", "page_token=bad", "owner=someone"] {
        let resp = alice_http
            .get(format!("{url}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
    }
    // Nothing was written by any of it.
    let all = alice.list_tasks().send().await.unwrap().into_inner().items;
    assert_eq!(all, vec![task]);
}

async fn users_down_means_503_until_keys_are_known(backend: Backend) {
    let mut tasks = Tasks::start(backend).await;
    let (_, alice, alice_http) = tasks.user("alice").await;
    tasks.users.stop().await;
    // Tasks has never fetched the keys: it cannot check the token, and says so.
    let resp = alice_http
        .get(format!("{}/v1/tasks", tasks.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(status(alice.list_tasks().send().await), 503);
}

on_every_tasks_store!(
    tasks_are_created_read_changed_and_deleted,
    listing_filters_and_pages_own_tasks,
    another_users_task_is_404_for_every_operation,
    tokens_are_required_and_checked,
    bad_input_is_refused_with_every_violation,
    users_down_means_503_until_keys_are_known,
);

/// `readyz` on DynamoDB says whether DynamoDB answers, as it does for a SQL database.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_dynamodb() {
    let mut tasks = Tasks::start(Backend::DynamoDb).await;
    tasks
        .client
        .readyz()
        .send()
        .await
        .expect("ready on DynamoDB");
    // Stopping moto stops DynamoDB.
    drop(tasks.users.db.moto.take());
    let resp = reqwest::get(format!("{}/readyz", tasks.base_url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
}
