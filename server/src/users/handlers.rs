//! The users service: the generated `UsersApi` trait, implemented.

use super::api::*;
use super::sessions;
use super::store::{self, Changes, NewUser};
use super::UsersContext;
use crate::runtime::auth::{self, Caller};
use crate::runtime::db::StoreError;
use crate::runtime::pagination::Window;
use crate::runtime::Problem;
use dropshot::{
    HttpResponseCreated, HttpResponseDeleted, HttpResponseHeaders, HttpResponseOk,
    HttpResponseUpdatedNoContent, RequestContext,
};
use taproom_client::users::types;

pub enum UsersImpl {}

fn store_problem(rqctx: &RequestContext<UsersContext>, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "user")
}

/// A hash of `password` (see `passwords`), or a 500 problem.
async fn hash_password(rqctx: &RequestContext<UsersContext>, password: String) -> Result<String, Problem> {
    super::passwords::hash(password)
        .await
        .map_err(|e| e.problem(&rqctx.log, &rqctx.request_id))
}

/// The user themself or an admin; to anyone else the user does not exist.
fn act_for(
    rqctx: &RequestContext<UsersContext>,
    caller: &Caller,
    user_id: uuid::Uuid,
) -> Result<(), Problem> {
    if !caller.may_act_for(user_id) {
        return Err(Problem::not_found("No such user.").request(&rqctx.request_id));
    }
    Ok(())
}

/// Checks `current_password` before a user changes their own password or email, so
/// that a stolen access token cannot take the account over. Wrong guesses go through the
/// login check, so they are throttled like logins.
async fn confirm_password(
    rqctx: &RequestContext<UsersContext>,
    user_id: uuid::Uuid,
    current_password: Option<String>,
) -> Result<(), Problem> {
    // Missing is refused like wrong (403): the request is well-formed, the caller has
    // just not proven they own the account.
    let Some(password) = current_password else {
        return Err(auth::forbidden(
            &rqctx.request_id,
            "Give `current_password` to change your own password or email.",
        ));
    };
    let user = store::get(&rqctx.context().db, user_id)
        .await
        .map_err(|e| store_problem(rqctx, e))?;
    match super::login::check(rqctx, &user.username, password).await {
        Ok((id, _)) if id == user_id => Ok(()),
        Ok(_) => Err(wrong_password(rqctx)),
        Err(problem) if problem.status == 401 => Err(wrong_password(rqctx)),
        Err(problem) => Err(problem),
    }
}

fn wrong_password(rqctx: &RequestContext<UsersContext>) -> Problem {
    auth::forbidden(&rqctx.request_id, "The current password is not right.")
}

/// The answer of a login or a refresh: an access token paired with the session's new
/// refresh token.
async fn answer_tokens(
    rqctx: &RequestContext<UsersContext>,
    user_id: uuid::Uuid,
    role: types::Role,
    refresh: sessions::Issued,
) -> Result<HttpResponseOk<types::Token>, Problem> {
    rqctx
        .context()
        .state
        .tokens
        .mint(user_id, role, refresh)
        .await
        .map(HttpResponseOk)
        .map_err(|e| Problem::internal(&rqctx.log, &e).request(&rqctx.request_id))
}

fn unusable_refresh_token(rqctx: &RequestContext<UsersContext>, why: &sessions::Refused) -> Problem {
    Problem::new(401, why.detail()).request(&rqctx.request_id)
}

fn non_empty(name: Option<types::PersonName>) -> Option<String> {
    name.map(|n| n.to_string()).filter(|n| !n.is_empty())
}

impl UsersApi for UsersImpl {
    type Context = UsersContext;

    async fn list_users(
        rqctx: RequestContext<UsersContext>,
        _admin: Admin,
        query: ValidatedQuery<ListUsersQuery>,
    ) -> Result<HttpResponseOk<types::UserPage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let fetched = store::list(&rqctx.context().db, &window)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let (items, next_page_token) = window.page(fetched, |u| u.id);
        Ok(HttpResponseOk(types::UserPage {
            items,
            next_page_token,
        }))
    }

    async fn create_user(
        rqctx: RequestContext<UsersContext>,
        _limit: CredentialsLimit,
        body: ValidatedBody<types::CreateUser>,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::User>>, Problem> {
        let body = body.into_inner();
        let new = NewUser {
            username: body.username.to_string(),
            email: body.email.to_string(),
            password_hash: hash_password(&rqctx, body.password.to_string()).await?,
            first_name: non_empty(body.first_name),
            last_name: non_empty(body.last_name),
        };
        let user = store::create(&rqctx.context().db, new)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(crate::runtime::http::created(
            format!("/v1/users/{}", user.id),
            user,
        ))
    }

    async fn get_user(
        rqctx: RequestContext<UsersContext>,
        caller: Authenticated,
        path: ValidatedPath<GetUserPath>,
    ) -> Result<HttpResponseOk<types::User>, Problem> {
        let id = path.into_inner().user_id;
        act_for(&rqctx, &caller, id)?;
        let user = store::get(&rqctx.context().db, id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseOk(user))
    }

    async fn update_user(
        rqctx: RequestContext<UsersContext>,
        caller: Authenticated,
        path: ValidatedPath<UpdateUserPath>,
        body: ValidatedBody<types::UpdateUser>,
    ) -> Result<HttpResponseOk<types::User>, Problem> {
        let id = path.into_inner().user_id;
        act_for(&rqctx, &caller, id)?;
        let body = body.into_inner();
        if body.role.is_some() && !caller.admin {
            return Err(auth::forbidden(
                &rqctx.request_id,
                "Only admins may change roles.",
            ));
        }
        // Your own password or email needs your password; an admin changing someone
        // else's account is trusted with it (their role was checked against the stored
        // account, not only their token).
        if caller.user_id == id && (body.password.is_some() || body.email.is_some()) {
            confirm_password(&rqctx, id, body.current_password.as_ref().map(|p| p.to_string())).await?;
        }
        let password_hash = match body.password {
            Some(p) => Some(hash_password(&rqctx, p.to_string()).await?),
            None => None,
        };
        // A new password or role ends every session: refreshing would otherwise keep a
        // thief logged in, or keep minting tokens under the old rules.
        let end_sessions = password_hash.is_some() || body.role.is_some();
        let changes = Changes {
            username: body.username.map(|u| u.to_string()),
            email: body.email.map(|e| e.to_string()),
            password_hash,
            first_name: body.first_name.map(|n| non_empty(Some(n))),
            last_name: body.last_name.map(|n| non_empty(Some(n))),
            role: body.role,
        };
        let db = &rqctx.context().db;
        let user = store::update(db, id, changes)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        if end_sessions {
            sessions::end_all(db, id)
                .await
                .map_err(|e| store_problem(&rqctx, e))?;
        }
        Ok(HttpResponseOk(user))
    }

    async fn delete_user(
        rqctx: RequestContext<UsersContext>,
        caller: Authenticated,
        path: ValidatedPath<DeleteUserPath>,
    ) -> Result<HttpResponseDeleted, Problem> {
        let id = path.into_inner().user_id;
        act_for(&rqctx, &caller, id)?;
        let db = &rqctx.context().db;
        store::delete(db, id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        sessions::forget(db, id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseDeleted())
    }

    async fn create_token(
        rqctx: RequestContext<UsersContext>,
        _limit: CredentialsLimit,
        credentials: BasicCredentials,
        body: OptionalBody<types::Credentials>,
    ) -> Result<HttpResponseOk<types::Token>, Problem> {
        let (login, password) =
            super::login::credentials(&rqctx, credentials.into_inner(), body.into_inner())?;
        let (user_id, role) = super::login::check(&rqctx, &login, password).await?;
        let context = rqctx.context();
        let refresh = sessions::start(&context.db, user_id, context.state.tokens.refresh_ttl_secs)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        answer_tokens(&rqctx, user_id, role, refresh).await
    }

    async fn refresh_token(
        rqctx: RequestContext<UsersContext>,
        body: ValidatedBody<types::RefreshRequest>,
    ) -> Result<HttpResponseOk<types::Token>, Problem> {
        let token = body.into_inner().refresh_token;
        let context = rqctx.context();
        let rotated = sessions::rotate(&context.db, &token, context.state.tokens.refresh_ttl_secs)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let (user_id, role, refresh) =
            rotated.map_err(|why| unusable_refresh_token(&rqctx, &why))?;
        answer_tokens(&rqctx, user_id, role, refresh).await
    }

    async fn logout(
        rqctx: RequestContext<UsersContext>,
        body: ValidatedBody<types::RefreshRequest>,
    ) -> Result<HttpResponseUpdatedNoContent, Problem> {
        let token = body.into_inner().refresh_token;
        let known = sessions::end(&rqctx.context().db, &token)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        if !known {
            return Err(unusable_refresh_token(&rqctx, &sessions::Refused::Unknown));
        }
        Ok(HttpResponseUpdatedNoContent())
    }

    async fn get_current_user(
        rqctx: RequestContext<UsersContext>,
        caller: Authenticated,
    ) -> Result<HttpResponseOk<types::User>, Problem> {
        match store::get(&rqctx.context().db, caller.user_id).await {
            Ok(user) => Ok(HttpResponseOk(user)),
            // Deleted since the security check looked it up.
            Err(StoreError::NotFound) => Err(auth::unauthorized(
                &rqctx.request_id,
                "the account no longer exists",
                true,
            )),
            Err(e) => Err(store_problem(&rqctx, e)),
        }
    }

    async fn get_jwks(
        rqctx: RequestContext<UsersContext>,
    ) -> Result<HttpResponseOk<types::Jwks>, Problem> {
        let jwks = rqctx
            .context()
            .state
            .tokens
            .jwks()
            .await
            .map_err(|e| Problem::internal(&rqctx.log, &e).request(&rqctx.request_id))?;
        Ok(HttpResponseOk(jwks))
    }
}
