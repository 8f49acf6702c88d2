//! Integration tests: simulate (owner: simulate)
