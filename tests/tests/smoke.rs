use taproom_tests::{on_both_databases, Backend, Users};

async fn ping_answers_pong(backend: Backend) {
    let users = Users::start(backend).await;
    let pong = users.client.ping().send().await.unwrap().into_inner();
    assert_eq!(pong.message, "pong!");
}

on_both_databases!(ping_answers_pong);
