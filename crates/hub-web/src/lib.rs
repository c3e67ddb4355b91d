//! `hub-web`: the hub's HTTP surface.
//!
//! Shared modules, which every feature module may use:
//! [`state`] (the application state and the signed-in page user), [`collectors`] (its Prometheus collectors), [`caller`] (the API's authenticated caller and its
//! extractor), [`guard`] (the one Origin + XSRF check and form check), [`error`] (the one error policy and
//! JSON error body), [`progress`] (the spawn progress stream), [`html`] (page frame, error
//! page, escaping).
//!
//! Feature modules, which use only the shared ones, never each other:
//! [`web`] (the hub's pages: login, home, spawn, logout, admin), [`jobs_page`] (the Jobs
//! page), [`api`] (the REST API),
//! [`proxy`] (`/user/<name>/...` to the user's server), [`metrics`] (`/hub/metrics`).
//! [`router()`] (`router.rs`) names them all.

pub mod caller;
pub mod collectors;
pub mod error;
pub mod guard;
pub mod html;
pub mod progress;
pub mod state;
pub mod token_cache;
pub mod user_tokens;

pub mod api;
pub mod jobs_page;
pub mod metrics;
pub mod proxy;
pub mod token_page;
pub mod web;

mod router;
pub use router::router;
