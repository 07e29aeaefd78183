//! The fault campaign of `cargo xtask chaos`: real masters, client processes taking locks and
//! writing to a fenced register, seeded faults, and a checker of what happened.
//!
//! # Layout
//!
//! - [`history`]: what is recorded: sections, register attempts, faults.
//! - [`checker`]: the checks, pure functions of the history, unit-tested with histories made
//!   by hand that must fail.
//! - [`svg`]: the timeline picture.
//! - [`register`]: the fenced register, a script on a server of its own.
//! - The binary (`src/main.rs`, `src/campaign.rs`, `src/client.rs`): the coordinator, which
//!   starts masters and clients and injects the faults, and the clients.

pub mod checker;
pub mod history;
pub mod register;
pub mod svg;
