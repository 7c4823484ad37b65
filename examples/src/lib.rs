//! Examples only; see the `[[example]]` entries.

#![forbid(unsafe_code)]
