//! Contract tests of the users service, on SQLite and on PostgreSQL, through the
//! generated client (and raw HTTP only for requests the typed client cannot express).

use serde_json::{json, Value};
use std::collections::HashSet;
use taproom_client::users::{types, Client, Error};
use taproom_tests::{on_both_databases, Backend, Users};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";

fn new_user(name: &str) -> types::CreateUser {
    types::CreateUser {
        username: name.parse().unwrap(),
        email: format!("{name}@example.com").parse().unwrap(),
        password: PASSWORD.parse().unwrap(),
        first_name: Some("Ada".parse().unwrap()),
        last_name: None,
    }
}

async fn create(users: &Users, name: &str) -> types::User {
    users
        .client
        .create_user()
        .body(new_user(name))
        .send()
        .await
        .unwrap()
        .into_inner()
}

/// The problem of a failed typed call, with its status.
fn problem<T: std::fmt::Debug>(result: Result<T, Error<types::Problem>>) -> (u16, types::Problem) {
    match result {
        Err(Error::ErrorResponse(rv)) => (rv.status().as_u16(), rv.into_inner()),
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// One page of `list_users` (an admin's client), after `token` when given.
async fn page(admin: &Client, limit: u32, token: Option<&str>) -> types::UserPage {
    let mut req = admin
        .list_users()
        .limit(std::num::NonZeroU32::new(limit).unwrap());
    if let Some(t) = token {
        req = req.page_token(t);
    }
    req.send().await.unwrap().into_inner()
}

async fn count(admin: &Client) -> usize {
    let mut n = 0;
    let mut token: Option<String> = None;
    loop {
        let page = page(admin, 100, token.as_deref()).await;
        n += page.items.len();
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return n,
        }
    }
}

/// POSTs a raw body to create_user; returns status, content type and JSON body.
async fn raw_create(
    users: &Users,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = users
        .raw()
        .post(format!("{}/v1/users", users.base_url))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["pointer"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn create_user_returns_the_user_and_its_location(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, _) = users.admin().await;
    let resp = users
        .raw()
        .post(format!("{}/v1/users", users.base_url))
        .json(&new_user("ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains("password"),
        "password in the response: {text}"
    );
    let user: types::User = serde_json::from_str(&text).unwrap();
    assert_eq!(location, format!("/v1/users/{}", user.id));
    assert_eq!(user.username, "ada");
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.role, types::Role::User);
    assert_eq!(user.first_name.as_deref(), Some("Ada"));
    assert_eq!(user.last_name, None);
    assert_eq!(user.created_at, user.updated_at);
    assert_eq!(user.id.get_version_num(), 7, "ids are UUIDv7");
    // And it is what get_user returns.
    let fetched = admin
        .get_user()
        .user_id(user.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, user);
}

async fn taken_username_or_email_is_a_conflict_naming_the_field(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, _) = users.admin().await;
    create(&users, "ada").await;
    let mut same_name = new_user("ADA");
    same_name.email = "other@example.com".parse().unwrap();
    let (status, p) = problem(users.client.create_user().body(same_name).send().await);
    assert_eq!(status, 409);
    assert!(p.detail.as_deref().unwrap().contains("username"), "{p:?}");
    assert!(!p.request_id.is_empty());

    let mut same_email = new_user("grace");
    same_email.email = "Ada@Example.com".parse().unwrap();
    let (status, p) = problem(users.client.create_user().body(same_email).send().await);
    assert_eq!(status, 409);
    assert!(p.detail.as_deref().unwrap().contains("email"), "{p:?}");
    assert_eq!(
        count(&admin).await,
        2,
        "a conflict wrote nothing (the admin and ada)"
    );
}

async fn get_user_errors(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, admin_http) = users.admin().await;
    let (status, p) = problem(admin.get_user().user_id(Uuid::now_v7()).send().await);
    assert_eq!((status, p.status), (404, 404));
    let resp = admin_http
        .get(format!("{}/v1/users/not-a-uuid", users.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(pointers(&body), vec!["/path/user_id"]);
}

async fn update_user_is_partial(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, admin_http) = users.admin().await;
    let ada = create(&users, "ada").await;
    let grace = create(&users, "grace").await;
    let change = |body: types::UpdateUser| admin.update_user().user_id(ada.id).body(body).send();

    let renamed = change(types::UpdateUser {
        last_name: Some("Lovelace".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(renamed.last_name.as_deref(), Some("Lovelace"));
    assert_eq!(
        (renamed.username.as_str(), renamed.email.as_str()),
        ("ada", "ada@example.com")
    );
    assert_eq!(
        renamed.first_name.as_deref(),
        Some("Ada"),
        "untouched field kept"
    );
    assert!(renamed.updated_at > ada.updated_at);
    assert_eq!(renamed.created_at, ada.created_at);

    let cleared = change(types::UpdateUser {
        first_name: Some("".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(cleared.first_name, None);
    assert_eq!(cleared.last_name.as_deref(), Some("Lovelace"));

    let (status, p) = problem(
        change(types::UpdateUser {
            username: Some("Grace".parse().unwrap()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(status, 409);
    assert!(p.detail.unwrap().contains("username"));
    let (status, _) = problem(
        change(types::UpdateUser {
            email: Some(grace.email.parse().unwrap()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(status, 409);

    // Its own name again, differently cased, is not a conflict.
    let same = change(types::UpdateUser {
        username: Some("Ada".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(same.username, "Ada");

    let resp = admin_http
        .patch(format!("{}/v1/users/{}", users.base_url, ada.id))
        .json(&json!({"password": "a brand new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.text().await.unwrap().contains("a brand new password"));

    let (status, _) = problem(
        admin
            .update_user()
            .user_id(Uuid::now_v7())
            .body(types::UpdateUser::default())
            .send()
            .await,
    );
    assert_eq!(status, 404);
    // Bad input in a PATCH: every violation, nothing changed.
    let resp = admin_http
        .patch(format!("{}/v1/users/{}", users.base_url, ada.id))
        .json(&json!({"username": "no spaces allowed", "email": "nope", "role": "superuser"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let mut found = pointers(&body);
    found.sort();
    assert_eq!(found, vec!["/email", "/role", "/username"]);
    let after = admin
        .get_user()
        .user_id(ada.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.username, "Ada");
}

async fn delete_user_then_it_is_gone(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, _) = users.admin().await;
    let ada = create(&users, "ada").await;
    let resp = admin.delete_user().user_id(ada.id).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        problem(admin.get_user().user_id(ada.id).send().await).0,
        404
    );
    assert_eq!(
        problem(admin.delete_user().user_id(ada.id).send().await).0,
        404
    );
    // The name is free again.
    create(&users, "ada").await;
}

async fn list_users_pages_oldest_first_without_gaps(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, _) = users.admin().await;
    // The admin is the oldest user.
    let mut created = vec![
        admin
            .get_current_user()
            .send()
            .await
            .unwrap()
            .into_inner()
            .id,
    ];
    for i in 0..25 {
        created.push(create(&users, &format!("user{i:02}")).await.id);
    }
    let first = admin.list_users().send().await.unwrap().into_inner();
    assert_eq!(first.items.len(), 20, "default limit");

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = page(&admin, 10, token.as_deref()).await;
        sizes.push(page.items.len());
        seen.extend(page.items.iter().map(|u| u.id));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 6]);
    assert_eq!(seen, created, "every user once, oldest first");
}

async fn pagination_survives_concurrent_inserts(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, _) = users.admin().await;
    let mut before = vec![
        admin
            .get_current_user()
            .send()
            .await
            .unwrap()
            .into_inner()
            .id,
    ];
    for i in 0..12 {
        before.push(create(&users, &format!("early{i:02}")).await.id);
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut inserted = 0;
    loop {
        let page = page(&admin, 5, token.as_deref()).await;
        seen.extend(page.items.iter().map(|u| u.id));
        // Someone registers while we walk.
        create(&users, &format!("late{inserted:02}")).await;
        inserted += 1;
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
        assert!(inserted < 50, "the walk never ends");
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no user twice");
    for id in &before {
        assert_eq!(seen.iter().filter(|s| *s == id).count(), 1, "{id} missing");
    }
    assert_eq!(
        &seen[..before.len()],
        &before[..],
        "pre-existing users first, in order"
    );
}

async fn list_users_rejects_bad_parameters(backend: Backend) {
    let users = Users::start(backend).await;
    let (_, admin_http) = users.admin().await;
    create(&users, "ada").await;
    for (query, pointer) in [
        ("limit=0", "/query/limit"),
        ("limit=101", "/query/limit"),
        ("limit=abc", "/query/limit"),
        ("limit=-1", "/query/limit"),
        ("limit=99999999999999999999999", "/query/limit"),
        ("page_token=garbage!", "/query/page_token"),
        ("page_token=", "/query/page_token"),
        ("colour=red", "/query/colour"),
        ("limit=5&limit=6", "/query/limit"),
    ] {
        let resp = admin_http
            .get(format!("{}/v1/users?{query}", users.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], 400, "{query}");
        assert!(
            body["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{query}"
        );
        assert!(
            pointers(&body).contains(&pointer.to_string()),
            "{query}: {body}"
        );
    }
    let resp = admin_http
        .get(format!("{}/v1/users?limit=100", users.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// What, content type, body, expected status, pointers that must be reported.
type BadBody = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    Vec<&'static str>,
);

async fn bad_bodies_get_a_4xx_problem_and_write_nothing(backend: Backend) {
    let users = Users::start(backend).await;
    let (admin, _) = users.admin().await;
    let json = Some("application/json");
    let valid = || json!({"username": "ok_name", "email": "ok@example.com", "password": PASSWORD});
    let with = |key: &str, value: Value| {
        let mut v = valid();
        v[key] = value;
        v.to_string()
    };
    let cases: Vec<BadBody> = vec![
        (
            "wrong type",
            json,
            with("username", json!(5)).into_bytes(),
            400,
            vec!["/username"],
        ),
        (
            "everything missing",
            json,
            b"{}".to_vec(),
            400,
            vec!["/username", "/email", "/password"],
        ),
        (
            "username too long",
            json,
            with("username", json!("a".repeat(65))).into_bytes(),
            400,
            vec!["/username"],
        ),
        (
            "username too short",
            json,
            with("username", json!("ab")).into_bytes(),
            400,
            vec!["/username"],
        ),
        (
            "username pattern",
            json,
            with("username", json!("a b")).into_bytes(),
            400,
            vec!["/username"],
        ),
        (
            "password too long",
            json,
            with("password", json!("p".repeat(129))).into_bytes(),
            400,
            vec!["/password"],
        ),
        (
            "bad email",
            json,
            with("email", json!("not-an-email")).into_bytes(),
            400,
            vec!["/email"],
        ),
        (
            "email too long",
            json,
            with("email", json!(format!("{}@example.com", "e".repeat(250)))).into_bytes(),
            400,
            vec!["/email"],
        ),
        (
            "first name too long",
            json,
            with("first_name", json!("n".repeat(101))).into_bytes(),
            400,
            vec!["/first_name"],
        ),
        (
            "unknown field",
            json,
            with("extra", json!(1)).into_bytes(),
            400,
            vec!["/extra"],
        ),
        (
            "role is not settable",
            json,
            with("role", json!("admin")).into_bytes(),
            400,
            vec!["/role"],
        ),
        (
            "malformed JSON",
            json,
            b"{\"username\": ".to_vec(),
            400,
            vec![],
        ),
        ("array body", json, b"[]".to_vec(), 400, vec![]),
        ("string body", json, b"\"x\"".to_vec(), 400, vec![]),
        ("null body", json, b"null".to_vec(), 400, vec![]),
        ("empty body", json, Vec::new(), 400, vec![]),
        (
            "invalid UTF-8",
            json,
            b"{\"username\": \"\xff\xfe\"}".to_vec(),
            400,
            vec![],
        ),
        (
            "absurd number",
            json,
            b"{\"username\": 1e400}".to_vec(),
            400,
            vec![],
        ),
        (
            "deep nesting",
            json,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            400,
            vec![],
        ),
        (
            "text/plain",
            Some("text/plain"),
            valid().to_string().into_bytes(),
            415,
            vec![],
        ),
        (
            "form",
            Some("application/x-www-form-urlencoded"),
            b"username=x".to_vec(),
            415,
            vec![],
        ),
        (
            "no content type",
            None,
            valid().to_string().into_bytes(),
            415,
            vec![],
        ),
        (
            "over 1 MiB",
            json,
            with("first_name", json!("x".repeat(1024 * 1024 + 1))).into_bytes(),
            413,
            vec![],
        ),
    ];
    for (what, ct, body, status, expected) in cases {
        let (got, problem) = raw_create(&users, ct, body).await;
        assert_eq!(got, status, "{what}: {problem}");
        assert_eq!(problem["status"], status, "{what}: {problem}");
        assert!(
            problem["title"].is_string() && problem["type"].is_string(),
            "{what}: {problem}"
        );
        assert!(
            problem["request_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{what}: {problem}"
        );
        let found = pointers(&problem);
        for p in expected {
            assert!(
                found.contains(&p.to_string()),
                "{what}: {p} not reported in {problem}"
            );
        }
        assert!(
            !problem.to_string().contains(PASSWORD),
            "{what}: the password is echoed"
        );
    }
    assert_eq!(
        count(&admin).await,
        1,
        "nothing was written (only the admin exists)"
    );
}

async fn password_is_never_echoed_in_errors(backend: Backend) {
    let users = Users::start(backend).await;
    let secret = "short1";
    let (status, problem) = raw_create(
        &users,
        Some("application/json"),
        json!({"username": "ada", "email": "ada@example.com", "password": secret}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(pointers(&problem), vec!["/password"]);
    assert!(!problem.to_string().contains(secret), "{problem}");
}

async fn infrastructure_endpoints(backend: Backend) {
    let users = Users::start(backend).await;
    let ping = users.client.ping().send().await.unwrap().into_inner();
    assert_eq!(
        (ping.status.as_str(), ping.message.as_str()),
        ("success", "pong!")
    );
    assert_eq!(
        users
            .client
            .healthz()
            .send()
            .await
            .unwrap()
            .into_inner()
            .status,
        "ok"
    );
    assert_eq!(
        users
            .client
            .readyz()
            .send()
            .await
            .unwrap()
            .into_inner()
            .status,
        "ok"
    );
    let version = users.client.version().send().await.unwrap().into_inner();
    assert_eq!(version.service, "users");
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));

    let doc: Value = users
        .raw()
        .get(format!("{}/openapi.json", users.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["info"]["title"], "Taproom users");
    // The version of the spec it serves.
    assert_eq!(doc["info"]["version"], version.spec_version.as_str());
    let text = doc.to_string();
    for op in [
        "ping",
        "healthz",
        "readyz",
        "version",
        "create_user",
        "list_users",
        "get_user",
        "update_user",
        "delete_user",
        "create_token",
        "get_current_user",
        "get_jwks",
    ] {
        assert!(
            text.contains(&format!("\"operationId\":\"{op}\"")),
            "{op} missing from /openapi.json"
        );
    }
    let yaml = users
        .raw()
        .get(format!("{}/openapi.yaml", users.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    let yaml = yaml.text().await.unwrap();
    assert!(yaml.contains("operationId: create_user"));
    assert_eq!(
        yaml,
        taproom_server::users::api::SPEC_YAML,
        "served exactly as committed"
    );
}

async fn users_survive_a_restart(backend: Backend) {
    let mut users = Users::start(backend).await;
    let token = users.admin_token().await;
    let ada = create(&users, "ada").await;
    users.restart().await;
    // The signing key persists, so tokens issued before the restart still work.
    let after = users
        .client_with_token(&token)
        .get_user()
        .user_id(ada.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, ada);
    assert_eq!(
        users
            .client
            .readyz()
            .send()
            .await
            .unwrap()
            .into_inner()
            .status,
        "ok"
    );
}

on_both_databases!(
    create_user_returns_the_user_and_its_location,
    taken_username_or_email_is_a_conflict_naming_the_field,
    get_user_errors,
    update_user_is_partial,
    delete_user_then_it_is_gone,
    list_users_pages_oldest_first_without_gaps,
    pagination_survives_concurrent_inserts,
    list_users_rejects_bad_parameters,
    bad_bodies_get_a_4xx_problem_and_write_nothing,
    password_is_never_echoed_in_errors,
    infrastructure_endpoints,
    users_survive_a_restart,
);
