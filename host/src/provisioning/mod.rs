//! TODO(owner): module provisioning
