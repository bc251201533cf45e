//! The model router's scorer: holds the catalogue and ranks its models for each request.

pub mod catalogue;
pub mod constraints;
pub mod error;
pub mod scoring;

#[cfg(feature = "python")]
mod bindings;

pub use catalogue::{Catalogue, ModelSpec};
pub use constraints::{Constraint, Constraints, FreeFilter};
pub use error::ScoreError;
pub use scoring::{rank, Candidate, Mode, Profile, Ranking, Weights};
