//! The opt-in low-latency mode on real process trees: calls are served with
//! it on, every actor of the tree inherits it (set by the environment or in
//! code), and a bad setting is refused at start with a message naming it.
//! How much it saves is measured by `cargo bench --bench runtime -- low_latency`.

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(60);

/// Squares 0..2000 through a spinning actor: the sum the scenario prints.
const SUM: u64 = 2_664_667_000;

/// Runs the scenario with `env`; checks its calls were answered and that the
/// child and grandchild both run with `spin` microseconds.
fn served_and_inherited(env: (&str, &str), spin: &str) {
    let out = Tree::start("scenarios", &["low_latency"], &[env]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains(&format!("SUM {SUM}")), "{out:?}");
    assert!(
        out.stdout.contains(&format!(r#"CHILD SPIN Some("{spin}") GRANDCHILD SPIN Some("{spin}")"#)),
        "{out:?}"
    );
    out.assert_no_warnings();
}

#[test]
fn calls_are_served_and_every_actor_inherits_the_mode_from_the_environment() {
    served_and_inherited(("ACTOR_LOW_LATENCY_US", "40"), "40");
}

#[test]
fn the_mode_set_in_code_reaches_every_actor() {
    served_and_inherited(("FIXTURE_SPIN_US", "25"), "25");
}

#[test]
fn a_bad_setting_is_refused_at_start_naming_it() {
    for (value, says) in [("fast", "must be a whole number of microseconds"), ("5000", "at most 1000 us")] {
        let out =
            Tree::start("scenarios", &["low_latency"], &[("ACTOR_LOW_LATENCY_US", value)]).finish(BOUND);
        assert!(!out.status.success(), "{value}: {out:?}");
        assert!(out.stderr.contains(says), "{value}: {out:?}");
        assert!(!out.stdout.contains("SUM"), "{value}: {out:?}");
    }
    let out = Tree::start("scenarios", &["low_latency"], &[("FIXTURE_SPIN_US", "1001")]).finish(BOUND);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("at most 1000 us"), "{out:?}");
}
