//! What an EC2 failure means to the controller: throttled (nothing happened, try later) or any other
//! API error (the call may or may not have taken effect).

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use kestrel_core::cloud::CloudError;

/// EC2's rate-limit codes. The SDK's standard retry strategy has already retried these with jittered
/// exponential backoff (bounded by its `max_attempts`, 3 unless `AWS_MAX_ATTEMPTS` or the profile
/// says otherwise) by the time the adapter sees one.
const THROTTLING_CODES: &[&str] = &["RequestLimitExceeded", "Throttling", "ThrottlingException"];

/// The EC2 error code of a failed call, when the service answered with one.
pub fn error_code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Maps a failed call to the cloud edge's error, naming the operation and keeping the SDK's context.
pub fn cloud_error<E, R>(operation: &str, error: &SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = format!("{operation}: {}", DisplayErrorContext(error));
    match error_code(error) {
        Some(code) if THROTTLING_CODES.contains(&code) => CloudError::Throttled(detail),
        _ => CloudError::Api(detail),
    }
}
