//! `cargo xtask bench`: runs the criterion benches and prints one table of ratios.
use crate::Result;
pub(crate) fn run(_args: &[String]) -> Result {
    Err("bench: not yet".into())
}
