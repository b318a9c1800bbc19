//! Fault points for the tests of the gateway's supervision: in debug builds only, a task
//! that passes the point named in the environment variable `CALLVERIFY_FAULT` panics there,
//! as a bug would, so that a test can see the process go unready and exit. Release builds
//! have no fault points: [`point`] does nothing.

/// Panics when `CALLVERIFY_FAULT` names `name` (debug builds only).
#[cfg(debug_assertions)]
pub fn point(name: &str) {
    assert!(
        !std::env::var("CALLVERIFY_FAULT").is_ok_and(|v| v == name),
        "fault injected at {name} (CALLVERIFY_FAULT)"
    );
}

/// Does nothing: release builds have no fault points.
#[cfg(not(debug_assertions))]
pub fn point(_name: &str) {}
