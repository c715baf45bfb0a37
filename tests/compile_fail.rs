//! Compile errors that teach: each file in tests/ui is a mistake users make,
//! and its .stderr the message they get. Regenerate after an intended change
//! with `TRYBUILD=overwrite cargo test --test compile_fail`, and read the diff.

#[test]
fn mistakes_give_messages_that_say_what_to_do() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
