//! TODO(owner): module scheduling
