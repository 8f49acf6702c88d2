//! Integration tests: disruption (owner: disruption)
