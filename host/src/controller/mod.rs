//! TODO(owner): module controller
