//! Builds the clock shim (`shim/clock.c`) into a shared library for LD_PRELOAD and passes its
//! path to the crate as `REDLOCK_CLOCK_SHIM`. The `cc` crate finds the C compiler; it builds
//! static archives only, so the link step to a `.so` is made here.

use std::env;
use std::path::PathBuf;

fn main() {
    let source = "shim/clock.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let lib = out.join("libredlock_clock.so");
    let compiler = cc::Build::new().get_compiler();
    let status = compiler
        .to_command()
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&lib)
        .arg(source)
        .status()
        .expect("the C compiler found by the cc crate should run");
    assert!(status.success(), "building the clock shim failed: {status}");
    println!("cargo:rustc-env=REDLOCK_CLOCK_SHIM={}", lib.display());
}
