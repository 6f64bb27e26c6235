//! Contract tests of the scores service, on SQLite and PostgreSQL, through the
//! generated client: each user manages only their own scores, with tokens from the
//! users service. Scaffolded by `cargo xtask new-service`; extend them as the service grows.

use serde_json::json;
use taproom_client::scores::{types, Client, Error};
use taproom_tests::{bearer_client, on_both_databases, Backend, Users};

/// Users and scores, each on its own database, wired as `server all` wires them.
struct World {
    users: Users,
    base_url: String,
    _server: dropshot::HttpServer<taproom_server::scores::ScoresContext>,
}

impl World {
    async fn start(backend: Backend) -> World {
        let users = Users::start(backend).await;
        let config = users.db.config();
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        let server = taproom_server::scores::start(&config, &users.peers(), &log)
            .await
            .expect("scores starts");
        World {
            base_url: format!("http://{}", server.local_addr()),
            users,
            _server: server,
        }
    }

    /// A new user's client and raw HTTP client, both sending their token.
    async fn user(&self, name: &str) -> (Client, reqwest::Client) {
        let (_, token) = self.users.register(name).await;
        let client = Client::new_with_client(&self.base_url, bearer_client(&token), Default::default());
        (client, bearer_client(&token))
    }
}

fn status<T: std::fmt::Debug>(result: Result<T, Error<types::Problem>>) -> u16 {
    match result {
        Err(Error::ErrorResponse(rv)) => rv.status().as_u16(),
        other => panic!("expected an error response, got {other:?}"),
    }
}

fn new_score(title: &str) -> types::CreateScore {
    types::CreateScore {
        title: title.parse().unwrap(),
        notes: None,
    }
}

async fn scores_are_created_read_changed_listed_and_deleted(backend: Backend) {
    let world = World::start(backend).await;
    let (alice, _) = world.user("alice").await;
    let created = alice
        .create_score()
        .body(new_score("first"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let got = alice.get_score().score_id(created.id).send().await.unwrap();
    assert_eq!(got.into_inner(), created);
    let changed = alice
        .update_score()
        .score_id(created.id)
        .body(types::UpdateScore {
            notes: Some("details".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (changed.title.as_str(), changed.notes.as_deref()),
        ("first", Some("details"))
    );
    for title in ["second", "third"] {
        alice.create_score().body(new_score(title)).send().await.unwrap();
    }
    // Pages of two, oldest first, nothing skipped or repeated.
    let page = alice.list_scores().limit(2u32).send().await.unwrap().into_inner();
    let rest = alice
        .list_scores()
        .limit(2u32)
        .page_token(page.next_page_token.clone().expect("a second page"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let titles: Vec<String> = page.items.iter().chain(&rest.items).map(|i| i.title.clone()).collect();
    assert_eq!(titles, ["first", "second", "third"]);
    assert!(rest.next_page_token.is_none());
    alice.delete_score().score_id(created.id).send().await.unwrap();
    assert_eq!(status(alice.get_score().score_id(created.id).send().await), 404);
}

async fn another_users_score_is_404_and_tokens_are_required(backend: Backend) {
    let world = World::start(backend).await;
    let (alice, _) = world.user("alice").await;
    let (bob, _) = world.user("bob").await;
    let mine = alice.create_score().body(new_score("mine")).send().await.unwrap();
    let id = mine.into_inner().id;
    assert_eq!(status(bob.get_score().score_id(id).send().await), 404);
    assert_eq!(status(bob.delete_score().score_id(id).send().await), 404);
    assert!(bob.list_scores().send().await.unwrap().into_inner().items.is_empty());
    let anonymous = Client::new(&world.base_url, Default::default());
    assert_eq!(status(anonymous.list_scores().send().await), 401);
    assert_eq!(status(anonymous.get_score().score_id(id).send().await), 401);
}

async fn bad_input_gets_every_violation(backend: Backend) {
    let world = World::start(backend).await;
    let (alice, http) = world.user("alice").await;
    let resp = http
        .post(format!("{}/v1/scores", world.base_url))
        .json(&json!({"title": "", "colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let problem: serde_json::Value = resp.json().await.unwrap();
    let mut pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort();
    assert_eq!(pointers, ["/colour", "/title"]);
    // Nothing was written.
    assert!(alice.list_scores().send().await.unwrap().into_inner().items.is_empty());
}

on_both_databases!(
    scores_are_created_read_changed_listed_and_deleted,
    another_users_score_is_404_and_tokens_are_required,
    bad_input_gets_every_violation,
);
