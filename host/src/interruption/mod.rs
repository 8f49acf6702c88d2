//! TODO(owner): module interruption
