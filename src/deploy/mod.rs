//! Deploying from source, its build foundations: what to build (`detect`: the source's own
//! Dockerfile, or one generated for its language), which files go (`ignore`: `.dockerignore`),
//! and the build context itself (`context`: a bounded tar of the directory). The Engine's build
//! call is `docker_cli::build`. docs/deploy.md tells the user's side; `client deploy` and the
//! worker's and manager's parts come later and use these.
//!
//! This folder owns no I/O but reading the source directory and writing its tar.

pub mod context;
pub mod detect;
pub mod git;
pub mod ignore;
pub mod unpack;

pub use context::{Context, ContextError, ContextOptions, Source};
pub use detect::{detect, BuildConfig, DetectError, Language, Listing, Plan};
pub use ignore::{Ignore, IgnoreError};
