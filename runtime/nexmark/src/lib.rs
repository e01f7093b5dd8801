//! The Nexmark benchmark model.
