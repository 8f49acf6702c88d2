//! Instance profiles for EC2NodeClasses that name a `spec.role`, made and kept as Karpenter does.
//!
//! A NodeClass with `role` (and no `instanceProfile`) gets a profile Kestrel owns, named
//! `<cluster>_<hash of region and NodeClass name>` (stable across restarts and replicas, so a second
//! controller finds the profile the first one made instead of making another), tagged with the
//! cluster's ownership tag, `karpenter.sh/managed-by`, the NodeClass and the region, holding exactly
//! that role: a changed role replaces the one in the profile. A profile of that name that is not
//! tagged as this cluster's is never changed (it is someone else's).

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::types::{InstanceProfile, Tag};
use kestrel_core::cloud::CloudError;
use sha2::{Digest, Sha256};

use crate::ec2::error::{cloud_error, error_code};
use crate::ec2::tags;

/// The tag naming the cluster that manages a profile (Karpenter's).
pub const MANAGED_BY_TAG: &str = "karpenter.sh/managed-by";
const REGION_TAG: &str = "topology.kubernetes.io/region";

/// Makes and keeps the instance profiles of role-only NodeClasses.
#[derive(Debug, Clone)]
pub struct InstanceProfiles {
    client: Client,
    cluster: String,
    region: String,
}

impl InstanceProfiles {
    pub fn new(client: Client, cluster: impl Into<String>, region: impl Into<String>) -> Self {
        InstanceProfiles {
            client,
            cluster: cluster.into(),
            region: region.into(),
        }
    }

    /// From an SDK configuration (the region is the configuration's).
    pub fn from_config(config: &aws_config::SdkConfig, cluster: impl Into<String>) -> Self {
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        InstanceProfiles::new(Client::new(config), cluster, region)
    }

    /// The profile name of a NodeClass: the cluster's name and a hash of the region and the class.
    pub fn name_for(&self, node_class: &str) -> String {
        let digest = Sha256::digest(format!("{}{node_class}", self.region).as_bytes());
        format!("{}_{}", self.cluster, &hex::encode(digest)[..16])
    }

    /// The instance profile for `node_class` holding `role`, made or corrected as needed; its name.
    pub async fn ensure(&self, node_class: &str, role: &str) -> Result<String, CloudError> {
        let name = self.name_for(node_class);
        let roles: Vec<String> = match self.find(&name).await? {
            Some(profile) => {
                if !self.owns(profile.tags()) {
                    return Err(CloudError::Api(format!(
                        "instance profile {name} exists but is not tagged as cluster {}'s: not changed",
                        self.cluster
                    )));
                }
                profile
                    .roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .collect()
            }
            None => {
                self.create(&name, node_class).await?;
                Vec::new()
            }
        };
        for other in roles.iter().filter(|r| r.as_str() != role) {
            self.client
                .remove_role_from_instance_profile()
                .instance_profile_name(&name)
                .role_name(other)
                .send()
                .await
                .map_err(|e| cloud_error("RemoveRoleFromInstanceProfile", &e))?;
            tracing::info!(profile = %name, role = %other, "role removed from the instance profile");
        }
        if !roles.iter().any(|r| r == role) {
            self.client
                .add_role_to_instance_profile()
                .instance_profile_name(&name)
                .role_name(role)
                .send()
                .await
                .map_err(|e| cloud_error("AddRoleToInstanceProfile", &e))?;
            tracing::info!(profile = %name, role, "role added to the instance profile");
        }
        Ok(name)
    }

    /// Deletes the profile Kestrel made for `node_class` (its roles removed first, as IAM requires),
    /// for a NodeClass being deleted. Returns whether a profile was deleted: none (already gone) and
    /// one not tagged as this cluster's (someone else's, never touched) are not errors.
    pub async fn delete(&self, node_class: &str) -> Result<bool, CloudError> {
        let name = self.name_for(node_class);
        let Some(profile) = self.find(&name).await? else {
            return Ok(false);
        };
        if !self.owns(profile.tags()) {
            tracing::warn!(profile = %name, node_class, "the instance profile is not tagged as this cluster's: left in place");
            return Ok(false);
        }
        for role in profile.roles() {
            match self
                .client
                .remove_role_from_instance_profile()
                .instance_profile_name(&name)
                .role_name(role.role_name())
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if error_code(&err) == Some("NoSuchEntity") => {}
                Err(err) => return Err(cloud_error("RemoveRoleFromInstanceProfile", &err)),
            }
        }
        match self
            .client
            .delete_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(profile = %name, node_class, "instance profile deleted");
                Ok(true)
            }
            // Another replica deleted it between the lookup and now.
            Err(err) if error_code(&err) == Some("NoSuchEntity") => Ok(false),
            Err(err) => Err(cloud_error("DeleteInstanceProfile", &err)),
        }
    }

    /// The profile named `name`, or `None` when IAM has none (`NoSuchEntity`).
    async fn find(&self, name: &str) -> Result<Option<InstanceProfile>, CloudError> {
        match self
            .client
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(answer) => Ok(answer.instance_profile),
            Err(err) if error_code(&err) == Some("NoSuchEntity") => Ok(None),
            Err(err) => Err(cloud_error("GetInstanceProfile", &err)),
        }
    }

    /// Whether a profile's tags say this cluster owns it.
    fn owns(&self, tags: &[Tag]) -> bool {
        tags.iter()
            .any(|t| t.key() == tags::cluster_key(&self.cluster) && t.value() == "owned")
    }

    async fn create(&self, name: &str, node_class: &str) -> Result<(), CloudError> {
        let tags = BTreeMap::from([
            (tags::cluster_key(&self.cluster), "owned".to_string()),
            (MANAGED_BY_TAG.to_string(), self.cluster.clone()),
            (tags::NODE_CLASS.to_string(), node_class.to_string()),
            (REGION_TAG.to_string(), self.region.clone()),
        ]);
        let tags = tags
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CloudError::Api(format!("CreateInstanceProfile tags: {e}")))?;
        match self
            .client
            .create_instance_profile()
            .instance_profile_name(name)
            .path("/")
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(profile = %name, node_class, "instance profile created");
                Ok(())
            }
            // Another replica made it between the lookup and now: it is the same profile.
            Err(err) if error_code(&err) == Some("EntityAlreadyExists") => Ok(()),
            Err(err) => Err(cloud_error("CreateInstanceProfile", &err)),
        }
    }
}
