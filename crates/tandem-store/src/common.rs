//! Helpers shared by the model modules: timestamps, validation, text enums and paging.

use crate::error::{InvalidInput, StoreError, StoreResult};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// Timestamps are stored as UTC RFC 3339 text with milliseconds: sortable as text, readable in a
/// `sqlite3` shell at 3 a.m., and exact enough to order events.
const TIMESTAMP_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP_FORMAT)
        // Formatting a valid UTC date with a fixed description cannot fail for years 0..=9999.
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

pub fn parse_timestamp(text: &str) -> StoreResult<OffsetDateTime> {
    time::PrimitiveDateTime::parse(text, TIMESTAMP_FORMAT)
        .map(|at| at.assume_utc())
        .map_err(|error| StoreError::Corrupt(format!("bad stored timestamp {text:?}: {error}")))
}

/// Collects every problem with an input before anything is written.
#[derive(Default)]
pub struct Check {
    invalid: InvalidInput,
}

impl Check {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&mut self, field: &str, value: &str, problem: impl Into<String>) {
        self.invalid.push(field, value, problem);
    }

    /// Non-blank printable text of at most `chars_max` characters.
    pub fn text(&mut self, field: &str, value: &str, chars_max: usize) {
        if value.trim().is_empty() {
            self.fail(field, value, "must not be empty");
        } else if value.chars().count() > chars_max {
            self.fail(
                field,
                value,
                format!("must be at most {chars_max} characters"),
            );
        } else if value.chars().any(char::is_control) {
            self.fail(field, value, "must not contain control characters");
        } else if value.trim() != value {
            self.fail(field, value, "must not start or end with white space");
        }
    }

    pub fn optional_text(&mut self, field: &str, value: Option<&str>, chars_max: usize) {
        if let Some(value) = value {
            self.text(field, value, chars_max);
        }
    }

    /// Text made only of characters `allowed` accepts; `describe` names them for the message.
    pub fn token(
        &mut self,
        field: &str,
        value: &str,
        chars_max: usize,
        allowed: fn(char) -> bool,
        describe: &str,
    ) {
        let before = self.invalid.fields.len();
        self.text(field, value, chars_max);
        if self.invalid.fields.len() == before && !value.chars().all(allowed) {
            self.fail(field, value, format!("may contain only {describe}"));
        }
    }

    pub fn email(&mut self, field: &str, value: &str) {
        const EMAIL_CHARS_MAX: usize = 254; // RFC 5321's limit on a forward path
        let before = self.invalid.fields.len();
        self.text(field, value, EMAIL_CHARS_MAX);
        let well_formed = value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        }) && !value.contains(char::is_whitespace);
        if self.invalid.fields.len() == before && !well_formed {
            self.fail(
                field,
                value,
                "must be an e-mail address like name@example.com",
            );
        }
    }

    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min || value > max {
            self.fail(
                field,
                &value.to_string(),
                format!("must be between {min} and {max}"),
            );
        }
    }

    pub fn finish(self) -> StoreResult<()> {
        self.invalid.into_result()
    }
}

/// Characters of identifiers such as serial numbers and user principals.
pub fn is_identifier_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '@' | ':')
}

/// A page of results in the EPMM V2 list shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub total_count: i64,
    pub result_count: usize,
    pub has_more: bool,
    pub results: Vec<T>,
}

impl<T> Page<T> {
    pub fn new(total_count: i64, offset: i64, results: Vec<T>) -> Self {
        Self {
            total_count,
            result_count: results.len(),
            has_more: offset + (results.len() as i64) < total_count,
            results,
        }
    }
}

/// Most results one list call returns, so one request cannot make the node serialise a whole
/// 100,000-device fleet.
pub const PAGE_LIMIT_MAX: i64 = 200;
pub const PAGE_LIMIT_DEFAULT: i64 = 50;

/// Paging parameters as the API receives them.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub query: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl PageRequest {
    /// Validated `(pattern, limit, offset)`; the pattern is a `LIKE` pattern matching the query
    /// anywhere, with `%` and `_` escaped so they match themselves.
    pub fn validated(&self) -> StoreResult<(String, i64, i64)> {
        let mut check = Check::new();
        let limit = self.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        check.range("limit", limit, 1, PAGE_LIMIT_MAX);
        let offset = self.offset.unwrap_or(0);
        check.range("offset", offset, 0, i64::MAX);
        let query = self.query.as_deref().unwrap_or("");
        if query.chars().count() > 200 {
            check.fail("query", query, "must be at most 200 characters");
        }
        check.finish()?;
        let escaped = query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        Ok((format!("%{escaped}%"), limit, offset))
    }
}

/// Declares an enum stored and sent as fixed text, with SQL conversions and a parse error that
/// lists the accepted values.
#[macro_export]
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, for error messages.
            pub fn expected() -> String {
                let names: Vec<&str> = vec![$($text),+];
                names.join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {text:?}", stringify!($name)).into(),
                    )
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_sort_as_text() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let text = timestamp(at);
        assert_eq!(text, "2027-01-15T08:00:00.000Z");
        assert_eq!(parse_timestamp(&text).unwrap(), at);
        assert!(timestamp(at + time::Duration::milliseconds(5)) > text);
    }

    #[test]
    fn check_reports_every_problem() {
        let mut check = Check::new();
        check.text("serial", "", 10);
        check.email("email", "nobody");
        check.range("limit", 500, 1, 200);
        check.token("principal", "a b", 20, is_identifier_char, "letters");
        let error = check.finish().unwrap_err().to_string();
        for expected in [
            "serial: must not be empty",
            "email: must be an e-mail address",
            "limit: must be between 1 and 200",
            "principal: may contain only letters",
        ] {
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn paging_escapes_like_wildcards_and_bounds_the_limit() {
        let request = PageRequest {
            query: Some("50%_off".into()),
            limit: Some(10),
            offset: None,
        };
        assert_eq!(
            request.validated().unwrap(),
            ("%50\\%\\_off%".to_string(), 10, 0)
        );
        let too_many = PageRequest {
            limit: Some(201),
            ..PageRequest::default()
        };
        assert!(too_many.validated().is_err());
        let page = Page::new(5, 2, vec![1, 2]);
        assert!(page.has_more);
        assert_eq!(page.result_count, 2);
    }
}
