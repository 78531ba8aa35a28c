//! The client tests.
