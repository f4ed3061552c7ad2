//! The one error type every backend returns.
//!
//! Callers branch on the variant (a duplicate name is a 400 for the admin API, a missing row a
//! 404, anything else a 500); the message carries the thing that went wrong and, where there is
//! one, what to do about it. Backend error types never leak past this module's users.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; the message names the thing, e.g.
    /// `group name 'x' already exists`.
    #[error("{0}")]
    Duplicate(String),
    /// The row to change does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// The DSN asks for something this build cannot do yet (MySQL, PostgreSQL).
    #[error("{0}")]
    Unsupported(String),
    /// Anything else the database reported, with the operation that failed.
    #[error("{0}")]
    Db(String),
}

/// The result of every store operation.
pub type StoreResult<T> = Result<T, StoreError>;
