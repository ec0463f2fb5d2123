//! `/users` (device users: search, add, remove) and `/labels` (list with members, add,
//! remove), through the store functions `/api/v2/users` and `/api/v2/labels` call.

use super::view::{
    Field, Moment, Pager, field_problems, given, message_page, offset_of, place_problems,
    query_string, refusal,
};
use crate::console::confirm::{Confirm, Confirmed};
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render_with};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use tandem_store::labels::{self, Label, LabelInput};
use tandem_store::users::{self, User, UserInput};
use tandem_store::{PageRequest, StoreError};

/// Users or labels per page: a screenful, well under the store's page bound.
const DIRECTORY_PAGE_SIZE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(add_user))
        .route("/users/{id}/remove", post(remove_user))
        .route("/labels", get(list_labels).post(add_label))
        .route("/labels/{id}/remove", post(remove_label))
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    query: Option<String>,
    offset: Option<String>,
}

#[derive(Template)]
#[template(path = "console/admin_users.html")]
struct UsersPage {
    chrome: Chrome,
    query: String,
    users: Vec<UserRow>,
    pager: Pager,
    fields: Vec<Field>,
    unplaced: Vec<String>,
}

struct UserRow {
    user: User,
    name: String,
    created: Moment,
    /// The user's devices in the device list.
    devices_href: String,
}

#[derive(Debug, Default, Deserialize)]
struct UserForm {
    principal: Option<String>,
    email: Option<String>,
    #[serde(rename = "firstName")]
    first_name: Option<String>,
    #[serde(rename = "lastName")]
    last_name: Option<String>,
}

fn user_fields(form: &UserForm) -> Vec<Field> {
    let value = |text: &Option<String>| text.clone().unwrap_or_default();
    vec![
        Field::text("principal", "Principal", value(&form.principal))
            .required()
            .hint("The user's sign-in name, e.g. jdoe@example.com; fixed once created."),
        Field::text("email", "E-mail", value(&form.email)).kind("email"),
        Field::text("firstName", "First name", value(&form.first_name)),
        Field::text("lastName", "Last name", value(&form.last_name)),
    ]
}

/// The Users page; `form` and `problems` refill the Add form after a refused add.
async fn users_page(
    state: &AppState,
    chrome: Chrome,
    query: ListQuery,
    form: &UserForm,
    problems: &[tandem_store::FieldError],
) -> Response {
    let text = given(query.query).unwrap_or_default();
    let offset = offset_of(query.offset.as_deref());
    let request = PageRequest {
        query: Some(text.clone()),
        limit: Some(DIRECTORY_PAGE_SIZE),
        offset: Some(offset),
    };
    let page = match state.db.read(move |conn| users::list(conn, &request)).await {
        Ok(page) => page,
        Err(error) => return unreadable(chrome, error, "/users"),
    };
    let base = format!("/users{}", query_string(&[("query", &text)]));
    let pager = Pager::new(
        &base,
        offset,
        page.results.len(),
        page.total_count,
        DIRECTORY_PAGE_SIZE,
    );
    let now = time::OffsetDateTime::now_utc();
    let users = page
        .results
        .into_iter()
        .map(|user| UserRow {
            name: [user.first_name.as_deref(), user.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            created: Moment::stored(&user.created_at, now),
            devices_href: format!("/devices{}", query_string(&[("query", &user.principal)])),
            user,
        })
        .collect();
    let mut fields = user_fields(form);
    let unplaced = place_problems(&mut fields, problems);
    let status = super::view::status_of(problems);
    render_with(
        status,
        &UsersPage {
            chrome,
            query: text,
            users,
            pager,
            fields,
            unplaced,
        },
    )
}

fn unreadable(chrome: Chrome, error: StoreError, back: &str) -> Response {
    let status = match error {
        StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    message_page(status, chrome, Flash::error(refusal(error)), back)
}

async fn list_users(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Query(query): Query<ListQuery>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/users", "Users");
    users_page(&state, chrome, query, &UserForm::default(), &[]).await
}

async fn add_user(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(form): ConsoleForm<UserForm>,
) -> Response {
    let input = UserInput {
        principal: form.principal.clone().filter(|text| !text.is_empty()),
        email: given(form.email.clone()),
        first_name: given(form.first_name.clone()),
        last_name: given(form.last_name.clone()),
    };
    let actor = session.user().to_owned();
    match state
        .db
        .write(move |conn| users::create(conn, &actor, &input))
        .await
    {
        Ok(user) => session.redirect(
            &state,
            "/users",
            Flash::success(format!("User {} added.", user.principal)),
        ),
        Err(error @ StoreError::Invalid(_)) => {
            let chrome = Chrome::new(&state, &ha, &session, "/users", "Users");
            let problems = field_problems(&error).to_vec();
            users_page(&state, chrome, ListQuery::default(), &form, &problems).await
        }
        Err(error) => session.redirect(
            &state,
            "/users",
            Flash::error(format!("The user was not added: {}", refusal(error))),
        ),
    }
}

async fn remove_user(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Path(id): Path<i64>,
    ConsoleForm(confirmed): ConsoleForm<Confirmed>,
) -> Response {
    if !confirmed.yes() {
        let Ok(user) = state.db.read(move |conn| users::get(conn, id)).await else {
            return session.redirect(&state, "/users", Flash::error("No such user."));
        };
        return Confirm {
            chrome: Chrome::new(&state, &ha, &session, "/users", "Remove User"),
            question: format!("Remove user {}?", user.principal),
            consequences: vec![
                "The user is removed from every node of the group; a user who still has \
                 devices is not removed."
                    .into(),
            ],
            action: format!("/users/{id}/remove"),
            fields: Vec::new(),
            button: format!("Remove {}", user.principal),
            cancel: "/users".into(),
        }
        .page();
    }
    let actor = session.user().to_owned();
    let removed = state
        .db
        .write(move |conn| {
            let user = users::get(conn, id)?;
            users::delete(conn, &actor, id)?;
            Ok(user.principal)
        })
        .await;
    let flash = match removed {
        Ok(principal) => Flash::success(format!("User {principal} removed.")),
        Err(error) => Flash::error(format!("The user was not removed: {}", refusal(error))),
    };
    session.redirect(&state, "/users", flash)
}

#[derive(Template)]
#[template(path = "console/admin_labels.html")]
struct LabelsPage {
    chrome: Chrome,
    query: String,
    labels: Vec<LabelRow>,
    pager: Pager,
    fields: Vec<Field>,
    unplaced: Vec<String>,
}

struct LabelRow {
    label: Label,
    created: Moment,
}

#[derive(Debug, Default, Deserialize)]
struct LabelForm {
    name: Option<String>,
    description: Option<String>,
}

async fn labels_page(
    state: &AppState,
    chrome: Chrome,
    query: ListQuery,
    form: &LabelForm,
    problems: &[tandem_store::FieldError],
) -> Response {
    let text = given(query.query).unwrap_or_default();
    let offset = offset_of(query.offset.as_deref());
    let request = PageRequest {
        query: Some(text.clone()),
        limit: Some(DIRECTORY_PAGE_SIZE),
        offset: Some(offset),
    };
    let page = match state
        .db
        .read(move |conn| labels::list(conn, &request))
        .await
    {
        Ok(page) => page,
        Err(error) => return unreadable(chrome, error, "/labels"),
    };
    let base = format!("/labels{}", query_string(&[("query", &text)]));
    let pager = Pager::new(
        &base,
        offset,
        page.results.len(),
        page.total_count,
        DIRECTORY_PAGE_SIZE,
    );
    let now = time::OffsetDateTime::now_utc();
    let mut fields = vec![
        Field::text("name", "Name", form.name.clone().unwrap_or_default()).required(),
        Field::text(
            "description",
            "Description",
            form.description.clone().unwrap_or_default(),
        )
        .hint("Optional: which devices carry it and why."),
    ];
    let unplaced = place_problems(&mut fields, problems);
    let status = super::view::status_of(problems);
    render_with(
        status,
        &LabelsPage {
            chrome,
            query: text,
            labels: page
                .results
                .into_iter()
                .map(|label| LabelRow {
                    created: Moment::stored(&label.created_at, now),
                    label,
                })
                .collect(),
            pager,
            fields,
            unplaced,
        },
    )
}

async fn list_labels(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Query(query): Query<ListQuery>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/labels", "Labels");
    labels_page(&state, chrome, query, &LabelForm::default(), &[]).await
}

async fn add_label(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(form): ConsoleForm<LabelForm>,
) -> Response {
    let input = LabelInput {
        name: form.name.clone(),
        description: given(form.description.clone()),
    };
    let actor = session.user().to_owned();
    match state
        .db
        .write(move |conn| labels::create(conn, &actor, &input))
        .await
    {
        Ok(label) => session.redirect(
            &state,
            "/labels",
            Flash::success(format!("Label {} added.", label.name)),
        ),
        Err(error @ StoreError::Invalid(_)) => {
            let chrome = Chrome::new(&state, &ha, &session, "/labels", "Labels");
            let problems = field_problems(&error).to_vec();
            labels_page(&state, chrome, ListQuery::default(), &form, &problems).await
        }
        Err(error) => session.redirect(
            &state,
            "/labels",
            Flash::error(format!("The label was not added: {}", refusal(error))),
        ),
    }
}

async fn remove_label(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Path(id): Path<i64>,
    ConsoleForm(confirmed): ConsoleForm<Confirmed>,
) -> Response {
    if !confirmed.yes() {
        let Ok(label) = state.db.read(move |conn| labels::get(conn, id)).await else {
            return session.redirect(&state, "/labels", Flash::error("No such label."));
        };
        return Confirm {
            chrome: Chrome::new(&state, &ha, &session, "/labels", "Remove Label"),
            question: format!("Remove label {}?", label.name),
            consequences: vec![
                "Every device loses the label, and with it the policies and apps given through \
                 it."
                .into(),
            ],
            action: format!("/labels/{id}/remove"),
            fields: Vec::new(),
            button: format!("Remove {}", label.name),
            cancel: "/labels".into(),
        }
        .page();
    }
    let actor = session.user().to_owned();
    let removed = state
        .db
        .write(move |conn| {
            let label = labels::get(conn, id)?;
            labels::delete(conn, &actor, id)?;
            Ok(label.name)
        })
        .await;
    let flash = match removed {
        Ok(name) => Flash::success(format!("Label {name} removed.")),
        Err(error) => Flash::error(format!("The label was not removed: {}", refusal(error))),
    };
    session.redirect(&state, "/labels", flash)
}
