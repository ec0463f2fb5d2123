//! What can go wrong in a demo, split by who must act: the user's command line (exit 2) or the
//! run itself (exit 1).

/// A demo that could not be carried out, or whose checks failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The command line asked for something impossible (e.g. `--dir` not empty): the message
    /// names the option, the value and the fix.
    #[error("{0}")]
    Usage(String),
    /// A step failed, or the checks found a lost write: the message says which and why.
    #[error("{0}")]
    Failed(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DemoError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

pub type DemoResult<T> = Result<T, DemoError>;
