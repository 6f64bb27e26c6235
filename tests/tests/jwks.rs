//! How services other than users check tokens: a `Keyring` filled from the users
//! service's published keys through the generated client.

use std::time::Duration;
use taproom_server::runtime::auth::{Keyring, Rejection};
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

on_both_databases!(
    a_remote_keyring_verifies_tokens_from_users,
    unknown_keys_and_unreachable_users
);
