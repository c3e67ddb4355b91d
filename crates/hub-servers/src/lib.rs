//! `hub-servers`: users' single-user servers and their Kerberos tickets.
//!
//! - [`spawner`]: the [`spawner::Spawner`] trait and the local spawner (a process under the
//!   user's UID), with [`limits`] (cgroups or rlimits).
//! - [`servers`]: each user's server from "starting" to "stopped": readiness, exits,
//!   re-adoption after a hub restart, the culler, server logs.
//! - [`renewer`]: the ticket renewer (kinit into each user's credential cache), reading
//!   ticket times with [`ccache`].

pub mod ccache;
pub mod environment;
pub mod limits;
pub mod renewer;
pub mod servers;
pub mod spawner;
