//! TODO(owner): module api
