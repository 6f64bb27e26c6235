//! Revocable sessions (issue 14, item 4), on SQLite and PostgreSQL: short-lived access
//! tokens, rotating refresh tokens, and the attacks they close. Each test performs the
//! attack and fails if the defence is removed: a demoted admin re-promoting, a deleted
//! account acting, a refresh token outliving a password change or a logout, a copied
//! refresh token used after its owner, a password change by a stolen access token. The
//! SDK's `Connection` refreshes transparently.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use taproom_client::users::types;
use taproom_client::Connection;
use taproom_tests::{on_both_databases, problem, Backend, Users};

/// The password `Users::register` gives every account.
const PASSWORD: &str = "a user password";

/// `create_token`'s whole answer (access and refresh token).
async fn log_in(users: &Users, name: &str, password: &str) -> types::Token {
    users
        .client
        .create_token()
        .body(types::Credentials {
            username: Some(name.parse().unwrap()),
            email: None,
            password: password.parse().unwrap(),
        })
        .send()
        .await
        .expect("login")
        .into_inner()
}

async fn refresh(
    users: &Users,
    refresh_token: &str,
) -> Result<types::Token, taproom_client::users::Error<types::Problem>> {
    users
        .client
        .refresh_token()
        .body(types::RefreshRequest {
            refresh_token: refresh_token.into(),
        })
        .send()
        .await
        .map(|r| r.into_inner())
}

fn refused<T: std::fmt::Debug>(result: Result<T, taproom_client::users::Error<types::Problem>>) {
    let (status, problem) = problem(result);
    assert_eq!(status, 401, "{problem:?}");
}

/// The `role` claim of an access token.
fn role_claim(token: &str) -> String {
    let claims = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    claims["role"].as_str().unwrap().to_string()
}

fn set_role(role: types::Role) -> types::UpdateUser {
    types::UpdateUser {
        role: Some(role),
        ..Default::default()
    }
}

async fn an_admin_demoted_cannot_promote_themself_back_with_their_old_token(backend: Backend) {
    let users = Users::start(backend).await;
    let (root, _) = users.admin().await;
    let (mallory, _) = users.register("mallory").await;
    root.update_user()
        .user_id(mallory)
        .body(set_role(types::Role::Admin))
        .send()
        .await
        .unwrap();
    let promoted = log_in(&users, "mallory", PASSWORD).await;
    assert_eq!(role_claim(&promoted.access_token), "admin");
    let mallory_client = users.client_with_token(&promoted.access_token);
    assert!(mallory_client.list_users().send().await.is_ok());

    root.update_user()
        .user_id(mallory)
        .body(set_role(types::Role::User))
        .send()
        .await
        .unwrap();
    // The access token still says `admin` and has not expired; users asks its database.
    let (status, _) = problem(
        mallory_client
            .update_user()
            .user_id(mallory)
            .body(set_role(types::Role::Admin))
            .send()
            .await,
    );
    assert_eq!(status, 403);
    assert_eq!(problem(mallory_client.list_users().send().await).0, 403);
    let me = mallory_client.get_current_user().send().await.unwrap();
    assert_eq!(me.role, types::Role::User);
    // The role change ended the session: no fresh admin token from the refresh token.
    refused(refresh(&users, &promoted.refresh_token).await);
}

async fn a_deleted_accounts_token_is_refused_by_users(backend: Backend) {
    let users = Users::start(backend).await;
    let (id, _) = users.register("gone").await;
    let pair = log_in(&users, "gone", PASSWORD).await;
    let gone = users.client_with_token(&pair.access_token);
    gone.delete_user().user_id(id).send().await.unwrap();

    refused(gone.get_current_user().send().await);
    refused(gone.get_user().user_id(id).send().await);
    refused(gone.delete_user().user_id(id).send().await);
    refused(
        gone.update_user()
            .user_id(id)
            .body(types::UpdateUser {
                first_name: Some("Ghost".parse().unwrap()),
                ..Default::default()
            })
            .send()
            .await,
    );
    refused(refresh(&users, &pair.refresh_token).await);

    // An admin deleted by another admin loses their powers at once, too.
    let (root, _) = users.admin().await;
    let (other, _) = users.register("other_admin").await;
    root.update_user()
        .user_id(other)
        .body(set_role(types::Role::Admin))
        .send()
        .await
        .unwrap();
    let other_token = log_in(&users, "other_admin", PASSWORD).await.access_token;
    root.delete_user().user_id(other).send().await.unwrap();
    refused(
        users
            .client_with_token(&other_token)
            .list_users()
            .send()
            .await,
    );
}

async fn a_refresh_token_gives_a_new_pair_once(backend: Backend) {
    let users = Users::start(backend).await;
    let (id, _) = users.register("ada").await;
    let first = log_in(&users, "ada", PASSWORD).await;
    assert!(first.refresh_expires_in > first.expires_in);
    let second = refresh(&users, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    let me = users
        .client_with_token(&second.access_token)
        .get_current_user()
        .send()
        .await
        .unwrap();
    assert_eq!(me.id, id);
    // The role comes from the account, not from the session's start.
    let (root, _) = users.admin().await;
    root.update_user()
        .user_id(id)
        .body(set_role(types::Role::Admin))
        .send()
        .await
        .unwrap();
    let later = log_in(&users, "ada", PASSWORD).await;
    let third = refresh(&users, &later.refresh_token).await.unwrap();
    assert_eq!(role_claim(&third.access_token), "admin");
    refused(refresh(&users, "not a refresh token").await);
}

async fn a_reused_refresh_token_ends_its_whole_session(backend: Backend) {
    let users = Users::start(backend).await;
    users.register("victim").await;
    let stolen = log_in(&users, "victim", PASSWORD).await;
    let elsewhere = log_in(&users, "victim", PASSWORD).await;
    // The owner refreshes first; then the thief presents the copied (used) token.
    let owners = refresh(&users, &stolen.refresh_token).await.unwrap();
    refused(refresh(&users, &stolen.refresh_token).await);
    // Nobody holding that session's tokens can refresh any more: not the owner's newer
    // token either (the server cannot tell who is who).
    refused(refresh(&users, &owners.refresh_token).await);
    // Other sessions (another device) are not affected.
    assert!(refresh(&users, &elsewhere.refresh_token).await.is_ok());

    // The other order: the thief refreshes first, the owner's later attempt ends it.
    let session = log_in(&users, "victim", PASSWORD).await;
    let thiefs = refresh(&users, &session.refresh_token).await.unwrap();
    refused(refresh(&users, &session.refresh_token).await);
    refused(refresh(&users, &thiefs.refresh_token).await);
}

async fn concurrent_refreshes_with_one_token_give_one_pair(backend: Backend) {
    let users = Users::start(backend).await;
    users.register("racer").await;
    let pair = log_in(&users, "racer", PASSWORD).await;
    let attempts =
        futures::future::join_all((0..8).map(|_| refresh(&users, &pair.refresh_token))).await;
    let won = attempts.iter().filter(|a| a.is_ok()).count();
    assert_eq!(won, 1, "{attempts:?}");
}

async fn logout_ends_the_session(backend: Backend) {
    let users = Users::start(backend).await;
    users.register("leaver").await;
    let pair = log_in(&users, "leaver", PASSWORD).await;
    let other = log_in(&users, "leaver", PASSWORD).await;
    let rotated = refresh(&users, &pair.refresh_token).await.unwrap();
    let logout = |token: String| {
        users
            .client
            .logout()
            .body(types::RefreshRequest {
                refresh_token: token,
            })
            .send()
    };
    logout(rotated.refresh_token.clone()).await.unwrap();
    refused(refresh(&users, &rotated.refresh_token).await);
    // Logging out again is not an error; an unknown token is.
    logout(rotated.refresh_token.clone()).await.unwrap();
    refused(logout("never issued".into()).await);
    assert!(refresh(&users, &other.refresh_token).await.is_ok());
}

async fn an_expired_refresh_token_is_refused(backend: Backend) {
    let users = Users::start_with(backend, |c| c.refresh_token_ttl_secs = 0).await;
    users.register("late").await;
    let pair = log_in(&users, "late", PASSWORD).await;
    refused(refresh(&users, &pair.refresh_token).await);
}

fn change(password: Option<&str>, email: Option<&str>, current: Option<&str>) -> types::UpdateUser {
    types::UpdateUser {
        password: password.map(|p| p.parse().unwrap()),
        email: email.map(|e| e.parse().unwrap()),
        current_password: current.map(|c| c.parse().unwrap()),
        ..Default::default()
    }
}

async fn changing_password_or_email_needs_the_current_password(backend: Backend) {
    let users = Users::start(backend).await;
    let (id, token) = users.register("owner").await;
    // A stolen access token alone cannot take the account over.
    let thief = users.client_with_token(&token);
    let attempts = [
        (change(Some("thief's password"), None, None), 403),
        (change(None, Some("thief@example.com"), None), 403),
        (
            change(Some("thief's password"), None, Some("a guess at it")),
            403,
        ),
        (
            change(None, Some("thief@example.com"), Some("a guess at it")),
            403,
        ),
    ];
    for (body, status) in attempts {
        let (got, problem) = problem(thief.update_user().user_id(id).body(body).send().await);
        assert_eq!(got, status, "{problem:?}");
    }
    log_in(&users, "owner", PASSWORD).await;
    // Other fields need no password.
    thief
        .update_user()
        .user_id(id)
        .body(types::UpdateUser {
            first_name: Some("Own".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    // The owner, who knows it, can.
    thief
        .update_user()
        .user_id(id)
        .body(change(
            Some("a new password"),
            Some("owner2@example.com"),
            Some(PASSWORD),
        ))
        .send()
        .await
        .unwrap();
    log_in(&users, "owner", "a new password").await;
    // An admin resets someone else's password without knowing it.
    let (root, _) = users.admin().await;
    root.update_user()
        .user_id(id)
        .body(change(Some("reset by admin"), None, None))
        .send()
        .await
        .unwrap();
    log_in(&users, "owner", "reset by admin").await;
}

async fn a_password_change_ends_every_session(backend: Backend) {
    let users = Users::start(backend).await;
    let (id, _) = users.register("careful").await;
    let stolen = log_in(&users, "careful", PASSWORD).await;
    let own = log_in(&users, "careful", PASSWORD).await;
    users
        .client_with_token(&own.access_token)
        .update_user()
        .user_id(id)
        .body(change(Some("a better password"), None, Some(PASSWORD)))
        .send()
        .await
        .unwrap();
    refused(refresh(&users, &stolen.refresh_token).await);
    refused(refresh(&users, &own.refresh_token).await);
    let fresh = log_in(&users, "careful", "a better password").await;
    assert!(refresh(&users, &fresh.refresh_token).await.is_ok());
}

/// A `Connection` logged in as a new user `name` of `users`.
async fn connection(users: &Users, name: &str) -> Connection {
    users.register(name).await;
    Connection::builder()
        .base_url(&users.base_url)
        .build()
        .unwrap()
        .log_in(types::Credentials {
            username: Some(name.parse().unwrap()),
            email: None,
            password: PASSWORD.parse().unwrap(),
        })
        .await
        .unwrap()
}

async fn the_sdk_refreshes_a_refused_token_and_repeats_the_call(backend: Backend) {
    let users = Users::start(backend).await;
    let logged_in = connection(&users, "sdk_user").await;
    // A session whose access token the service refuses (as it would an expired one).
    let session = types::Token {
        access_token: "refused.access.token".into(),
        token_type: types::TokenTokenType::Bearer,
        expires_in: 300,
        refresh_token: logged_in.refresh_token().unwrap(),
        refresh_expires_in: 3600,
    };
    let sdk = logged_in.to_builder().tokens(&session).build().unwrap();
    let me = sdk.users().get_current_user().send().await.unwrap();
    assert_eq!(me.username, "sdk_user");
    let renewed = sdk.access_token().unwrap();
    assert_ne!(renewed, session.access_token);
    assert_ne!(sdk.refresh_token().unwrap(), session.refresh_token);
    // A request with a body is repeated whole.
    let session = types::Token {
        access_token: "refused.again".into(),
        refresh_token: sdk.refresh_token().unwrap(),
        ..session
    };
    let sdk = sdk.to_builder().tokens(&session).build().unwrap();
    let changed = sdk
        .users()
        .update_user()
        .user_id(me.id)
        .body(types::UpdateUser {
            first_name: Some("Renewed".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    assert_eq!(changed.first_name.as_deref(), Some("Renewed"));

    // After logging out the session cannot be renewed: the refusal reaches the caller.
    let last = sdk.refresh_token().unwrap();
    sdk.log_out().await.unwrap();
    assert_eq!(sdk.refresh_token(), None);
    let session = types::Token {
        access_token: "refused.once.more".into(),
        refresh_token: last,
        ..session
    };
    let ended = sdk.to_builder().tokens(&session).build().unwrap();
    refused(ended.users().get_current_user().send().await);
}

async fn the_sdk_refreshes_an_access_token_about_to_expire(backend: Backend) {
    // Access tokens of one second: the SDK refreshes before sending once it is (nearly)
    // gone. The server still accepts it for a few seconds of leeway, so a new token
    // after the call can only come from the SDK refreshing on its own.
    let users = Users::start_with(backend, |c| c.token_ttl_secs = 1).await;
    let sdk = connection(&users, "sdk_clock").await;
    let first = sdk.access_token().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sdk.users().get_current_user().send().await.unwrap();
    let second = sdk.access_token().unwrap();
    assert_ne!(first, second);
    // Connections derived from it share the session (and so never present a used
    // refresh token, which would end it).
    let derived = sdk.to_builder().build().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    derived.users().get_current_user().send().await.unwrap();
    sdk.users().get_current_user().send().await.unwrap();
    assert_eq!(sdk.access_token(), derived.access_token());
    assert_ne!(sdk.access_token().unwrap(), second);
}

on_both_databases!(
    an_admin_demoted_cannot_promote_themself_back_with_their_old_token,
    a_deleted_accounts_token_is_refused_by_users,
    a_refresh_token_gives_a_new_pair_once,
    a_reused_refresh_token_ends_its_whole_session,
    concurrent_refreshes_with_one_token_give_one_pair,
    logout_ends_the_session,
    an_expired_refresh_token_is_refused,
    changing_password_or_email_needs_the_current_password,
    a_password_change_ends_every_session,
    the_sdk_refreshes_a_refused_token_and_repeats_the_call,
    the_sdk_refreshes_an_access_token_about_to_expire,
);
