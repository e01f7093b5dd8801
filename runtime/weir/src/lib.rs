//! Weir runtime.
