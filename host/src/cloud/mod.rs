//! TODO(owner): module cloud
