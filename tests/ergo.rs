//! The runtime's ergonomics on real process trees (tests/fixtures/ergo.rs):
//! errors that read well under anyhow, `?` on any std error, children that
//! get the root's arguments, process names, actor name checks; and `run`
//! refusing to start inside another tokio runtime.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(60);

fn scenario(name: &str) -> common::Finished {
    let out =
        Tree::start("ergo_scenarios", &["--scenario", name], &[("RUST_LIB_BACKTRACE", "0")]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out
}

/// The lines between `NAME BEGIN` and `NAME END`.
fn block<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let begin = format!("{name} BEGIN");
    let end = format!("{name} END");
    out.lines().skip_while(|l| *l != begin).skip(1).take_while(|l| *l != end).collect()
}

/// Panics if a non-empty line appears twice, once trimmed.
fn assert_no_repeats(lines: &[&str], what: &str) {
    let mut seen = HashSet::new();
    for l in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        assert!(seen.insert(l), "{what} repeats {l:?}:\n{}", lines.join("\n"));
    }
}

#[test]
fn a_remote_failure_reads_once_under_anyhow_and_plain_display() {
    let out = scenario("anyhow");
    for name in ["PLAIN", "ALTERNATE", "DEBUG"] {
        let lines = block(&out.stdout, name);
        let text = lines.join("\n");
        assert!(text.contains("reading record 7") && text.contains("disk on fire"), "{name}: {out:?}");
        assert!(text.contains("records#"), "{name} names the actor: {out:?}");
        assert_no_repeats(&lines, name);
    }
    // anyhow's `{:#}` puts the chain on one line: one "disk on fire" in all.
    assert_eq!(block(&out.stdout, "ALTERNATE").join("\n").matches("disk on fire").count(), 1, "{out:?}");
    assert!(block(&out.stdout, "DEBUG").join("\n").contains("asking for record 7"), "{out:?}");
}

#[test]
fn question_mark_converts_any_std_error_in_a_remote_function() {
    let out = scenario("question_mark");
    assert!(out.stdout.contains("ERROR x: remote error: actor `parser#"), "{out:?}");
    assert!(
        out.stdout.contains("invalid digit found in string [core::num::error::ParseIntError]"),
        "{out:?}"
    );
    assert!(out.stdout.contains("the cellar door is locked [ergo_scenarios::DoorLocked]"), "{out:?}");
    assert!(out.stdout.contains("caused by: no key on the ring"), "{out:?}");
}

#[test]
fn children_get_the_roots_arguments_so_clap_parses_in_every_actor() {
    let out = scenario("clap_child");
    assert!(out.stdout.contains(r#"CHILD is_child=true args=["--scenario", "clap_child"]"#), "{out:?}");
    assert!(out.stdout.contains("ROOT is_child=false"), "{out:?}");
}

#[test]
fn each_actor_process_is_named_after_its_actor() {
    let out = scenario("comm");
    let has = |line: &str| out.stdout.lines().any(|l| l == line);
    assert!(has("COMM worker actor:worker"), "{out:?}");
    // The kernel keeps 15 bytes.
    assert!(has("COMM a_very_long_actor_name actor:a_very_lo"), "{out:?}");
}

#[test]
fn bad_actor_names_are_refused_with_a_typed_error() {
    let out = scenario("names");
    assert_eq!(out.stdout.matches("INVALID ").count(), 5, "{out:?}");
    assert!(!out.stdout.contains("UNEXPECTED"), "{out:?}");
    assert!(out.stdout.contains(r#"INVALID "a#b": it contains `#`"#), "{out:?}");
    assert!(out.stdout.contains("VALID pid"), "{out:?}");
}

#[test]
fn run_inside_a_tokio_runtime_is_a_config_error_not_a_panic() {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let r = rt.block_on(async { actor::run(async { Ok(()) }) });
    match r {
        Err(actor::Error::Config(m)) => assert!(m.contains("#[tokio::main]"), "{m}"),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}
