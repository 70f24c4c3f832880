//! Integration tests of Lemal; the tests live under `tests/`.
