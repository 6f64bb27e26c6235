//! A login's tokens, shared by every client a [`Connection`](crate::Connection) hands
//! out. Access tokens live minutes; the session sends the current one and, holding the
//! login's refresh token, gets a new pair from `refresh_token` when the access token is
//! about to expire or a service refuses it, then repeats the refused request once. Each
//! refresh token works once, so refreshes are serialised: a session never races itself
//! into presenting a used token (which would end the whole session server-side).

use crate::users;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tokens a session holds now.
#[derive(Clone)]
struct Tokens {
    access: String,
    refresh: Option<String>,
    /// When the access token expires, by our clock (from `expires_in`).
    expires_at: Instant,
    lifetime: Duration,
}

impl Tokens {
    fn from_token(token: &users::types::Token) -> Tokens {
        let lifetime = Duration::from_secs(token.expires_in.into());
        Tokens {
            access: token.access_token.clone(),
            refresh: Some(token.refresh_token.clone()),
            expires_at: Instant::now() + lifetime,
            lifetime,
        }
    }

    /// Close enough to expiry to refresh before sending: a tenth of its lifetime or
    /// 30 s left, whichever is less (so that a request in flight does not outlive it).
    fn near_expiry(&self) -> bool {
        let margin = (self.lifetime / 10).min(Duration::from_secs(30));
        self.expires_at.saturating_duration_since(Instant::now()) <= margin
    }
}

/// The token state every connection derived from one login shares
/// ([`Connection::to_builder`](crate::Connection::to_builder) keeps it).
pub(crate) struct SharedTokens {
    current: Mutex<Tokens>,
    /// Held while refreshing, so one refresh token is presented once.
    refreshing: tokio::sync::Mutex<()>,
}

impl SharedTokens {
    pub(crate) fn new(token: &users::types::Token) -> Arc<SharedTokens> {
        Arc::new(SharedTokens {
            current: Mutex::new(Tokens::from_token(token)),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    fn get(&self) -> Tokens {
        self.current.lock().expect("session lock").clone()
    }
}

/// The session of a generated client: none for a client made directly
/// (`Client::new(url, Default::default())`), a login's tokens for one from a
/// [`Connection`](crate::Connection) built with
/// [`tokens`](crate::ConnectionBuilder::tokens).
#[derive(Clone, Default)]
pub struct Session(Option<Arc<Inner>>);

struct Inner {
    tokens: Arc<SharedTokens>,
    /// Where to refresh: a bare users client (no session of its own).
    users: users::Client,
}

// Hand-written so that no token ends up in a log line through `{:?}`.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Session(<redacted>)"
        } else {
            "Session(None)"
        })
    }
}

impl Session {
    pub(crate) fn new(tokens: Arc<SharedTokens>, users_url: &str, http: reqwest::Client) -> Self {
        Session(Some(Arc::new(Inner {
            tokens,
            users: users::Client::new_with_client(users_url, http, Session::default()),
        })))
    }

    /// The current access and refresh tokens, if this is a login's session.
    pub(crate) fn current(&self) -> Option<(String, Option<String>)> {
        self.0.as_ref().map(|inner| {
            let t = inner.tokens.get();
            (t.access, t.refresh)
        })
    }

    /// Forgets the refresh token (after logging out).
    pub(crate) fn forget_refresh(&self) {
        if let Some(inner) = &self.0 {
            inner.tokens.current.lock().expect("session lock").refresh = None;
        }
    }

    /// Sends `request` (the generated clients' `exec` hook): with the session's access
    /// token, refreshed first when about to expire, and once more with a new one when a
    /// service refuses the token. Requests that already carry credentials (a
    /// `CallContext`'s token, say) are sent as they are.
    pub(crate) async fn exec(
        &self,
        http: &reqwest::Client,
        mut request: reqwest::Request,
    ) -> reqwest::Result<reqwest::Response> {
        let Some(inner) = &self.0 else {
            return http.execute(request).await;
        };
        if request.headers().contains_key(AUTHORIZATION) {
            return http.execute(request).await;
        }
        let mut access = inner.tokens.get().access;
        if inner.tokens.get().near_expiry() {
            access = inner.refresh_after(&access).await.unwrap_or(access);
        }
        // A streamed body cannot be sent twice; such a request is not repeated.
        let again = request.try_clone();
        set_bearer(&mut request, &access);
        let response = http.execute(request).await?;
        let Some(mut again) = again.filter(|_| token_refused(&response)) else {
            return Ok(response);
        };
        // A refused token means nothing was done (services check it before anything
        // else), so repeating even a POST is safe.
        match inner.refresh_after(&access).await {
            Some(fresh) => {
                set_bearer(&mut again, &fresh);
                http.execute(again).await
            }
            None => Ok(response),
        }
    }
}

/// What `refresh_token` answers.
type Refreshed = Result<
    progenitor_client::ResponseValue<users::types::Token>,
    users::Error<users::types::Problem>,
>;

impl Inner {
    /// Calls `refresh_token`. A plain function returning a boxed future: the call goes
    /// through the generated client's `exec` hook, which may call this again (with no
    /// session), and only a named type breaks that cycle for the compiler.
    fn send_refresh(
        &self,
        refresh_token: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Refreshed> + Send + '_>> {
        Box::pin(
            self.users
                .refresh_token()
                .body(users::types::RefreshRequest { refresh_token })
                .send(),
        )
    }

    /// A fresh access token replacing `stale`: another request's, if one refreshed while
    /// this waited, else a new pair from `refresh_token`. `None` when the session cannot
    /// be refreshed (no refresh token, or it was refused).
    async fn refresh_after(&self, stale: &str) -> Option<String> {
        let _one_at_a_time = self.tokens.refreshing.lock().await;
        let current = self.tokens.get();
        if current.access != stale {
            return Some(current.access);
        }
        let result = self.send_refresh(current.refresh?).await;
        let mut tokens = self.tokens.current.lock().expect("session lock");
        match result {
            Ok(pair) => {
                *tokens = Tokens::from_token(&pair.into_inner());
                Some(tokens.access.clone())
            }
            // Refused: used, expired or revoked. It will not work later either.
            Err(users::Error::ErrorResponse(problem)) if problem.status == 401 => {
                tokens.refresh = None;
                None
            }
            // Unreachable or failing: keep the token for the next attempt.
            Err(_) => None,
        }
    }
}

fn set_bearer(request: &mut reqwest::Request, token: &str) {
    if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
    }
}

/// Whether a response refuses the bearer token itself (RFC 6750 `invalid_token`:
/// expired, revoked, unknown key), as opposed to other 401s such as wrong credentials.
fn token_refused(response: &reqwest::Response) -> bool {
    response.status() == reqwest::StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.starts_with("Bearer") && v.contains("invalid_token"))
}
