//! Shared helpers for Weir end-to-end tests.
