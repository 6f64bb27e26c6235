//! The users service's signing keys: sealed at rest under a key-encryption key, rotated
//! with `server admin rotate-keys` (old keys published until their tokens expire), and one
//! key for every instance however many start at once.

use base64::Engine;
use sqlx::{Connection, Row};
use taproom_server::users;
use taproom_tests::{on_both_databases, Backend, TestDb, Users};

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn connect(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await.unwrap()
}

async fn published(users: &Users) -> Vec<String> {
    let jwks = users.client.get_jwks().send().await.unwrap().into_inner();
    jwks.keys.into_iter().map(|k| k.kid).collect()
}

/// The attack: a copy of the users database (a dump, a backup, another role's read).
/// What it holds of the signing key does not sign anything without the KEK, and only
/// opens for the row it was sealed for.
async fn the_signing_key_is_sealed_at_rest(backend: Backend) {
    let users = Users::start(backend).await;
    let mut conn = connect(&users.db.url(users::NAME)).await;
    let row =
        sqlx::query("SELECT kid, private_key, sealed_private_key, public_key FROM signing_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let private: Option<String> = row.get("private_key");
    assert_eq!(private, None, "no key in plain text");
    let sealed: String = row.get("sealed_private_key");
    assert!(sealed.starts_with("v1:"), "{sealed}");
    let sealed_bytes = base64::engine::general_purpose::STANDARD
        .decode(&sealed[3..])
        .unwrap();
    // Nothing that parses as the key is stored.
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    assert!(ed25519_dalek::SigningKey::from_pkcs8_der(&sealed_bytes).is_err());
    assert!(ed25519_dalek::SigningKey::from_pkcs8_der(&sealed_bytes[12..]).is_err());

    // With the KEK it opens to the key whose public half is published.
    let (kid, der) = users::signing_key(&users.db.config()).await.unwrap();
    assert_eq!(kid, row.get::<String, _>("kid"));
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
    assert_eq!(x, row.get::<String, _>("public_key"));

    // Another KEK (or none, on PostgreSQL) stops start-up with a message naming the setting.
    let mut wrong = users.db.config();
    wrong.signing_key_file = None;
    wrong.signing_key_encryption_key =
        Some(base64::engine::general_purpose::STANDARD.encode([9u8; 32]));
    let log = taproom_server::runtime::server::logger("critical", wrong.log_format).unwrap();
    let err = users::start(&wrong, &Default::default(), &log)
        .await
        .err()
        .expect("a wrong KEK is refused");
    assert!(format!("{err:#}").contains("does not open"), "{err:#}");
    let mut none = users.db.config();
    none.signing_key_encryption_key = None;
    match backend {
        Backend::Postgres => {
            let err = users::start(&none, &Default::default(), &log)
                .await
                .err()
                .expect("PostgreSQL without a KEK is refused");
            assert!(format!("{err:#}").contains("SIGNING_KEY_FILE"), "{err:#}");
        }
        // SQLite (the users' database on every other backend).
        _ => {
            // The one made in DATA_DIR, readable by its owner only.
            use std::os::unix::fs::PermissionsExt;
            let path = users.db.data_dir().join("signing-key.kek");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    // Moved to another key's row, the sealed key does not open: the kid is bound in.
    sqlx::query("UPDATE signing_keys SET kid = 'another-kid'")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = users::signing_key(&users.db.config()).await.unwrap_err();
    assert!(format!("{err:#}").contains("does not open"), "{err:#}");
}

/// A database from before sealing, with its key in plain text: the service seals it at
/// start-up and goes on signing with it, so issued tokens stay valid.
async fn plain_keys_from_before_are_sealed_on_start(backend: Backend) {
    let db = TestDb::new(backend);
    let url = db.url(users::NAME);
    if backend == Backend::Postgres {
        use sqlx::migrate::MigrateDatabase;
        sqlx::Postgres::create_database(&url).await.unwrap();
    }
    let mut conn = connect(&url).await;
    users::MIGRATOR.run_to(4, &mut conn).await.unwrap();
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let b64 = base64::engine::general_purpose::STANDARD;
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key, public_key, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind("old-kid")
    .bind(b64.encode(key.to_pkcs8_der().unwrap().as_bytes()))
    .bind(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()))
    .bind("2020-01-01T00:00:00.000000Z")
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let users = Users::start_on(db).await;
    let mut conn = connect(&url).await;
    let plain: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE private_key IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(plain, 0, "sealed on start");
    assert_eq!(published(&users).await, vec!["old-kid".to_string()]);
    let (_, token) = users.register("oldtimer").await;
    assert_eq!(kid_of(&token), "old-kid", "the old key goes on signing");
    let (_, der) = users::signing_key(&users.db.config()).await.unwrap();
    assert_eq!(der, key.to_pkcs8_der().unwrap().as_bytes());
}

/// `server admin rotate-keys`: the new key signs from then on, the old one stays published
/// (tokens it signed keep working) until they have all expired, and is then dropped.
async fn rotation_keeps_old_tokens_until_they_expire(backend: Backend) {
    let users = Users::start(backend).await;
    let (_, before) = users.register("rotator").await;
    let first = kid_of(&before);
    assert_eq!(published(&users).await, vec![first.clone()]);

    let rotation = users::rotate_keys(&users.db.config(), false).await.unwrap();
    assert_eq!(rotation.old_kids, vec![first.clone()]);
    let after = users.login("rotator", "a user password").await;
    assert_eq!(
        kid_of(&after),
        rotation.new_kid,
        "the new key signs at once"
    );
    assert_eq!(
        published(&users).await,
        vec![rotation.new_kid.clone(), first.clone()]
    );
    for token in [&before, &after] {
        let me = users
            .client_with_token(token)
            .get_current_user()
            .send()
            .await;
        assert!(me.is_ok(), "both keys verify: {me:?}");
    }

    // A token lifetime (plus grace) later, as if that much time had passed.
    let mut conn = connect(&users.db.url(users::NAME)).await;
    sqlx::query(
        "UPDATE signing_keys SET retired_at = '2000-01-01T00:00:00.000000Z' WHERE kid = $1",
    )
    .bind(&first)
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        published(&users).await,
        vec![rotation.new_kid.clone()],
        "no longer published"
    );
    let again = users::rotate_keys(&users.db.config(), false).await.unwrap();
    assert_eq!(again.expired, 1, "and deleted at the next rotation");
    assert_eq!(again.old_kids, vec![rotation.new_kid.clone()]);
    let kids: Vec<String> = sqlx::query_scalar("SELECT kid FROM signing_keys ORDER BY kid")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(kids.len(), 2);
    assert!(!kids.contains(&first));
}

on_both_databases!(
    the_signing_key_is_sealed_at_rest,
    plain_keys_from_before_are_sealed_on_start,
    rotation_keeps_old_tokens_until_they_expire
);

/// The race: several users instances start at once on one fresh PostgreSQL database, each
/// finding no key. They must end up with one: the same JWKS everywhere, and a token from
/// any instance verifies at every other. To make them really race, the test holds a lock
/// on the (migrated, empty) key table until every instance is waiting on it, then lets
/// them all go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_agree_on_one_key() {
    const INSTANCES: usize = 6;
    let db = TestDb::new(Backend::Postgres);
    let config = db.config();
    let url = db.url(users::NAME);
    {
        use sqlx::migrate::MigrateDatabase;
        sqlx::Postgres::create_database(&url).await.unwrap();
        let mut conn = connect(&url).await;
        users::MIGRATOR.run(&mut conn).await.unwrap();
    }
    let mut gate = connect(&url).await;
    sqlx::raw_sql("BEGIN; LOCK TABLE signing_keys IN EXCLUSIVE MODE")
        .execute(&mut gate)
        .await
        .unwrap();
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let starting: Vec<_> = (0..INSTANCES)
        .map(|_| {
            let (config, log) = (config.clone(), log.clone());
            tokio::spawn(async move { users::start(&config, &Default::default(), &log).await })
        })
        .collect();
    let watcher = sqlx::AnyPool::connect(&url).await.unwrap();
    taproom_tests::eventually(60, "every instance waits for the key table", || {
        let watcher = watcher.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks WHERE relation = 'signing_keys'::regclass AND NOT granted",
            )
            .fetch_one(&watcher)
            .await
            .unwrap();
            waiting == INSTANCES as i64
        }
    })
    .await;
    sqlx::raw_sql("COMMIT").execute(&mut gate).await.unwrap();
    let mut servers = Vec::new();
    for start in starting {
        servers.push(start.await.unwrap());
    }
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("http://{}", s.as_ref().expect("starts").local_addr()))
        .collect();
    let clients: Vec<taproom_client::users::Client> = urls
        .iter()
        .map(|u| taproom_client::users::Client::new(u, Default::default()))
        .collect();
    let mut jwks = Vec::new();
    for client in &clients {
        let keys = client.get_jwks().send().await.unwrap().into_inner().keys;
        jwks.push(keys.into_iter().map(|k| k.kid).collect::<Vec<_>>());
    }
    assert_eq!(jwks[0].len(), 1, "one key: {jwks:?}");
    assert!(jwks.iter().all(|k| *k == jwks[0]), "{jwks:?}");

    let body = serde_json::json!({"username": "racer", "email": "racer@example.com", "password": "a user password"});
    reqwest::Client::new()
        .post(format!("{}/v1/users", urls[0]))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    for (i, client) in clients.iter().enumerate() {
        let credentials = taproom_client::users::types::Credentials {
            username: Some("racer".parse().unwrap()),
            email: None,
            password: "a user password".parse().unwrap(),
        };
        let token = client
            .create_token()
            .body(credentials)
            .send()
            .await
            .unwrap()
            .into_inner()
            .access_token;
        assert_eq!(kid_of(&token), jwks[0][0]);
        let next = &urls[(i + 1) % urls.len()];
        let me = taproom_tests::bearer_client(&token)
            .get(format!("{next}/v1/auth/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            me.status(),
            200,
            "a token from instance {i} verifies at the next"
        );
    }
    for server in servers.into_iter().flatten() {
        server.close().await.unwrap();
    }
}
