//! Nothing here: the tests are tests/compile_fail.rs and the cases in cases/.
