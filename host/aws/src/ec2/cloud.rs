//! [`Ec2Cloud`]: the controller's cloud edge on EC2.
//!
//! A launch finds the claim's instance first (by its `karpenter.sh/nodeclaim` tag: a controller that
//! crashed between CreateFleet and recording the claim must not launch a second instance), then
//! ensures the launch templates and sends CreateFleet `instant` with the claim name as client token,
//! so a retried call (the SDK's own retries, or the controller's) is the same request to EC2.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType, InstanceLifecycleType, InstanceStateName,
    OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy, SpotOptionsRequest,
    TargetCapacitySpecificationRequest,
};
use kestrel_core::api::ec2nodeclass::EC2NodeClassSpec;
use kestrel_core::clock::{Clock, Millis, SystemClock};
use kestrel_core::cloud::{
    CapacityType, CloudApi, CloudCall, CloudError, Instance, InstanceState, LaunchRequest,
    Launched, Listing, Offering, OfferingFailure, SpotPrice,
};
use kestrel_core::model::{catalog, labels};

use super::discovery::{Resolution, readiness, status};
use super::error::{cloud_error, error_code};
use super::launch_template::{self, LaunchTemplateContent};
use super::{fleet, tags};

/// What the adapter is told once, at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Settings {
    /// The EKS cluster's name: the ownership tag every listing filters on.
    pub cluster: String,
    /// DescribeInstances page size (5..=1000).
    pub page_size: i32,
}

impl Ec2Settings {
    pub fn new(cluster: impl Into<String>) -> Self {
        Ec2Settings {
            cluster: cluster.into(),
            page_size: 1000,
        }
    }
}

/// A NodeClass as a node pool launches it: its spec, what it resolved to, and the userData rendered
/// for it (base64; `None` for none).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundNodeClass {
    pub name: String,
    pub spec: EC2NodeClassSpec,
    pub resolution: Resolution,
    pub user_data: Option<String>,
}

/// The EC2 cloud edge (implements [`CloudApi`]).
pub struct Ec2Cloud {
    client: Client,
    settings: Ec2Settings,
    /// The NodeClass each node pool launches with (set by whoever watches the NodeClasses).
    node_classes: Mutex<BTreeMap<String, Arc<BoundNodeClass>>>,
    /// Launch template ids by name (content hash): a template is looked up or created once.
    templates: tokio::sync::Mutex<BTreeMap<String, String>>,
    /// The latest spot prices read (type, zone) -> USD/hour, for pricing listed instances.
    spot_prices: Mutex<BTreeMap<(String, String), f64>>,
    /// Each type's architecture as EC2 last described it (else the embedded catalog's).
    architectures: Mutex<BTreeMap<String, String>>,
}

impl Ec2Cloud {
    pub fn new(client: Client, settings: Ec2Settings) -> Self {
        Ec2Cloud {
            client,
            settings,
            node_classes: Mutex::new(BTreeMap::new()),
            templates: tokio::sync::Mutex::new(BTreeMap::new()),
            spot_prices: Mutex::new(BTreeMap::new()),
            architectures: Mutex::new(BTreeMap::new()),
        }
    }

    /// From an SDK configuration (see [`crate::config::load`]).
    pub fn from_config(config: &aws_config::SdkConfig, settings: Ec2Settings) -> Self {
        Ec2Cloud::new(Client::new(config), settings)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The region's instance types and their zones as EC2 describes them (what the controller plans
    /// with); launches then pick each type's AMI by the architecture described.
    pub async fn describe_instance_types(
        &self,
    ) -> Result<kestrel_core::controller::assemble::DescribedTypes, CloudError> {
        let described = super::instance_types::described_types(&self.client).await?;
        let architectures = described
            .types
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.label(labels::ARCH)?.to_string())))
            .collect();
        *self
            .architectures
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = architectures;
        Ok(described)
    }

    fn architecture(&self, instance_type: &str) -> Option<String> {
        let described = self
            .architectures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(instance_type)
            .cloned();
        described.or_else(|| {
            catalog::ec2_instance_type(instance_type)
                .and_then(|t| t.label(labels::ARCH))
                .map(str::to_string)
        })
    }

    /// Binds a node pool to the NodeClass it launches with.
    pub fn bind(&self, node_pool: &str, node_class: BoundNodeClass) {
        self.node_classes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node_pool.to_string(), Arc::new(node_class));
    }

    /// Unbinds a node pool (its NodeClass is being deleted): its launches fail from now on, and the
    /// launch templates only it produced are collected. Returns whether it was bound.
    pub fn unbind(&self, node_pool: &str) -> bool {
        self.node_classes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node_pool)
            .is_some()
    }

    fn bound(&self, node_pool: &str) -> Option<Arc<BoundNodeClass>> {
        self.node_classes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node_pool)
            .cloned()
    }

    /// The launch template content for a node pool's NodeClass and one architecture's AMI.
    fn template_content(
        &self,
        node_pool: &str,
        class: &BoundNodeClass,
        architecture: &str,
    ) -> Option<LaunchTemplateContent> {
        let ami = class.resolution.ami_for(architecture)?;
        let spec = &class.spec;
        Some(LaunchTemplateContent {
            cluster: self.settings.cluster.clone(),
            node_class: class.name.clone(),
            node_pool: node_pool.to_string(),
            image_id: ami.id.clone(),
            user_data: class.user_data.clone(),
            security_group_ids: class
                .resolution
                .security_groups
                .iter()
                .map(|g| g.id.clone())
                .collect(),
            block_device_mappings: spec.block_device_mappings.clone(),
            metadata_options: spec.metadata_options.clone().unwrap_or_default(),
            instance_profile: class.resolution.instance_profile.clone(),
            detailed_monitoring: spec.detailed_monitoring.unwrap_or(false),
            tags: tags::node_tags(&self.settings.cluster, node_pool, &class.name, &spec.tags),
        })
    }

    /// The names of the launch templates the bound NodeClasses produce now.
    pub fn templates_in_use(&self) -> BTreeSet<String> {
        let bound: Vec<_> = self
            .node_classes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(pool, class)| (pool.clone(), class.clone()))
            .collect();
        let mut names = BTreeSet::new();
        for (pool, class) in bound {
            for ami in &class.resolution.amis {
                if let Some(content) = self.template_content(&pool, &class, &ami.architecture) {
                    names.insert(content.name());
                }
            }
        }
        names
    }

    /// Deletes this cluster's launch templates that no bound NodeClass produces any more.
    pub async fn collect_launch_templates(&self) -> Result<Vec<String>, CloudError> {
        let in_use = self.templates_in_use();
        let deleted =
            launch_template::collect(&self.client, &self.settings.cluster, &in_use).await?;
        let mut cache = self.templates.lock().await;
        for name in &deleted {
            cache.remove(name);
        }
        Ok(deleted)
    }

    async fn template_id(&self, content: &LaunchTemplateContent) -> Result<String, CloudError> {
        let name = content.name();
        // Held across the call: two launches needing the same new template create it once.
        let mut cache = self.templates.lock().await;
        if let Some(id) = cache.get(&name) {
            return Ok(id.clone());
        }
        let id = launch_template::ensure(&self.client, content).await?;
        cache.insert(name, id.clone());
        Ok(id)
    }

    fn cluster_filter(&self) -> aws_sdk_ec2::types::Filter {
        aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{}", tags::cluster_key(&self.settings.cluster)))
            .values("owned")
            .build()
    }

    fn live_states() -> aws_sdk_ec2::types::Filter {
        aws_sdk_ec2::types::Filter::builder()
            .name("instance-state-name")
            .set_values(Some(
                ["pending", "running", "stopping", "stopped", "shutting-down"]
                    .map(String::from)
                    .to_vec(),
            ))
            .build()
    }

    /// The live instance a claim launched, if any (the crash-between-launch-and-record case).
    async fn claim_instance(&self, claim: &str) -> Result<Option<Instance>, CloudError> {
        let answer = self
            .client
            .describe_instances()
            .filters(self.cluster_filter())
            .filters(Self::live_states())
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{}", tags::NODE_CLAIM))
                    .values(claim)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| cloud_error("DescribeInstances", &e))?;
        Ok(answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| self.instance(i)))
    }

    /// An EC2 instance as the core's; `None` without an id, type or zone.
    fn instance(&self, instance: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
        let tags = tags::from_sdk(instance.tags());
        let instance_type = instance.instance_type()?.as_str().to_string();
        let zone = instance.placement()?.availability_zone()?.to_string();
        let capacity_type = match instance.instance_lifecycle() {
            Some(InstanceLifecycleType::Spot) => CapacityType::Spot,
            _ => CapacityType::OnDemand,
        };
        let price = self.price(&instance_type, &zone, capacity_type);
        let state = match instance.state().and_then(|s| s.name()) {
            Some(InstanceStateName::Pending) => InstanceState::Pending,
            Some(InstanceStateName::Running) => InstanceState::Running,
            Some(InstanceStateName::Terminated) => InstanceState::Terminated,
            // Stopping, stopped and shutting-down: not serving and not coming back by itself.
            _ => InstanceState::ShuttingDown,
        };
        let launched_at = instance
            .launch_time()
            .map(|t| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000))
            .unwrap_or_else(|| SystemClock.now());
        Some(Instance {
            id: instance.instance_id()?.to_string(),
            claim: tags.get(tags::NODE_CLAIM).cloned().unwrap_or_default(),
            node_pool: tags.get(tags::NODE_POOL).cloned().unwrap_or_default(),
            offering: Offering {
                instance_type,
                zone,
                capacity_type,
                price,
            },
            launched_at,
            state,
        })
    }

    /// The hourly price of an instance: the last spot price read, else the on-demand price (an
    /// upper bound for spot); unknown is infinite, never free.
    fn price(&self, instance_type: &str, zone: &str, capacity_type: CapacityType) -> f64 {
        let on_demand = catalog::ec2_on_demand_prices()
            .ok()
            .and_then(|prices| prices.get(instance_type).copied());
        if capacity_type == CapacityType::Spot {
            let key = (instance_type.to_string(), zone.to_string());
            if let Some(price) = self
                .spot_prices
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
            {
                return *price;
            }
        }
        on_demand.unwrap_or(f64::INFINITY)
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Launched, CloudError> {
        if request.offerings.is_empty() {
            return Err(CloudError::NoOfferings {
                claim: request.claim.clone(),
            });
        }
        if let Some(instance) = self.claim_instance(&request.claim).await? {
            return Ok(Launched {
                instance,
                skipped: Vec::new(),
            });
        }
        let Some(class) = self.bound(&request.node_pool) else {
            return Err(CloudError::Api(format!(
                "node pool {} has no EC2NodeClass bound",
                request.node_pool
            )));
        };
        let class_status = status(&class.spec, &class.resolution, None, SystemClock.now());
        if let Err(reason) = readiness(&class_status) {
            return Err(CloudError::Api(format!(
                "EC2NodeClass {} is not ready ({reason}): nothing launched",
                class.name
            )));
        }
        let architecture_of = |instance_type: &str| {
            self.architecture(instance_type)
                .filter(|arch| class.resolution.ami_for(arch).is_some())
        };
        let (plans, mut failures) = fleet::plan(
            &request.offerings,
            &class.resolution.subnets,
            architecture_of,
        );
        for (attempt, plan) in plans.iter().enumerate() {
            let token = if attempt == 0 {
                request.claim.clone()
            } else {
                // A different request needs its own token; still derived from the claim, so a
                // repeat of this fallback is idempotent too.
                format!("{}.{}", request.claim, plan.capacity_type.label())
            };
            let (launched, refused) = self.send_fleet(request, &class, plan, &token).await?;
            failures.extend(refused);
            if let Some(found) = launched {
                return Ok(Launched {
                    instance: Instance {
                        id: found.id,
                        claim: request.claim.clone(),
                        node_pool: request.node_pool.clone(),
                        offering: found.offering,
                        launched_at: SystemClock.now(),
                        state: InstanceState::Pending,
                    },
                    skipped: failures,
                });
            }
        }
        Err(CloudError::NoCapacity {
            claim: request.claim.clone(),
            failures,
        })
    }

    async fn send_fleet(
        &self,
        request: &LaunchRequest,
        class: &BoundNodeClass,
        plan: &fleet::FleetPlan,
        token: &str,
    ) -> Result<(Option<fleet::FleetInstance>, Vec<OfferingFailure>), CloudError> {
        let mut configs = Vec::new();
        for (architecture, overrides) in &plan.by_architecture {
            let content = self
                .template_content(&request.node_pool, class, architecture)
                .ok_or_else(|| CloudError::Api(format!("no AMI for {architecture}")))?;
            let id = self.template_id(&content).await?;
            let mut config = FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_id(id)
                        .version("$Latest")
                        .build(),
                );
            for o in overrides {
                config = config.overrides(
                    FleetLaunchTemplateOverridesRequest::builder()
                        .instance_type(o.instance_type.as_str().into())
                        .subnet_id(&o.subnet_id)
                        .availability_zone(&o.zone)
                        .priority(o.priority)
                        .build(),
                );
            }
            configs.push(config.build());
        }
        let (capacity, mut fleet_request) = match plan.capacity_type {
            CapacityType::Spot => (
                DefaultTargetCapacityType::Spot,
                self.client.create_fleet().spot_options(
                    SpotOptionsRequest::builder()
                        .allocation_strategy(SpotAllocationStrategy::CapacityOptimizedPrioritized)
                        .build(),
                ),
            ),
            _ => (
                DefaultTargetCapacityType::OnDemand,
                self.client.create_fleet().on_demand_options(
                    OnDemandOptionsRequest::builder()
                        .allocation_strategy(FleetOnDemandAllocationStrategy::Prioritized)
                        .build(),
                ),
            ),
        };
        let mut instance_tags = tags::node_tags(
            &self.settings.cluster,
            &request.node_pool,
            &class.name,
            &class.spec.tags,
        );
        instance_tags.insert(tags::NODE_CLAIM.to_string(), request.claim.clone());
        let target = TargetCapacitySpecificationRequest::builder()
            .total_target_capacity(1)
            .default_target_capacity_type(capacity)
            .build();
        fleet_request = fleet_request
            .r#type(FleetType::Instant)
            .client_token(token)
            .target_capacity_specification(target)
            .set_launch_template_configs(Some(configs));
        for resource in [
            ResourceType::Instance,
            ResourceType::Volume,
            ResourceType::Fleet,
        ] {
            fleet_request =
                fleet_request.tag_specifications(tags::specification(resource, &instance_tags));
        }
        let answer = fleet_request
            .send()
            .await
            .map_err(|e| cloud_error("CreateFleet", &e))?;
        Ok(fleet::read_answer(
            &answer,
            plan.capacity_type,
            &request.offerings,
            &class.resolution.subnets,
        ))
    }

    async fn terminate(&self, instance_id: &str) -> Result<(), CloudError> {
        match self
            .client
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (terminated long enough ago that EC2 forgot it): what was asked is done.
            Err(e) if error_code(&e) == Some("InvalidInstanceID.NotFound") => Ok(()),
            Err(e) => Err(cloud_error("TerminateInstances", &e)),
        }
    }

    async fn list_instances(&self) -> Result<Listing, CloudError> {
        let mut instances = Vec::new();
        let mut pages = self
            .client
            .describe_instances()
            .filters(self.cluster_filter())
            .filters(Self::live_states())
            .max_results(self.settings.page_size)
            .into_paginator()
            .send();
        let mut read_one = false;
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                // Nothing read: an error, never an empty listing.
                Err(e) if !read_one => return Err(cloud_error("DescribeInstances", &e)),
                Err(e) => {
                    tracing::warn!(error = %cloud_error("DescribeInstances", &e), "listing cut short");
                    return Ok(Listing {
                        instances,
                        complete: false,
                    });
                }
            };
            read_one = true;
            instances.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| self.instance(i)),
            );
        }
        Ok(Listing {
            instances,
            complete: true,
        })
    }

    async fn read_spot_prices(
        &self,
        instance_types: &[String],
    ) -> Result<Vec<SpotPrice>, CloudError> {
        if instance_types.is_empty() {
            return Ok(Vec::new());
        }
        let now = aws_sdk_ec2::primitives::DateTime::from_millis(SystemClock.now());
        let mut latest: BTreeMap<(String, String), (Millis, f64)> = BTreeMap::new();
        let mut pages = self
            .client
            .describe_spot_price_history()
            .set_instance_types(Some(
                instance_types.iter().map(|t| t.as_str().into()).collect(),
            ))
            .product_descriptions("Linux/UNIX")
            // A start time of now returns the price in force now for every type and zone.
            .start_time(now)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| cloud_error("DescribeSpotPriceHistory", &e))?;
            for row in page.spot_price_history() {
                let (Some(instance_type), Some(zone), Some(price)) = (
                    row.instance_type(),
                    row.availability_zone(),
                    row.spot_price().and_then(|p| p.parse::<f64>().ok()),
                ) else {
                    continue;
                };
                let at = row.timestamp().map(|t| t.secs() * 1000).unwrap_or(0);
                let key = (instance_type.as_str().to_string(), zone.to_string());
                if latest.get(&key).is_none_or(|(seen, _)| at > *seen) {
                    latest.insert(key, (at, price));
                }
            }
        }
        let mut cache = self
            .spot_prices
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(latest
            .into_iter()
            .map(|((instance_type, zone), (_, price))| {
                cache.insert((instance_type.clone(), zone.clone()), price);
                SpotPrice {
                    instance_type,
                    zone,
                    price,
                }
            })
            .collect())
    }
}

impl CloudApi for Ec2Cloud {
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> CloudCall<'a, Launched> {
        Box::pin(self.launch(request))
    }

    fn delete<'a>(&'a self, instance_id: &'a str) -> CloudCall<'a, ()> {
        Box::pin(self.terminate(instance_id))
    }

    fn list(&self) -> CloudCall<'_, Listing> {
        Box::pin(self.list_instances())
    }

    fn spot_prices<'a>(&'a self, instance_types: &'a [String]) -> CloudCall<'a, Vec<SpotPrice>> {
        Box::pin(self.read_spot_prices(instance_types))
    }
}
