//! The users service: the generated `UsersApi` trait, implemented.

use super::api::*;
use super::store::{self, Changes, NewUser};
use super::UsersContext;
use crate::runtime::auth::{self, Caller};
use crate::runtime::db::StoreError;
use crate::runtime::pagination::Window;
use crate::runtime::Problem;
use dropshot::{
    HttpResponseCreated, HttpResponseDeleted, HttpResponseHeaders, HttpResponseOk, RequestContext,
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
        let password_hash = match body.password {
            Some(p) => Some(hash_password(&rqctx, p.to_string()).await?),
            None => None,
        };
        let changes = Changes {
            username: body.username.map(|u| u.to_string()),
            email: body.email.map(|e| e.to_string()),
            password_hash,
            first_name: body.first_name.map(|n| non_empty(Some(n))),
            last_name: body.last_name.map(|n| non_empty(Some(n))),
            role: body.role,
        };
        let user = store::update(&rqctx.context().db, id, changes)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseOk(user))
    }

    async fn delete_user(
        rqctx: RequestContext<UsersContext>,
        caller: Authenticated,
        path: ValidatedPath<DeleteUserPath>,
    ) -> Result<HttpResponseDeleted, Problem> {
        let id = path.into_inner().user_id;
        act_for(&rqctx, &caller, id)?;
        store::delete(&rqctx.context().db, id)
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
        let token = rqctx
            .context()
            .state
            .tokens
            .mint(user_id, role)
            .await
            .map_err(|e| Problem::internal(&rqctx.log, &e).request(&rqctx.request_id))?;
        Ok(HttpResponseOk(token))
    }

    async fn get_current_user(
        rqctx: RequestContext<UsersContext>,
        caller: Authenticated,
    ) -> Result<HttpResponseOk<types::User>, Problem> {
        match store::get(&rqctx.context().db, caller.user_id).await {
            Ok(user) => Ok(HttpResponseOk(user)),
            // A valid token of an account deleted since it was issued.
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
