//! TODO(owner): module cluster
