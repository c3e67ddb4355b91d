//! `hub-jobs`: notebooks run headless as their owner, on a schedule or on demand.
//!
//! - [`definition`]: a job's definition as users write it, checked field by field, and its
//!   schedule (cron expression and IANA time zone, by the `croner` and `chrono-tz` crates).
//! - [`scheduler`]: due occurrences become runs, queued runs start within the limits, runs
//!   are watched, retried, pruned and re-adopted after a hub restart.
//!
//! A run itself is [`hub_servers::runs`]' business (the runner process as the owner) and the
//! runner's ([`hub_runner`]).

pub mod definition;
pub mod scheduler;

pub use definition::{FieldError, JobDefinition};
pub use scheduler::{JobError, Jobs};
