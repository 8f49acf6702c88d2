//! Integration tests: policy (owner: policy)
