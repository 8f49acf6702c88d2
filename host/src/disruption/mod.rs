//! TODO(owner): module disruption
