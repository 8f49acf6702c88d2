//! Launch templates: one per distinct content (NodeClass, node pool, AMI, userData, block devices,
//! metadata options, security groups, instance profile), named by a hash of that content so that
//! every controller replica and every restart finds and reuses the same one, and collectable when no
//! NodeClass produces that content any more.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceMetadataProtocolIpv6, LaunchTemplateTagSpecificationRequest,
    LaunchTemplatesMonitoringRequest, RequestLaunchTemplateData, ResourceType, VolumeType,
};
use kestrel_core::api::ec2nodeclass::{
    self as nc, BlockDeviceMapping, EnabledDisabled, HttpTokens, MetadataOptions,
};
use kestrel_core::cloud::CloudError;
use sha2::{Digest, Sha256};

use super::error::{cloud_error, error_code};
use super::tags;

/// The name prefix of Kestrel's launch templates (the rest is the content hash).
pub const NAME_PREFIX: &str = "kestrel/";

/// Everything a launch template holds. Its hash is the template's name.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LaunchTemplateContent {
    pub cluster: String,
    pub node_class: String,
    pub node_pool: String,
    pub image_id: String,
    /// Base64, as EC2 takes it.
    pub user_data: Option<String>,
    pub security_group_ids: Vec<String>,
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    pub metadata_options: MetadataOptions,
    pub instance_profile: Option<String>,
    pub detailed_monitoring: bool,
    /// The tags of the template itself and of the network interfaces it creates.
    pub tags: BTreeMap<String, String>,
}

impl LaunchTemplateContent {
    /// `kestrel/<first 20 hex digits of the content's SHA-256>`.
    pub fn name(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("plain data serializes");
        let digest = hex::encode(Sha256::digest(&canonical));
        format!("{NAME_PREFIX}{}", &digest[..20])
    }
}

/// The id of the template for `content`, created if no template has its name yet.
pub async fn ensure(
    client: &Client,
    content: &LaunchTemplateContent,
) -> Result<String, CloudError> {
    let name = content.name();
    if let Some(id) = find(client, &name).await? {
        return Ok(id);
    }
    let created = client
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(data(content)?)
        .tag_specifications(tags::specification(
            ResourceType::LaunchTemplate,
            &content.tags,
        ))
        .send()
        .await;
    match created {
        Ok(answer) => answer
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .map(str::to_string)
            .ok_or_else(|| CloudError::Api(format!("CreateLaunchTemplate {name}: no id"))),
        // Another replica (or a call that timed out after taking effect) created it first.
        Err(e) if error_code(&e) == Some("InvalidLaunchTemplateName.AlreadyExistsException") => {
            find(client, &name).await?.ok_or_else(|| {
                CloudError::Api(format!("launch template {name} exists but is not listed"))
            })
        }
        Err(e) => Err(cloud_error("CreateLaunchTemplate", &e)),
    }
}

async fn find(client: &Client, name: &str) -> Result<Option<String>, CloudError> {
    let answer = client
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("launch-template-name")
                .values(name)
                .build(),
        )
        .send()
        .await
        .map_err(|e| cloud_error("DescribeLaunchTemplates", &e))?;
    Ok(answer
        .launch_templates()
        .iter()
        .find_map(|t| t.launch_template_id().map(str::to_string)))
}

/// Deletes this cluster's launch templates whose name is not in `in_use`; returns the deleted names.
/// A listing that fails deletes nothing.
pub async fn collect(
    client: &Client,
    cluster: &str,
    in_use: &BTreeSet<String>,
) -> Result<Vec<String>, CloudError> {
    let mut unused = Vec::new();
    let mut pages = client
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::cluster_key(cluster)))
                .values("owned")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| cloud_error("DescribeLaunchTemplates", &e))?;
        for template in page.launch_templates() {
            if let Some(name) = template.launch_template_name()
                && name.starts_with(NAME_PREFIX)
                && !in_use.contains(name)
            {
                unused.push(name.to_string());
            }
        }
    }
    for name in &unused {
        match client
            .delete_launch_template()
            .launch_template_name(name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("InvalidLaunchTemplateName.NotFoundException") => {}
            Err(e) => return Err(cloud_error("DeleteLaunchTemplate", &e)),
        }
    }
    Ok(unused)
}

fn data(content: &LaunchTemplateContent) -> Result<RequestLaunchTemplateData, CloudError> {
    let metadata = &content.metadata_options;
    let mut data = RequestLaunchTemplateData::builder()
        .image_id(&content.image_id)
        .set_user_data(content.user_data.clone())
        .set_security_group_ids(Some(content.security_group_ids.clone()))
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(match metadata.http_tokens() {
                    HttpTokens::Required => LaunchTemplateHttpTokensState::Required,
                    HttpTokens::Optional => LaunchTemplateHttpTokensState::Optional,
                })
                .http_endpoint(match metadata.http_endpoint() {
                    EnabledDisabled::Enabled => {
                        LaunchTemplateInstanceMetadataEndpointState::Enabled
                    }
                    EnabledDisabled::Disabled => {
                        LaunchTemplateInstanceMetadataEndpointState::Disabled
                    }
                })
                .http_protocol_ipv6(match metadata.http_protocol_ipv6() {
                    EnabledDisabled::Enabled => LaunchTemplateInstanceMetadataProtocolIpv6::Enabled,
                    EnabledDisabled::Disabled => {
                        LaunchTemplateInstanceMetadataProtocolIpv6::Disabled
                    }
                })
                .http_put_response_hop_limit(metadata.http_put_response_hop_limit() as i32)
                .build(),
        )
        .monitoring(
            LaunchTemplatesMonitoringRequest::builder()
                .enabled(content.detailed_monitoring)
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::NetworkInterface)
                .set_tags(Some(tags::to_sdk(&content.tags)))
                .build(),
        );
    if let Some(profile) = &content.instance_profile {
        data = data.iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(profile)
                .build(),
        );
    }
    for mapping in &content.block_device_mappings {
        data = data.block_device_mappings(block_device(mapping)?);
    }
    Ok(data.build())
}

fn block_device(
    mapping: &BlockDeviceMapping,
) -> Result<LaunchTemplateBlockDeviceMappingRequest, CloudError> {
    let mut request = LaunchTemplateBlockDeviceMappingRequest::builder()
        .set_device_name(mapping.device_name.clone());
    if let Some(ebs) = &mapping.ebs {
        let size = ebs
            .volume_size
            .as_deref()
            .map(volume_size_gib)
            .transpose()?;
        request = request.ebs(
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_delete_on_termination(ebs.delete_on_termination)
                .set_encrypted(ebs.encrypted)
                .set_iops(ebs.iops.map(|v| v as i32))
                .set_kms_key_id(ebs.kms_key_id.clone())
                .set_snapshot_id(ebs.snapshot_id.clone())
                .set_throughput(ebs.throughput.map(|v| v as i32))
                .set_volume_initialization_rate(ebs.volume_initialization_rate)
                .set_volume_size(size)
                .set_volume_type(ebs.volume_type.map(volume_type))
                .build(),
        );
    }
    Ok(request.build())
}

fn volume_type(v: nc::VolumeType) -> VolumeType {
    match v {
        nc::VolumeType::Standard => VolumeType::Standard,
        nc::VolumeType::Io1 => VolumeType::Io1,
        nc::VolumeType::Io2 => VolumeType::Io2,
        nc::VolumeType::Gp2 => VolumeType::Gp2,
        nc::VolumeType::Sc1 => VolumeType::Sc1,
        nc::VolumeType::St1 => VolumeType::St1,
        nc::VolumeType::Gp3 => VolumeType::Gp3,
    }
}

/// A volume size quantity (`100Gi`, `20G`, `1Ti`) in whole GiB, rounded up as EC2 takes it.
pub fn volume_size_gib(quantity: &str) -> Result<i32, CloudError> {
    let split = quantity
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(quantity.len());
    let (number, unit) = quantity.split_at(split);
    let number: u128 = number
        .parse()
        .map_err(|_| CloudError::Api(format!("volume size {quantity:?} is not a quantity")))?;
    let bytes = match unit {
        "" => number,
        "K" => number * 1_000,
        "M" => number * 1_000_000,
        "G" => number * 1_000_000_000,
        "T" => number * 1_000_000_000_000,
        "Ki" => number << 10,
        "Mi" => number << 20,
        "Gi" => number << 30,
        "Ti" => number << 40,
        _ => {
            return Err(CloudError::Api(format!(
                "volume size {quantity:?}: unknown unit"
            )));
        }
    };
    let gib = bytes.div_ceil(1 << 30);
    i32::try_from(gib).map_err(|_| CloudError::Api(format!("volume size {quantity:?} too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> LaunchTemplateContent {
        LaunchTemplateContent {
            cluster: "c".into(),
            node_class: "default".into(),
            node_pool: "general".into(),
            image_id: "ami-1".into(),
            user_data: None,
            security_group_ids: vec!["sg-1".into()],
            block_device_mappings: Vec::new(),
            metadata_options: MetadataOptions::default(),
            instance_profile: None,
            detailed_monitoring: false,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn the_name_follows_the_content() {
        let a = content();
        assert_eq!(a.name(), content().name());
        let mut b = content();
        b.image_id = "ami-2".into();
        assert_ne!(a.name(), b.name());
        assert!(a.name().starts_with(NAME_PREFIX));
    }

    #[test]
    fn volume_sizes_round_up_to_gib() {
        assert_eq!(volume_size_gib("100Gi").ok(), Some(100));
        assert_eq!(volume_size_gib("20G").ok(), Some(19));
        assert_eq!(volume_size_gib("1Ti").ok(), Some(1024));
        assert!(volume_size_gib("ten").is_err());
    }
}
