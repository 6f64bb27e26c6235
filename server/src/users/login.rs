//! Checking credentials for `create_token`: JSON or HTTP Basic, argon2id verification
//! that costs the same whether or not the account exists, and throttling of repeated
//! failures per account identifier.

use super::{passwords, store};
use super::UsersContext;
use crate::runtime::db::StoreError;
use crate::runtime::Problem;
use dropshot::RequestContext;
use taproom_client::users::types;
use uuid::Uuid;

/// Consecutive failures allowed before an account's logins are refused for a while.
const FREE_FAILURES: i64 = 5;
/// The first wait, doubling with each further failure, up to `MAX_LOCK_SECS`.
const FIRST_LOCK_SECS: i64 = 30;
const MAX_LOCK_SECS: i64 = 15 * 60;

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
    let db = &rqctx.context().db;
    let account = login.to_lowercase();
    let now = chrono::Utc::now();
    if let Some(until) = store::locked_until(db, &account)
        .await
        .map_err(|e| db_problem(rqctx, e))?
    {
        if let Ok(until) = chrono::DateTime::parse_from_rfc3339(&until) {
            let wait = (until.with_timezone(&chrono::Utc) - now).num_seconds();
            if wait > 0 {
                return Err(Problem::new(
                    429,
                    "Too many failed logins for this account; try again later.",
                )
                .request(&rqctx.request_id)
                .header(http::header::RETRY_AFTER, &wait.to_string()));
            }
        }
    }
    let found = store::credentials(db, login)
        .await
        .map_err(|e| db_problem(rqctx, e))?;
    let hash = found
        .as_ref()
        .map(|(_, _, h)| h.clone())
        .unwrap_or_else(|| passwords::dummy_hash().to_string());
    let matches = passwords::verify(password, hash)
        .await
        .map_err(|e| Problem::internal(&rqctx.log, &e).request(&rqctx.request_id))?;
    match (found, matches) {
        (Some((id, role, _)), true) => {
            store::clear_failures(db, &account)
                .await
                .map_err(|e| db_problem(rqctx, e))?;
            Ok((id, role))
        }
        _ => {
            let failures = store::record_failure(db, &account)
                .await
                .map_err(|e| db_problem(rqctx, e))?;
            if failures >= FREE_FAILURES {
                let secs =
                    (FIRST_LOCK_SECS << (failures - FREE_FAILURES).min(10)).min(MAX_LOCK_SECS);
                let until = crate::runtime::db::time_text(now + chrono::Duration::seconds(secs));
                store::lock(db, &account, &until)
                    .await
                    .map_err(|e| db_problem(rqctx, e))?;
            }
            Err(bad_credentials(rqctx))
        }
    }
}
