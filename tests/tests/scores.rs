//! Contract tests of the scores service, on SQLite and PostgreSQL, through the
//! generated clients: graded submissions reach scores as `submission.graded` events from
//! the exercises outbox and are counted once per event, also when scores was down while
//! they were graded; a replayed event is a duplicate; admins see an exercise's scores,
//! others get 403; the events endpoint takes only signed events.

use serde_json::json;
use taproom_client::scores::{types, Error};
use taproom_tests::{eventually, graded, on_both_databases, Backend, Exercises, EVENTS_TOKEN};

const TESTS: &str = "def test_double():\n    assert double(2) == 4\n\ndef test_zero():\n    assert double(0) == 0\n";
const RIGHT: &str = "def double(n):\n    return 2 * n\n";
const HALF_RIGHT: &str = "def double(n):\n    return 4 if n == 2 else n + 1\n";

async fn my_scores(client: &taproom_client::scores::Client) -> Vec<types::Score> {
    client
        .list_my_scores()
        .send()
        .await
        .expect("list_my_scores")
        .into_inner()
        .items
}

async fn graded_submissions_are_counted_once_even_when_scores_was_down(backend: Backend) {
    let mut world = Exercises::start(backend).await;
    let admin_token = world.users.admin_token().await;
    let admin = world.exercises(&admin_token);
    let exercise = admin
        .create_exercise()
        .body(
            serde_json::from_value::<taproom_client::exercises::types::CreateExercise>(
                json!({"title": "Double", "statement": "Double it.",
                "language": "python3", "test_code": TESTS}),
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .id;
    let (user_id, token) = world.users.register("scorer").await;
    let client = world.exercises(&token);

    // Scores goes down; two submissions are graded meanwhile, their events wait.
    world.stop_scores().await;
    let mut ids = Vec::new();
    for code in [HALF_RIGHT, RIGHT] {
        let s = client
            .create_submission()
            .exercise_id(exercise)
            .body(
                serde_json::from_value::<taproom_client::exercises::types::CreateSubmission>(
                    json!({ "code": code }),
                )
                .unwrap(),
            )
            .send()
            .await
            .unwrap()
            .into_inner();
        ids.push(s.id);
    }
    let first = graded(&client, exercise, ids[0]).await;
    assert_eq!(first.status.to_string(), "failed");
    let second = graded(&client, exercise, ids[1]).await;
    assert_eq!(second.status.to_string(), "passed");
    assert!(
        reqwest::get(format!("{}/ping", world.scores_url))
            .await
            .is_err(),
        "scores is down"
    );

    world.start_scores().await;
    let scores = world.scores(&token);
    eventually(30, "both graded submissions counted", || async {
        my_scores(&scores).await.first().map(|s| s.attempts) == Some(2)
    })
    .await;
    let score = my_scores(&scores).await.remove(0);
    assert_eq!(score.user_id, user_id);
    assert_eq!(score.exercise_id, exercise);
    assert_eq!(score.best_status, types::Grade::Passed);
    assert_eq!((score.best_passed_tests, score.best_total_tests), (2, 2));
    assert_eq!(score.first_passed_at, second.finished_at);

    // The same event again (a redelivery, a replay) changes nothing.
    let event = json!({
        "id": uuid::Uuid::now_v7(),
        "type": "submission.graded",
        "occurred_at": chrono::Utc::now(),
        "submission": {"submission_id": ids[0], "exercise_id": exercise, "user_id": user_id,
            "status": "failed", "passed_tests": 1, "total_tests": 2},
    });
    let body = serde_json::to_vec(&event).unwrap();
    let signature = taproom_server::runtime::events::sign(EVENTS_TOKEN, &body);
    let raw = reqwest::Client::new();
    let send = || {
        raw.post(format!("{}/v1/events", world.scores_url))
            .bearer_auth(EVENTS_TOKEN)
            .header("content-type", "application/json")
            .header("Taproom-Signature", &signature)
            .body(body.clone())
            .send()
    };
    let receipt: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(receipt["duplicate"], false);
    let receipt: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(receipt["duplicate"], true);
    // Unsigned, it is not taken.
    let unsigned = raw
        .post(format!("{}/v1/events", world.scores_url))
        .bearer_auth(EVENTS_TOKEN)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // Waiting longer does not count the first two again (a relay retries until acknowledged).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let score = my_scores(&scores).await.remove(0);
    assert_eq!(score.attempts, 3);
    assert_eq!(
        score.best_status,
        types::Grade::Passed,
        "a failure never replaces a pass"
    );

    // An exercise's scores are for admins.
    let by_exercise = world
        .scores(&admin_token)
        .list_exercise_scores()
        .exercise_id(exercise)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_exercise.items.len(), 1);
    assert_eq!(by_exercise.items[0].user_id, user_id);
    match scores
        .list_exercise_scores()
        .exercise_id(exercise)
        .send()
        .await
    {
        Err(Error::ErrorResponse(rv)) => assert_eq!(rv.status().as_u16(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
}

on_both_databases!(graded_submissions_are_counted_once_even_when_scores_was_down);
