//! The fault campaign of `cargo xtask chaos`: real masters, client processes taking locks and
//! writing to a fenced register, seeded faults, and a checker of what happened.
//!
//! # Layout
//!
//! - [`history`]: what is recorded: sections, register attempts, faults, and the clients'
//!   state files (the section running now).
//! - [`checker`]: the checks, pure functions of the history, unit-tested with histories made
//!   by hand that must fail.
//! - [`svg`]: the timeline picture.
//! - [`register`]: the fenced register, a script on a server of its own.
//! - The binary: `campaign.rs`, the coordinator (start masters and clients, drive the faults,
//!   stop, check); `world.rs`, what the faults act on and how each ends; `schedule.rs`, the
//!   fault kinds, which comes next and how each is injected; `report.rs`, the table;
//!   `client.rs`, the client processes.

pub mod checker;
pub mod history;
pub mod register;
pub mod svg;
