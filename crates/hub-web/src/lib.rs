//! `hub-web`: the hub's HTTP surface.
pub mod api;
pub mod metrics;
pub mod proxy;
pub mod web;
