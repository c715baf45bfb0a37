//! Compile errors that teach: each file in cases/ is a mistake users make,
//! and its .stderr the message they get. Regenerate after an intended change
//! with `TRYBUILD=overwrite cargo test -p procactor-ui-tests`, and read the diff.

#[test]
fn mistakes_give_messages_that_say_what_to_do() {
    let t = trybuild::TestCases::new();
    t.compile_fail("cases/*.rs");
}
