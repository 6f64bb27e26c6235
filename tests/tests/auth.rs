//! Authentication and authorization of the users service, on both databases: the login
//! flow (JSON and Basic), throttling, every kind of bad token, and access to other
//! users' accounts (BOLA).

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use taproom_client::users::{types, Error};
use taproom_tests::{on_both_databases, Backend, Users};

const PASSWORD: &str = "correct horse battery";

async fn register(users: &Users, name: &str) -> types::User {
    let body =
        json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD});
    let resp = users
        .raw()
        .post(format!("{}/v1/users", users.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

fn status<T: std::fmt::Debug>(result: Result<T, Error<types::Problem>>) -> u16 {
    match result {
        Err(Error::ErrorResponse(rv)) => rv.status().as_u16(),
        other => panic!("expected an error response, got {other:?}"),
    }
}

async fn token_request(
    users: &Users,
    body: Option<Value>,
    basic: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut req = users
        .raw()
        .post(format!("{}/v1/auth/token", users.base_url));
    if let Some(body) = body {
        req = req.json(&body);
    }
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.unwrap()
}

async fn login_with_json_or_basic(backend: Backend) {
    let users = Users::start(backend).await;
    let ada = register(&users, "ada").await;
    let by_name = token_request(
        &users,
        Some(json!({"username": "ada", "password": PASSWORD})),
        None,
    )
    .await;
    let by_email = token_request(
        &users,
        Some(json!({"email": "ADA@example.com", "password": PASSWORD})),
        None,
    )
    .await;
    let by_basic = token_request(&users, None, Some(("ada@example.com", PASSWORD))).await;
    for resp in [by_name, by_email, by_basic] {
        assert_eq!(resp.status(), 200);
        let token: Value = resp.json().await.unwrap();
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], 3600);
        let me = users.client_with_token(token["access_token"].as_str().unwrap());
        let me = me.get_current_user().send().await.unwrap().into_inner();
        assert_eq!(me, ada);
    }
    // The published keys verify what was issued.
    let jwks = users.client.get_jwks().send().await.unwrap().into_inner();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(
        (jwks.keys[0].kty.as_str(), jwks.keys[0].alg.as_deref()),
        ("OKP", Some("EdDSA"))
    );
}

async fn bad_credentials_are_401_without_hints(backend: Backend) {
    let users = Users::start(backend).await;
    register(&users, "ada").await;
    let wrong = token_request(
        &users,
        Some(json!({"username": "ada", "password": "wrong password"})),
        None,
    )
    .await;
    let unknown = token_request(
        &users,
        Some(json!({"username": "nobody", "password": PASSWORD})),
        None,
    )
    .await;
    let basic = token_request(&users, None, Some(("ada", "wrong password"))).await;
    let mut details = Vec::new();
    for resp in [wrong, unknown, basic] {
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        let problem: Value = resp.json().await.unwrap();
        details.push(problem["detail"].as_str().unwrap().to_string());
    }
    assert!(
        details.iter().all(|d| d == &details[0]),
        "the answers differ: {details:?}"
    );
    let none = token_request(&users, None, None).await;
    assert_eq!(none.status(), 401);
    let no_login = token_request(&users, Some(json!({"password": PASSWORD})), None).await;
    assert_eq!(no_login.status(), 401);
    let problem: Value = no_login.json().await.unwrap();
    assert_eq!(problem["detail"].as_str().unwrap(), details[0]);
}

async fn repeated_failures_are_throttled(backend: Backend) {
    let users = Users::start(backend).await;
    register(&users, "ada").await;
    register(&users, "grace").await;
    for _ in 0..5 {
        let resp = token_request(
            &users,
            Some(json!({"username": "ada", "password": "guess"})),
            None,
        )
        .await;
        assert_eq!(resp.status(), 401);
    }
    // Now even the right password waits.
    let resp = token_request(
        &users,
        Some(json!({"username": "ada", "password": PASSWORD})),
        None,
    )
    .await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    // Other accounts are not affected.
    let resp = token_request(
        &users,
        Some(json!({"username": "grace", "password": PASSWORD})),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
}

/// A login from `address` (as the trusted proxy in front of the service reports it).
async fn login_from(
    users: &Users,
    address: &str,
    login: &str,
    password: &str,
) -> reqwest::Response {
    users
        .raw()
        .post(format!("{}/v1/auth/token", users.base_url))
        .header("x-forwarded-for", address)
        .json(&json!({"username": login, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn parallel_guesses_reach_the_check_at_most_the_limit(backend: Backend) {
    let users = Users::start(backend).await;
    register(&users, "ada").await;
    // 50 wrong guesses at once, by username and by email: one account, one counter.
    let guesses = (0..50).map(|i| {
        let login = if i % 2 == 0 { "ada" } else { "ADA@example.com" };
        let body = json!({"username": login, "password": format!("guess {i}")});
        let users = &users;
        async move {
            token_request(users, Some(body), None)
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // Every attempt is counted before its password is checked: exactly the limit of
    // them got as far as the check, the rest were refused without it.
    assert_eq!((checked, refused), (5, 45), "{statuses:?}");
}

async fn a_guesser_is_throttled_at_their_address_not_the_owner(backend: Backend) {
    let users = Users::start(backend).await;
    register(&users, "ada").await;
    let attacker = "203.0.113.7";
    for i in 0..5 {
        let resp = login_from(&users, attacker, "ada", &format!("guess {i}")).await;
        assert_eq!(resp.status(), 401);
    }
    // The attacker's address now waits, even with the right password ...
    let resp = login_from(&users, attacker, "ada", PASSWORD).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    // ... and a spoofed X-Forwarded-For in front of the proxy's does not help: the
    // right-most untrusted hop is the one that counts.
    let resp = login_from(
        &users,
        &format!("198.51.100.1, {attacker}"),
        "ada",
        PASSWORD,
    )
    .await;
    assert_eq!(resp.status(), 429);
    // The owner, from their own address, signs in.
    let resp = login_from(&users, "198.51.100.9", "ada", PASSWORD).await;
    assert_eq!(resp.status(), 200);
}

async fn guessing_from_many_addresses_locks_the_account(backend: Backend) {
    let users = Users::start_with(backend, |c| c.login_failures_per_account = 12).await;
    register(&users, "ada").await;
    // Four failures each from three addresses: under the per-address limit every time,
    // and the twelfth failure overall locks the account.
    for n in 0..3 {
        for i in 0..4 {
            let resp = login_from(
                &users,
                &format!("203.0.113.{n}"),
                "ada",
                &format!("guess {i}"),
            )
            .await;
            assert_eq!(resp.status(), 401);
        }
    }
    let resp = login_from(&users, "198.51.100.9", "ada", PASSWORD).await;
    assert_eq!(resp.status(), 429);
}

async fn credential_endpoints_are_rate_limited_per_address(backend: Backend) {
    let users = Users::start_with(backend, |c| {
        c.credentials_rate_per_minute = 1;
        c.credentials_burst = 3;
    })
    .await;
    let sign_up = |address: &'static str, name: &'static str| {
        let users = &users;
        async move {
            users
                .raw()
                .post(format!("{}/v1/users", users.base_url))
                .header("x-forwarded-for", address)
                .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}))
                .send()
                .await
                .unwrap()
        }
    };
    // Registrations and logins share the address's bucket.
    assert_eq!(sign_up("203.0.113.7", "ada").await.status(), 201);
    assert_eq!(
        login_from(&users, "203.0.113.7", "ada", "wrong")
            .await
            .status(),
        401
    );
    assert_eq!(
        login_from(&users, "203.0.113.7", "ada", PASSWORD)
            .await
            .status(),
        200
    );
    let over = sign_up("203.0.113.7", "grace").await;
    assert_eq!(over.status(), 429);
    let wait: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "Retry-After {wait}");
    let problem: Value = over.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    // Another address has its own bucket.
    assert_eq!(sign_up("203.0.113.8", "grace").await.status(), 201);
    assert_eq!(
        login_from(&users, "203.0.113.8", "ada", PASSWORD)
            .await
            .status(),
        200
    );
}

/// Login-failure counters idle for a day and expired refresh tokens are pruned; recent
/// ones stay.
async fn idle_failure_counters_and_expired_refresh_tokens_are_pruned(backend: Backend) {
    let users = Users::start(backend).await;
    register(&users, "ada").await;
    assert_eq!(
        login_from(&users, "203.0.113.1", "ada", "wrong")
            .await
            .status(),
        401
    );
    assert_eq!(
        login_from(&users, "203.0.113.2", "nobody", "wrong")
            .await
            .status(),
        401
    );
    // Success clears Ada's account-wide counter and this address's, not 203.0.113.1's.
    assert_eq!(
        login_from(&users, "203.0.113.3", "ada", PASSWORD)
            .await
            .status(),
        200
    );
    let config = users.db.config();
    let def = &taproom_server::users::SERVICE;
    let db = taproom_server::runtime::server::connect(&config, def.name, def.migrator)
        .await
        .unwrap();
    let count = |table: &'static str| {
        let db = db.clone();
        async move {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&db.pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("login_throttle").await, 3);
    assert_eq!(count("refresh_tokens").await, 1);
    // The unknown name's counters went idle long ago, and Ada's session expired.
    const LONG_AGO: &str = "2020-01-01T00:00:00.000000Z";
    sqlx::query("UPDATE login_throttle SET updated_at = $1 WHERE key LIKE 'nobody%'")
        .bind(LONG_AGO)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE refresh_tokens SET expires_at = $1")
        .bind(LONG_AGO)
        .execute(&db.pool)
        .await
        .unwrap();
    let pruned =
        taproom_server::runtime::retention::prune(&db, &taproom_server::users::retention_rules())
            .await
            .unwrap();
    assert_eq!(pruned, vec![("login_throttle", 2), ("refresh_tokens", 1)]);
    assert_eq!(count("login_throttle").await, 1);
    assert_eq!(count("refresh_tokens").await, 0);
}

async fn forged_expired_and_malformed_tokens_are_refused(backend: Backend) {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let users = Users::start(backend).await;
    let ada = register(&users, "ada").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64, role: &str| json!({"sub": ada.id.to_string(), "role": role, "iat": now, "exp": exp, "iss": "taproom-users"});
    // Sanity: a token we sign with the service's key the same way is accepted.
    let good = users.sign(claims(now + 600, "user")).await;
    assert_eq!(
        users
            .client_with_token(&good)
            .get_current_user()
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let other_der = other_key.to_pkcs8_der().unwrap();
    let forged = jsonwebtoken::encode(
        &header,
        &claims(now + 600, "admin"),
        &EncodingKey::from_ed_der(other_der.as_bytes()),
    )
    .unwrap();
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(claims(now + 600, "admin"))
    );
    // Signed with jsonwebtoken's own RustCrypto provider: the process-wide one may be
    // Taproom's (the services in this process install it), which signs EdDSA only.
    let hs256 = {
        let signed = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "typ": "JWT", "kid": kid})),
            b64(claims(now + 600, "admin"))
        );
        let signer = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.signer_factory)(
            &Algorithm::HS256,
            &EncodingKey::from_secret(b"guessable"),
        )
        .unwrap();
        let signature = signer.try_sign(signed.as_bytes()).unwrap();
        format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    };
    let expired = users.sign(claims(now - 120, "user")).await;
    let mut unknown_kid = Header::new(Algorithm::EdDSA);
    unknown_kid.kid = Some("no-such-key".into());
    let unknown = jsonwebtoken::encode(
        &unknown_kid,
        &claims(now + 600, "user"),
        &EncodingKey::from_ed_der(other_der.as_bytes()),
    )
    .unwrap();
    let wrong_issuer = users.sign(json!({"sub": ada.id.to_string(), "role": "user", "iat": now, "exp": now + 600, "iss": "someone-else"})).await;

    let me = format!("{}/v1/auth/me", users.base_url);
    for (what, authorization) in [
        ("no token", None),
        ("not bearer", Some(format!("Basic {}", b64(json!("x"))))),
        ("malformed", Some("Bearer not.a.jwt".to_string())),
        ("empty", Some("Bearer ".to_string())),
        ("signed by another key", Some(format!("Bearer {forged}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        ("HS256", Some(format!("Bearer {hs256}"))),
        ("expired", Some(format!("Bearer {expired}"))),
        ("unknown key id", Some(format!("Bearer {unknown}"))),
        ("wrong issuer", Some(format!("Bearer {wrong_issuer}"))),
    ] {
        let mut req = users.raw().get(&me);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer realm=\"taproom\""),
            "{what}: {challenge}"
        );
        let body = resp.text().await.unwrap();
        assert!(!body.contains("\"id\""), "{what}: user data leaked: {body}");
    }
    // And none of the forged admin tokens can list users.
    for token in [&forged, &alg_none, &hs256] {
        assert_eq!(
            status(users.client_with_token(token).list_users().send().await),
            401
        );
    }
}

async fn other_users_accounts_are_invisible(backend: Backend) {
    let users = Users::start(backend).await;
    let ada = register(&users, "ada").await;
    let grace = register(&users, "grace").await;
    let as_ada = users.client_with_token(&users.login("ada", PASSWORD).await);
    let as_grace = users.client_with_token(&users.login("grace", PASSWORD).await);

    // Without a token: 401 everywhere but registration, login and the key set.
    assert_eq!(
        status(users.client.get_user().user_id(ada.id).send().await),
        401
    );
    assert_eq!(status(users.client.list_users().send().await), 401);
    assert_eq!(
        status(users.client.delete_user().user_id(ada.id).send().await),
        401
    );

    // Grace cannot see, change or delete Ada: 404, as if Ada did not exist.
    assert_eq!(
        status(as_grace.get_user().user_id(ada.id).send().await),
        404
    );
    let change = types::UpdateUser {
        first_name: Some("Mallory".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(
        status(
            as_grace
                .update_user()
                .user_id(ada.id)
                .body(change.clone())
                .send()
                .await
        ),
        404
    );
    assert_eq!(
        status(as_grace.delete_user().user_id(ada.id).send().await),
        404
    );
    let still = as_ada
        .get_user()
        .user_id(ada.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still, ada, "nothing changed");
    // ... and an unknown id looks the same as someone else's.
    assert_eq!(
        status(
            as_grace
                .get_user()
                .user_id(uuid::Uuid::now_v7())
                .send()
                .await
        ),
        404
    );

    // Ada manages herself.
    let renamed = as_ada
        .update_user()
        .user_id(ada.id)
        .body(change)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.first_name.as_deref(), Some("Mallory"));
    // But cannot make herself an admin, nor list users.
    let promote = types::UpdateUser {
        role: Some(types::Role::Admin),
        ..Default::default()
    };
    assert_eq!(
        status(
            as_ada
                .update_user()
                .user_id(ada.id)
                .body(promote.clone())
                .send()
                .await
        ),
        403
    );
    assert_eq!(status(as_ada.list_users().send().await), 403);

    // An admin can do all of it.
    let (admin, _) = users.admin().await;
    assert_eq!(
        admin
            .get_user()
            .user_id(grace.id)
            .send()
            .await
            .unwrap()
            .into_inner(),
        grace
    );
    let promoted = admin
        .update_user()
        .user_id(ada.id)
        .body(promote)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(promoted.role, types::Role::Admin);
    let as_admin_ada = users.client_with_token(&users.login("ada", PASSWORD).await);
    assert_eq!(
        as_admin_ada
            .list_users()
            .send()
            .await
            .unwrap()
            .into_inner()
            .items
            .len(),
        3
    );
    assert_eq!(
        admin
            .delete_user()
            .user_id(grace.id)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    // Grace's token outlives her account, but not for `me`.
    assert_eq!(status(as_grace.get_current_user().send().await), 401);
}

on_both_databases!(
    login_with_json_or_basic,
    bad_credentials_are_401_without_hints,
    repeated_failures_are_throttled,
    parallel_guesses_reach_the_check_at_most_the_limit,
    a_guesser_is_throttled_at_their_address_not_the_owner,
    guessing_from_many_addresses_locks_the_account,
    credential_endpoints_are_rate_limited_per_address,
    idle_failure_counters_and_expired_refresh_tokens_are_pruned,
    forged_expired_and_malformed_tokens_are_refused,
    other_users_accounts_are_invisible,
);
