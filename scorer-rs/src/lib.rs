//! The model router's scorer: holds the catalogue and ranks its models for each request.

pub mod catalogue;
pub mod constraints;
pub mod engine;
pub mod error;
pub mod live;
pub mod scoring;

#[cfg(feature = "python")]
mod bindings;

pub use catalogue::{Catalogue, ModelSpec};
pub use constraints::{Constraint, Constraints, FreeFilter};
pub use engine::{Engine, State};
pub use error::ScoreError;
pub use live::LiveStats;
pub use scoring::{rank, Candidate, Mode, Profile, Ranking, Weights};
