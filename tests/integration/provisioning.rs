//! Integration tests: provisioning (owner: provisioning)
