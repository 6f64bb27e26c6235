//! How services other than users check tokens: a `Keyring` filled from the users
//! service's published keys through the generated client.

use std::time::Duration;
use taproom_server::runtime::auth::{Keyring, RefetchPolicy, Rejection};
use taproom_tests::{on_both_databases, Backend, Users};

async fn a_remote_keyring_verifies_tokens_from_users(backend: Backend) {
    let users = Users::start(backend).await;
    let token = users.admin_token().await;
    let keyring = Keyring::remote(&users.base_url, Duration::from_secs(2)).unwrap();
    // The first token triggers the fetch of the key set.
    let claims = keyring
        .verify(&token)
        .await
        .expect("a users token verifies elsewhere");
    assert_eq!(claims.role, "admin");
    assert_eq!(claims.iss, "taproom-users");
    // Tampering is caught with the fetched key, as with the local one.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(matches!(
        keyring.verify(&forged).await,
        Err(Rejection::Invalid(_))
    ));
}

async fn unknown_keys_and_unreachable_users(backend: Backend) {
    let users = Users::start(backend).await;
    let token = users.admin_token().await;
    let parts: Vec<&str> = token.split('.').collect();
    // Same token, but naming a key nobody published.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "made-up"});
    let unknown_kid = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        parts[1],
        parts[2]
    );

    let keyring = Keyring::remote(&users.base_url, Duration::from_secs(2)).unwrap();
    assert_eq!(
        keyring.verify(&unknown_kid).await.map(|_| ()),
        Err(Rejection::Invalid("the token is signed by an unknown key"))
    );
    assert!(
        keyring.verify(&token).await.is_ok(),
        "known keys were fetched"
    );

    // Nothing listens here: before any key is known, tokens cannot be checked (503), which
    // is not the same as a bad token (401).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let offline = Keyring::remote(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_millis(500),
    )
    .unwrap();
    assert_eq!(
        offline.verify(&token).await.map(|_| ()),
        Err(Rejection::KeysUnavailable)
    );
    // Once it has failed, unknown key ids do not make it hammer users: within the
    // refetch interval they are refused without another fetch.
    let fetched = Keyring::remote(&users.base_url, Duration::from_secs(2)).unwrap();
    assert!(fetched.verify(&token).await.is_ok());
    let mut users = users;
    users.stop().await;
    assert_eq!(
        fetched.verify(&unknown_kid).await.map(|_| ()),
        Err(Rejection::Invalid("the token is signed by an unknown key")),
        "no fetch was attempted (it would have said KeysUnavailable)"
    );
    assert!(
        fetched.verify(&token).await.is_ok(),
        "known keys keep working without users"
    );
}

/// `token` with its header naming `kid` instead (the signature no longer matters: the
/// keyring must look the key up before it can tell).
fn naming_kid(token: &str, kid: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64.encode(header.to_string()))
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The attack: users is down and a flood of tokens names made-up keys. Each would take the
/// keyring's lock and wait for a fetch that times out; one fetch per backoff window is all
/// they get. (A backoff of an hour, so that the count does not depend on how fast the
/// requests run.)
async fn while_users_is_down_unknown_kids_cost_one_fetch(backend: Backend) {
    let mut users = Users::start(backend).await;
    let token = users.admin_token().await;
    let policy = RefetchPolicy {
        interval: Duration::ZERO,
        failure_backoff: Duration::from_secs(3600),
        ..RefetchPolicy::REMOTE
    };
    let keyring = std::sync::Arc::new(
        Keyring::remote_with(&users.base_url, Duration::from_millis(500), policy).unwrap(),
    );
    assert!(keyring.verify(&token).await.is_ok());
    assert_eq!(keyring.fetches(), 1);
    users.stop().await;

    let attempts = futures::future::join_all((0..300).map(|_| {
        let keyring = keyring.clone();
        let forged = naming_kid(&token, &uuid::Uuid::now_v7().to_string());
        async move { keyring.verify(&forged).await.map(|_| ()) }
    }))
    .await;
    assert!(
        attempts
            .iter()
            .all(|a| *a == Err(Rejection::KeysUnavailable)),
        "an unknown key while users is unreachable is 503, not 401"
    );
    assert_eq!(keyring.fetches(), 2, "one failed fetch, then the backoff");
    assert!(
        keyring.verify(&token).await.is_ok(),
        "known keys keep working without users"
    );
    assert_eq!(keyring.fetches(), 2);
}

/// A made-up key id that a fetch did not find is not fetched for again (the refetch
/// interval is off here, so only that memory stops the fetches).
async fn an_unknown_kid_is_fetched_for_once(backend: Backend) {
    let users = Users::start(backend).await;
    let token = users.admin_token().await;
    let policy = RefetchPolicy {
        interval: Duration::ZERO,
        unknown_kid_ttl: Duration::from_secs(3600),
        ..RefetchPolicy::REMOTE
    };
    let keyring = Keyring::remote_with(&users.base_url, Duration::from_secs(2), policy).unwrap();
    let forged = naming_kid(&token, "made-up");
    for _ in 0..50 {
        assert_eq!(
            keyring.verify(&forged).await.map(|_| ()),
            Err(Rejection::Invalid("the token is signed by an unknown key"))
        );
    }
    assert_eq!(keyring.fetches(), 1);
    assert!(
        keyring.verify(&token).await.is_ok(),
        "fetched with the first"
    );
    assert_eq!(keyring.fetches(), 1);
}

/// Keys users stops publishing (here revoked with `server admin rotate-keys --revoke`) are
/// dropped at the next fetch, which the first token of the new key triggers: tokens of
/// the old key then fail, elsewhere and at users itself.
async fn a_key_users_no_longer_publishes_stops_verifying(backend: Backend) {
    let users = Users::start(backend).await;
    let (_, old) = users.register("keyholder").await;
    let policy = RefetchPolicy {
        interval: Duration::ZERO,
        ..RefetchPolicy::REMOTE
    };
    let keyring = Keyring::remote_with(&users.base_url, Duration::from_secs(2), policy).unwrap();
    assert!(keyring.verify(&old).await.is_ok());
    let me = |token: &str| {
        let client = users.client_with_token(token);
        async move {
            client
                .get_current_user()
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.status())
        }
    };
    assert!(me(&old).await.is_ok());

    let rotation = taproom_server::users::rotate_keys(&users.db.config(), true)
        .await
        .unwrap();
    assert_eq!(rotation.old_kids, vec![kid_of(&old)]);
    let new = users.login("keyholder", "a user password").await;
    assert_eq!(kid_of(&new), rotation.new_kid);

    assert!(keyring.verify(&new).await.is_ok(), "the new key is fetched");
    assert_eq!(
        keyring.verify(&old).await.map(|_| ()),
        Err(Rejection::Invalid("the token is signed by an unknown key")),
        "the revoked key was dropped with that fetch"
    );
    assert!(me(&new).await.is_ok());
    assert_eq!(me(&old).await, Err(Some(reqwest::StatusCode::UNAUTHORIZED)));
}

on_both_databases!(
    a_remote_keyring_verifies_tokens_from_users,
    unknown_keys_and_unreachable_users,
    while_users_is_down_unknown_kids_cost_one_fetch,
    an_unknown_kid_is_fetched_for_once,
    a_key_users_no_longer_publishes_stops_verifying
);
