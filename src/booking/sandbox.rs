//! The built-in salon used by `zapis demo` and the tests.
