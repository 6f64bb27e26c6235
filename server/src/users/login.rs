//! Checking credentials for `create_token`: JSON or HTTP Basic, argon2id verification
//! that costs the same whether or not the account exists, and throttling of repeated
//! failures (`throttle`).

use super::{passwords, store, throttle};
use super::UsersContext;
use crate::runtime::db::StoreError;
use crate::runtime::Problem;
use dropshot::RequestContext;
use taproom_client::users::types;
use uuid::Uuid;

fn bad_credentials(rqctx: &RequestContext<UsersContext>) -> Problem {
    // Same answer for an unknown account and a wrong password.
    Problem::new(401, "The username, email or password is not right.")
        .request(&rqctx.request_id)
        .header(http::header::WWW_AUTHENTICATE, "Basic realm=\"taproom\"")
}

/// (login, password) from the JSON body, else from the `Authorization: Basic` header
/// (read by the generated `BasicCredentials` argument).
pub fn credentials(
    rqctx: &RequestContext<UsersContext>,
    basic: Option<(String, String)>,
    body: Option<types::Credentials>,
) -> Result<(String, String), Problem> {
    if let Some(body) = body {
        // No login at all is just wrong credentials: the same 401 as any other.
        let login = body
            .username
            .map(|u| u.to_string())
            .or_else(|| body.email.map(|e| e.to_string()));
        return match login {
            Some(login) => Ok((login, body.password.to_string())),
            None => Err(bad_credentials(rqctx)),
        };
    }
    basic.ok_or_else(|| {
        Problem::new(
            401,
            "Send credentials as JSON or with HTTP Basic authentication.",
        )
        .request(&rqctx.request_id)
        .header(http::header::WWW_AUTHENTICATE, "Basic realm=\"taproom\"")
    })
}

fn db_problem(rqctx: &RequestContext<UsersContext>, e: StoreError) -> Problem {
    Problem::internal(&rqctx.log, &format!("{e:?}")).request(&rqctx.request_id)
}

/// Checks a login and password; the account's id and role when they are right.
pub async fn check(
    rqctx: &RequestContext<UsersContext>,
    login: &str,
    password: String,
) -> Result<(Uuid, types::Role), Problem> {
    let context = rqctx.context();
    let db = &context.db;
    let found = store::credentials(db, login)
        .await
        .map_err(|e| db_problem(rqctx, e))?;
    let account = match &found {
        Some((id, _, _)) => id.to_string(),
        None => login.to_lowercase(),
    };
    let keys = throttle::keys(context.state.throttle, &account, context.clients.of(rqctx));
    let now = chrono::Utc::now().timestamp();
    for (key, free) in &keys {
        if let Err(wait) = throttle::reserve(db, key, *free, now)
            .await
            .map_err(|e| db_problem(rqctx, e))?
        {
            db.metrics.login_throttled.inc();
            return Err(Problem::new(
                429,
                "Too many failed logins for this account; try again later.",
            )
            .request(&rqctx.request_id)
            .header(http::header::RETRY_AFTER, &wait.to_string()));
        }
    }
    let hash = found
        .as_ref()
        .map(|(_, _, h)| h.clone())
        .unwrap_or_else(|| passwords::dummy_hash().to_string());
    let matches = passwords::verify(password, hash)
        .await
        .map_err(|e| e.problem(&rqctx.log, &rqctx.request_id))?;
    match (found, matches) {
        (Some((id, role, _)), true) => {
            for (key, _) in &keys {
                throttle::clear(db, key)
                    .await
                    .map_err(|e| db_problem(rqctx, e))?;
            }
            Ok((id, role))
        }
        // The failure was counted before the check.
        _ => Err(bad_credentials(rqctx)),
    }
}
