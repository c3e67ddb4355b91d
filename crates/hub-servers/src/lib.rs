//! `hub-servers`: users' single-user servers and their Kerberos tickets.
//!
//! - [`spawner`]: the [`spawner::Spawner`] trait and the local spawner (a process under the
//!   user's UID), with [`limits`] (cgroups or rlimits).
//! - [`servers`]: each user's server from "starting" to "stopped": readiness, exits,
//!   re-adoption after a hub restart, the culler, server logs.
//! - [`environment`]: the environment and limits a user's server and runs share.
//! - [`identity`]: the privilege drop of the hub's short helper commands run as a user.
//! - [`runs`]: notebook runs started as the owner (the runner process, its ticket, its log).
//! - [`renewer`]: the ticket renewer (kinit into each user's credential cache), reading
//!   ticket times with [`ccache`].

pub mod ccache;
pub mod environment;
pub mod identity;
pub mod limits;
pub mod renewer;
pub mod runs;
pub mod servers;
pub mod spawner;
