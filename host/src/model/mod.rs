//! TODO(owner): module model
