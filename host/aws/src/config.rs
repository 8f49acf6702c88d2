//! The SDK configuration, loaded exactly as any AWS tool loads it.

use aws_config::BehaviorVersion;

/// Credentials, region, retry settings and endpoint from the standard chain: environment variables,
/// the shared profile, IRSA web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`) in a pod,
/// IMDS on an instance; `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_EC2`) points it at another endpoint.
/// There is no other path: the tests against moto set the same variables.
pub async fn load() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
