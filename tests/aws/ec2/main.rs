//! kestrel-aws against a real EC2 API: moto_server behind the fault layer, one server per test.
mod config;
mod discovery;
mod faults;
mod fixture;
mod iam;
mod instance_profiles;
mod instance_types;
mod launch;
mod listing;
