//! Integration tests: api (owner: api)
