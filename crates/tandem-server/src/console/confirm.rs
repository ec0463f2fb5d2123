//! Destructive console actions are confirmed twice over: the browser's dialog (`console.js`
//! sets the form's hidden `confirmed` field to `yes`), or, when no script ran, a confirmation
//! page of the server's that posts the same form with `confirmed=yes`. A post without it never
//! acts.

use super::{Chrome, render};
use askama::Template;
use axum::response::Response;
use serde::Deserialize;

/// The `confirmed` field of a destructive form.
#[derive(Debug, Default, Deserialize)]
pub struct Confirmed {
    #[serde(default)]
    confirmed: String,
}

impl Confirmed {
    pub fn yes(&self) -> bool {
        self.confirmed == "yes"
    }
}

/// The confirmation page of a destructive form posted without the dialog's answer.
#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct Confirm {
    pub chrome: Chrome,
    /// The question, as the heading: "Remove label Sales?".
    pub question: String,
    /// What happens then, a paragraph each.
    pub consequences: Vec<String>,
    /// Where the form posts.
    pub action: String,
    /// The form's other fields, posted again as they were.
    pub fields: Vec<(&'static str, String)>,
    /// The button's words: "Remove Sales".
    pub button: String,
    /// Where Cancel goes.
    pub cancel: String,
}

impl Confirm {
    pub fn page(self) -> Response {
        render(&self)
    }
}
