//! `/apps`: the app catalogue, and Add App with its file uploaded from the browser
//! (`multipart/form-data`). The file goes into the file store under the API's size limit and
//! is attached in the same write that creates the app, so a refused app leaves no half entry.

use super::view::{
    Choice, Field, Moment, Pager, field_problems, message_page, offset_of, place_problems, refusal,
};
use crate::api::APP_FILE_BYTES_MAX;
use crate::console::form::CSRF_FIELD;
use crate::console::form::FormRejection;
use crate::console::session::{Flash, tokens_equal};
use crate::console::{Chrome, ConsoleSession, render_with};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::multipart::Field as Part;
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use tandem_store::apps::{self, App, AppInput, AppSource};
use tandem_store::devices::Platform;
use tandem_store::{FieldError, InvalidInput, PageRequest, StoreError};

/// Apps per page: a screenful, well under the store's page bound.
const APPS_PAGE_SIZE: i64 = 50;
/// Largest text field of the Add App form (names, versions): far above what the store
/// accepts, so the store's own check names the problem, yet bounded in memory.
const TEXT_PART_BYTES_MAX: usize = 4 * 1024;
/// The whole upload: the API's app file limit plus room for the form's other fields.
const UPLOAD_BYTES_MAX: usize = APP_FILE_BYTES_MAX as usize + 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/apps",
        get(list)
            .post(add)
            .layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX)),
    )
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    offset: Option<String>,
}

#[derive(Template)]
#[template(path = "console/admin_apps.html")]
struct AppsPage {
    chrome: Chrome,
    apps: Vec<AppRow>,
    pager: Pager,
    fields: Vec<Field>,
    unplaced: Vec<String>,
    file_limit: String,
}

struct AppRow {
    app: App,
    size: String,
    added: Moment,
}

/// Bytes in words: `3.2 MB`.
fn size_words(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn app_fields(input: &AppInput) -> Vec<Field> {
    let platforms = Platform::ALL
        .iter()
        .map(|p| Choice::new(p.as_str(), p.as_str()))
        .collect();
    let sources = vec![
        Choice::new(AppSource::InHouse.as_str(), "In-house"),
        Choice::new(AppSource::Public.as_str(), "Public"),
    ];
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    vec![
        Field::select(
            "platform",
            "Platform",
            input.platform.map(|p| p.as_str()).unwrap_or_default(),
            platforms,
        )
        .required(),
        Field::text("name", "Name", text(&input.name)).required(),
        Field::text("bundleId", "Bundle ID", text(&input.bundle_id))
            .required()
            .hint("Reverse-DNS, like com.example.app."),
        Field::text("version", "Version", text(&input.version)).required(),
        Field::select(
            "source",
            "Source",
            input.source.unwrap_or(AppSource::InHouse).as_str(),
            sources,
        ),
        Field::text("file", "App file", "")
            .kind("file")
            .required()
            .hint("The IPA, APK, MSI or PKG."),
    ]
}

async fn apps_page(
    state: &AppState,
    chrome: Chrome,
    offset: i64,
    input: &AppInput,
    problems: &[FieldError],
) -> Response {
    let request = PageRequest {
        limit: Some(APPS_PAGE_SIZE),
        offset: Some(offset),
        ..PageRequest::default()
    };
    let page = match state.db.read(move |conn| apps::list(conn, &request)).await {
        Ok(page) => page,
        Err(error) => {
            let flash = Flash::error(refusal(error));
            return message_page(StatusCode::SERVICE_UNAVAILABLE, chrome, flash, "/apps");
        }
    };
    let pager = Pager::new(
        "/apps",
        offset,
        page.results.len(),
        page.total_count,
        APPS_PAGE_SIZE,
    );
    let now = time::OffsetDateTime::now_utc();
    let apps = page
        .results
        .into_iter()
        .map(|app| AppRow {
            size: app
                .file
                .as_ref()
                .map(|file| size_words(file.size_bytes))
                .unwrap_or_default(),
            added: Moment::stored(&app.created_at, now),
            app,
        })
        .collect();
    let mut fields = app_fields(input);
    let unplaced = place_problems(&mut fields, problems);
    let status = super::view::status_of(problems);
    render_with(
        status,
        &AppsPage {
            chrome,
            apps,
            pager,
            fields,
            unplaced,
            file_limit: size_words(APP_FILE_BYTES_MAX as i64),
        },
    )
}

async fn list(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Query(query): Query<ListQuery>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/apps", "Apps");
    let offset = offset_of(query.offset.as_deref());
    apps_page(&state, chrome, offset, &AppInput::default(), &[]).await
}

/// Why an upload was not stored.
enum Refused {
    /// The form token is missing or wrong: nothing of the form was read past it.
    Token,
    /// Bad fields, shown next to them.
    Fields(InvalidInput),
    /// Anything else (an interrupted upload, a full disk), as a message.
    Other(String),
}

impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(invalid) => Refused::Fields(invalid),
            other => Refused::Other(refusal(other)),
        }
    }
}

/// `POST /apps`: Add App with its file. The form token must come first (the form puts it
/// there) and is checked before anything else is read.
async fn add(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    multipart: Multipart,
) -> Response {
    let mut input = AppInput::default();
    match receive(&state, &session, multipart, &mut input).await {
        Ok(app) => session.redirect(
            &state,
            "/apps",
            Flash::success(format!(
                "App {} {} added with its file ({}).",
                app.name,
                app.version,
                app.file
                    .map(|file| size_words(file.size_bytes))
                    .unwrap_or_default()
            )),
        ),
        Err(Refused::Token) => FormRejection::Token.into_response(),
        Err(Refused::Fields(invalid)) => {
            let chrome = Chrome::new(&state, &ha, &session, "/apps", "Apps");
            let problems = field_problems(&StoreError::Invalid(invalid)).to_vec();
            apps_page(&state, chrome, 0, &input, &problems).await
        }
        Err(Refused::Other(message)) => session.redirect(
            &state,
            "/apps",
            Flash::error(format!("The app was not added: {message}")),
        ),
    }
}

/// Reads the form into `input`, stores the file and creates the app with it.
async fn receive(
    state: &AppState,
    session: &ConsoleSession,
    mut multipart: Multipart,
    input: &mut AppInput,
) -> Result<App, Refused> {
    let interrupted = |error: axum::extract::multipart::MultipartError| {
        Refused::Other(format!("the upload was interrupted: {error}"))
    };
    let Some(first) = multipart.next_field().await.map_err(interrupted)? else {
        return Err(Refused::Token);
    };
    let token = match first.name() {
        Some(CSRF_FIELD) => text_of(first).await?,
        _ => return Err(Refused::Token),
    };
    if !tokens_equal(&token, &session.session.csrf) {
        return Err(Refused::Token);
    }
    while let Some(part) = multipart.next_field().await.map_err(interrupted)? {
        let name = part.name().unwrap_or_default().to_owned();
        if name == "file" {
            let stored = store_file(state, input, part).await?;
            let (actor, input) = (session.user().to_owned(), input.clone());
            return Ok(state
                .db
                .write(move |conn| {
                    let app = apps::create(conn, &actor, &input)?;
                    let size = stored.size_bytes as i64;
                    apps::attach_file(conn, &actor, app.id, &stored.sha256, size)
                })
                .await?);
        }
        let value = text_of(part).await?;
        set_field(input, &name, value)?;
    }
    apps::validate_input(input)?;
    Err(InvalidInput::single("file", "", "is required: choose the app file").into())
}

impl From<InvalidInput> for Refused {
    fn from(invalid: InvalidInput) -> Self {
        Refused::Fields(invalid)
    }
}

/// One text field of the form into `input`; a value the store cannot even parse (an unknown
/// platform) is refused by name.
fn set_field(input: &mut AppInput, name: &str, value: String) -> Result<(), Refused> {
    match name {
        "platform" => {
            input.platform = Some(Platform::parse(&value).ok_or_else(|| {
                InvalidInput::single(
                    "platform",
                    &value,
                    format!("must be one of {}", Platform::expected()),
                )
            })?)
        }
        "source" => {
            input.source = Some(AppSource::parse(&value).ok_or_else(|| {
                InvalidInput::single(
                    "source",
                    &value,
                    format!("must be one of {}", AppSource::expected()),
                )
            })?)
        }
        "name" => input.name = Some(value),
        "bundleId" => input.bundle_id = Some(value),
        "version" => input.version = Some(value),
        // A field this form does not have: ignored, as a browser never sends one.
        _ => {}
    }
    Ok(())
}

/// A text part, within [`TEXT_PART_BYTES_MAX`].
async fn text_of(mut part: Part<'_>) -> Result<String, Refused> {
    let name = part.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = part
        .chunk()
        .await
        .map_err(|error| Refused::Other(format!("the upload was interrupted: {error}")))?
    {
        if bytes.len() + chunk.len() > TEXT_PART_BYTES_MAX {
            return Err(InvalidInput::single(
                &name,
                "",
                format!("must be at most {TEXT_PART_BYTES_MAX} bytes"),
            )
            .into());
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| InvalidInput::single(&name, "", "must be UTF-8 text").into())
}

/// Checks the app's fields, then streams the file into the file store (as
/// `PUT /api/v2/apps/{id}/file` does, under the same limit).
async fn store_file(
    state: &AppState,
    input: &AppInput,
    mut part: Part<'_>,
) -> Result<tandem_store::files::StoredFile, Refused> {
    // Bad fields are refused before a large file is received.
    apps::validate_input(input)?;
    if part.file_name().is_none_or(str::is_empty) {
        return Err(InvalidInput::single("file", "", "is required: choose the app file").into());
    }
    let mut writer = state.files.begin(APP_FILE_BYTES_MAX).await?;
    while let Some(chunk) = part
        .chunk()
        .await
        .map_err(|error| Refused::Other(format!("the upload was interrupted: {error}")))?
    {
        writer.write(&chunk).await?;
    }
    let stored = writer.finish().await?;
    if stored.size_bytes == 0 {
        return Err(InvalidInput::single(
            "file",
            "",
            "must not be empty: choose the app file (an empty file was sent)",
        )
        .into());
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::size_words;

    #[test]
    fn sizes_read_in_words() {
        assert_eq!(size_words(512), "512 bytes");
        assert_eq!(size_words(3_200_000), "3.2 MB");
        assert_eq!(size_words(1_073_741_824), "1.1 GB");
    }
}
