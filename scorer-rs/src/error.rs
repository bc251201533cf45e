use std::fmt;

use crate::constraints::Constraint;

/// Characters of a caller's text that an error message shows.
pub const SHOWN_CHARS: usize = 64;

/// A caller's text as an error shows it: quoted, and cut after `SHOWN_CHARS` characters.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// Everything the scorer can refuse, each with a message fit for the caller.
#[derive(Clone, Debug, PartialEq)]
pub enum ScoreError {
    /// The catalogue handed to the scorer is malformed.
    InvalidCatalogue(String),
    /// The request (weights, profile or constraints) is malformed.
    InvalidRequest(String),
    /// The constraints removed every model; each entry is a constraint and how many it removed.
    NoEligibleModel(Vec<(Constraint, usize)>),
}

impl fmt::Display for ScoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScoreError::InvalidCatalogue(msg) => write!(f, "invalid catalogue: {msg}"),
            ScoreError::InvalidRequest(msg) => write!(f, "{msg}"),
            ScoreError::NoEligibleModel(removed) => {
                write!(f, "no model satisfies the request; removed by ")?;
                let parts: Vec<String> = removed
                    .iter()
                    .map(|(c, n)| format!("{}: {n}", c.name()))
                    .collect();
                if parts.is_empty() {
                    write!(f, "nothing (the catalogue is empty)")
                } else {
                    write!(f, "{}", parts.join(", "))
                }
            }
        }
    }
}

impl std::error::Error for ScoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_text_is_quoted_and_bounded() {
        assert_eq!(shown("a/b"), "\"a/b\"");
        let long = "é".repeat(10_000);
        assert_eq!(shown(&long), format!("{:?}…", "é".repeat(SHOWN_CHARS)));
    }
}
