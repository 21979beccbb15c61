//! Crash points: places where a fault test can have the node killed, as by
//! `kill -9`, at an exact step of its work. Compiled in only with the
//! `crash-points` feature (the test binary's); elsewhere [`point`] is
//! nothing. A point is armed with the environment variable `FAILPOINTS`,
//! e.g. `FAILPOINTS=put::before_commit=return` (the `fail` crate's syntax:
//! `return` kills, and its other actions such as `sleep(500)` work too).

/// Arms the crash points named in `FAILPOINTS`, for the life of the process.
#[cfg(feature = "crash-points")]
pub fn arm_from_env() {
    std::mem::forget(fail::FailScenario::setup());
}

/// Does nothing: crash points are compiled out.
#[cfg(not(feature = "crash-points"))]
pub fn arm_from_env() {}

/// Kills this process with SIGKILL here when point `name` is armed.
#[cfg(feature = "crash-points")]
pub fn point(name: &str) {
    if fail::eval(name, |_| ()).is_some() {
        tracing::error!(point = name, "crash point reached: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Does nothing: crash points are compiled out.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Whether fault `name` is armed: the caller then injects it (a lost
/// answer, say) instead of killing the process.
#[cfg(feature = "crash-points")]
pub fn armed(name: &str) -> bool {
    let armed = fail::eval(name, |_| ()).is_some();
    if armed {
        tracing::warn!(point = name, "fault point reached: injecting its fault");
    }
    armed
}

/// Never: fault points are compiled out.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn armed(_name: &str) -> bool {
    false
}
