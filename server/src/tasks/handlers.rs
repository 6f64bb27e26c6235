//! The tasks service: the generated `TasksApi` trait, implemented. Every operation acts
//! for the caller of its bearer token, on the caller's own tasks only.

use super::api::*;
use super::store::Changes;
use super::TasksContext;
use crate::runtime::db::StoreError;
use crate::runtime::http::created;
use crate::runtime::pagination::Window;
use crate::runtime::Problem;
use dropshot::{
    HttpResponseCreated, HttpResponseDeleted, HttpResponseHeaders, HttpResponseOk, RequestContext,
};
use taproom_client::tasks::types;

pub enum TasksImpl {}

fn store_problem(rqctx: &RequestContext<TasksContext>, e: StoreError) -> Problem {
    e.problem(&rqctx.log, &rqctx.request_id, "task")
}

/// Empty text means "none".
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

impl TasksApi for TasksImpl {
    type Context = TasksContext;

    async fn list_tasks(
        rqctx: RequestContext<TasksContext>,
        me: Authenticated,
        query: ValidatedQuery<ListTasksQuery>,
    ) -> Result<HttpResponseOk<types::TaskPage>, Problem> {
        let query = query.into_inner();
        let window = Window::of(query.page_token.as_deref(), query.limit, &rqctx.request_id)?;
        let fetched = rqctx
            .context()
            .db
            .list(me.user_id, query.done, &window)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        let (items, next_page_token) = window.page(fetched, |t| t.id);
        Ok(HttpResponseOk(types::TaskPage {
            items,
            next_page_token,
        }))
    }

    async fn create_task(
        rqctx: RequestContext<TasksContext>,
        me: Authenticated,
        body: ValidatedBody<types::CreateTask>,
    ) -> Result<HttpResponseHeaders<HttpResponseCreated<types::Task>>, Problem> {
        let body = body.into_inner();
        let description = non_empty(body.description.map(|d| d.to_string()));
        let task = rqctx
            .context()
            .db
            .create(
            me.user_id,
            &body.title,
            description.as_deref(),
        )
        .await
        .map_err(|e| store_problem(&rqctx, e))?;
        Ok(created(format!("/v1/tasks/{}", task.id), task))
    }

    async fn get_task(
        rqctx: RequestContext<TasksContext>,
        me: Authenticated,
        path: ValidatedPath<GetTaskPath>,
    ) -> Result<HttpResponseOk<types::Task>, Problem> {
        let task = rqctx.context().db.get(me.user_id, path.into_inner().task_id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseOk(task))
    }

    async fn update_task(
        rqctx: RequestContext<TasksContext>,
        me: Authenticated,
        path: ValidatedPath<UpdateTaskPath>,
        body: ValidatedBody<types::UpdateTask>,
    ) -> Result<HttpResponseOk<types::Task>, Problem> {
        let body = body.into_inner();
        let changes = Changes {
            title: body.title.map(|t| t.to_string()),
            description: body.description.map(|d| non_empty(Some(d.to_string()))),
            done: body.done,
        };
        let task = rqctx.context().db.update(
            me.user_id,
            path.into_inner().task_id,
            changes,
        )
        .await
        .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseOk(task))
    }

    async fn delete_task(
        rqctx: RequestContext<TasksContext>,
        me: Authenticated,
        path: ValidatedPath<DeleteTaskPath>,
    ) -> Result<HttpResponseDeleted, Problem> {
        rqctx.context().db.delete(me.user_id, path.into_inner().task_id)
            .await
            .map_err(|e| store_problem(&rqctx, e))?;
        Ok(HttpResponseDeleted())
    }
}
