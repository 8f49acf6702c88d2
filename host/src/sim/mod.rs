//! TODO(owner): module sim
