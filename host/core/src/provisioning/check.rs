//! An independent checker of a [`ProvisioningPlan`]: every rule kube-scheduler applies, evaluated on the
//! plan's result instead of trusted from the planner. The benchmark (`kestrel bench pack`) and the tests
//! run it on every plan they measure.
//!
//! It shares no code with the planner's fit checks (`scheduling::fit`): it keeps its own per-domain
//! counts and replays the placements in the planner's documented pod order (priority, then CPU and
//! memory, largest first, then namespace and name), so a rule the planner gets wrong shows here.
//!
//! Rules, for every pod bound to a node or carried by a planned claim:
//! - **per node**: resources (pods' requests plus the daemonsets that would run there fit the
//!   allocatable of *every* offering the claim may launch as), node selector / required node affinity
//!   and the NodePool's requirements against every offering's labels, taints, host ports;
//! - **topology**, replayed in order: required pod anti-affinity (both directions), required pod
//!   affinity (on the final placement: a selected pod in the pod's domain besides itself, or the pod
//!   selects itself; the scheduler binds the pods a term selects first, whatever the plan's order) and
//!   `DoNotSchedule` topology spread (`count + self - min <= maxSkew`, the minimum over the domains the
//!   pod could use, 0 on `kubernetes.io/hostname` when a NodePool can open nodes, and 0 while fewer than
//!   `minDomains` domains exist). A claim whose offerings span several values of a topology key that
//!   matters to one of its pods is a violation (the domain would be the cloud's choice).
//!
//! Simplification: spread counts every node as eligible (kube-scheduler counts only nodes that pass the
//! pod's node affinity and taints); the benchmark's workloads have no node-level constraints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::model::taints::untolerated;
use crate::model::{PodSpec, ResourceList, Snapshot, Taint, WhenUnsatisfiable, labels};

use super::plan::{BindingTarget, ProvisioningPlan};

/// One rule a plan breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index into `snapshot.pods`.
    pub pod: usize,
    /// Where it was placed (node or claim name).
    pub node: String,
    pub rule: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pod #{} on {}: {}: {}",
            self.pod, self.node, self.rule, self.detail
        )
    }
}

/// A node of the result: what it may look like (one label set per offering it may launch as) and what
/// it holds.
struct Place {
    name: String,
    /// Label sets it may have (one for a registered node; one per offering for a planned claim).
    variants: Vec<(Arc<BTreeMap<String, String>>, ResourceList)>,
    taints: Vec<Taint>,
    /// Pods already there before the plan (registered nodes).
    running: Vec<usize>,
    /// Pods the plan puts there.
    planned: Vec<usize>,
}

impl Place {
    /// The node's value of `key` if every variant agrees (`Err` lists the values it may take).
    fn domain(&self, key: &str) -> Result<Option<&str>, Vec<String>> {
        let mut values: BTreeSet<Option<&str>> = BTreeSet::new();
        for (l, _) in &self.variants {
            values.insert(l.get(key).map(String::as_str));
        }
        match values.len() {
            1 => Ok(values.into_iter().next().expect("one")),
            _ => Err(values
                .into_iter()
                .map(|v| v.unwrap_or("(none)").to_string())
                .collect()),
        }
    }
}

/// Checks `plan` against `snapshot`; empty when every rule holds.
pub fn check_plan(snapshot: &Snapshot, plan: &ProvisioningPlan) -> Vec<Violation> {
    let catalog = &snapshot.catalog;
    let mut out = Vec::new();
    let mut places: Vec<Place> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for node in &snapshot.nodes {
        let mut l = (*node.labels).clone();
        l.entry(labels::HOSTNAME.into())
            .or_insert_with(|| node.name.clone());
        l.entry(labels::ZONE.into())
            .or_insert_with(|| node.zone.clone());
        by_name.insert(node.name.clone(), places.len());
        places.push(Place {
            name: node.name.clone(),
            variants: vec![(Arc::new(l), node.allocatable.clone())],
            taints: node.taints.clone(),
            running: Vec::new(),
            planned: Vec::new(),
        });
    }
    for (i, p) in snapshot.pods.iter().enumerate() {
        if let Some(n) = &p.node_name
            && !p.terminating
            && let Some(&at) = by_name.get(n)
        {
            places[at].running.push(i);
        }
    }
    for claim in &snapshot.node_claims {
        let Some(launched) = &claim.launched else {
            continue;
        };
        let Some(ty) = catalog.instance_type(&launched.instance_type) else {
            continue;
        };
        let mut l = (*ty.labels).clone();
        l.extend(claim.labels.clone());
        l.extend(catalog.zone_labels(&launched.zone));
        l.insert(labels::HOSTNAME.into(), claim.name.clone());
        l.insert(
            labels::CAPACITY_TYPE.into(),
            launched.capacity_type.as_str().into(),
        );
        by_name.insert(claim.name.clone(), places.len());
        places.push(Place {
            name: claim.name.clone(),
            variants: vec![(Arc::new(l), ty.allocatable.clone())],
            taints: claim.taints.clone(),
            running: Vec::new(),
            planned: Vec::new(),
        });
    }
    for b in &plan.bindings {
        let name = match &b.target {
            BindingTarget::Node(n) | BindingTarget::NodeClaim(n) => n,
        };
        match by_name.get(name) {
            Some(&at) => places[at].planned.push(b.pod),
            None => out.push(Violation {
                pod: b.pod,
                node: name.clone(),
                rule: "binding",
                detail: "no such node or launched claim".into(),
            }),
        }
    }
    for (n, claim) in plan.claims.iter().enumerate() {
        let hostname = claim
            .labels
            .get(labels::HOSTNAME)
            .cloned()
            .unwrap_or_else(|| format!("planned-claim-{n}"));
        let pool = snapshot.node_pool(&claim.node_pool);
        let mut variants = Vec::new();
        for o in &claim.offerings {
            let offering = &catalog.offerings[o.offering];
            // The claim's labels, then what the instance itself carries (a zone label the claim
            // sets does not move an instance launched in another zone).
            let mut l = claim.labels.clone();
            if let Some(pool) = pool {
                l.extend(pool.labels.clone());
            }
            l.extend(catalog.offering_labels(offering));
            l.insert(labels::HOSTNAME.into(), hostname.clone());
            l.insert(labels::NODE_POOL.into(), claim.node_pool.clone());
            let alloc = catalog.instance_types[offering.instance_type]
                .allocatable
                .clone();
            variants.push((Arc::new(l), alloc));
        }
        if variants.is_empty() {
            for &p in &claim.pods {
                out.push(Violation {
                    pod: p,
                    node: hostname.clone(),
                    rule: "offerings",
                    detail: "the claim offers nothing to launch".into(),
                });
            }
        }
        if let Some(pool) = pool {
            for (l, _) in &variants {
                if let Err(e) = pool.compiled_requirements().matches_labels(l) {
                    out.push(Violation {
                        pod: claim.pods.first().copied().unwrap_or(0),
                        node: hostname.clone(),
                        rule: "NodePool requirements",
                        detail: e.to_string(),
                    });
                    break;
                }
            }
        }
        places.push(Place {
            name: hostname,
            variants,
            taints: claim.taints.clone(),
            running: Vec::new(),
            planned: claim.pods.clone(),
        });
    }
    for place in &places {
        check_node(snapshot, place, &mut out);
    }
    check_topology(snapshot, &places, &mut out);
    out
}

/// Resources, node affinity, taints and host ports on one node, for every label set it may have.
fn check_node(snapshot: &Snapshot, place: &Place, out: &mut Vec<Violation>) {
    let pods = &snapshot.pods;
    for (labels, alloc) in &place.variants {
        let mut load = ResourceList::new();
        let mut ports = Vec::new();
        for ds in &snapshot.daemonsets {
            let runs = untolerated(&place.taints, &ds.pod.tolerations).is_none()
                && ds.pod.node_terms.iter().any(|t| t.allows_labels(labels));
            if runs {
                load.add(&ds.pod.requests);
                ports.extend(ds.pod.host_ports.iter().cloned());
            }
        }
        for &p in place.running.iter().chain(&place.planned) {
            load.add(&pods[p].spec.requests);
        }
        if let Some(short) = load.first_shortfall(alloc) {
            out.push(Violation {
                pod: place.planned.first().copied().unwrap_or(0),
                node: place.name.clone(),
                rule: "resources",
                detail: format!(
                    "{} ({})",
                    short,
                    labels
                        .get(labels::INSTANCE_TYPE)
                        .map_or("?", String::as_str)
                ),
            });
        }
        for &p in place.running.iter().chain(&place.planned) {
            for hp in &pods[p].spec.host_ports {
                if ports
                    .iter()
                    .any(|u: &crate::model::HostPort| u.conflicts(hp))
                {
                    out.push(Violation {
                        pod: p,
                        node: place.name.clone(),
                        rule: "host ports",
                        detail: format!("{}/{} used twice", hp.port, hp.protocol),
                    });
                }
                ports.push(hp.clone());
            }
        }
        for &p in &place.planned {
            let spec = &pods[p].spec;
            if !spec.node_terms.iter().any(|t| t.allows_labels(labels)) {
                out.push(Violation {
                    pod: p,
                    node: place.name.clone(),
                    rule: "node affinity",
                    detail: format!(
                        "no term matches {}",
                        labels
                            .get(labels::INSTANCE_TYPE)
                            .map_or("?", String::as_str)
                    ),
                });
            }
            if let Some(t) = untolerated(&place.taints, &spec.tolerations) {
                out.push(Violation {
                    pod: p,
                    node: place.name.clone(),
                    rule: "taints",
                    detail: format!("{}:{:?} not tolerated", t.key, t.effect),
                });
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Affinity,
    AntiAffinity,
    Spread,
}

/// A distinct required pod term or hard spread constraint (by value: many classes share one), with its
/// counts per domain of its topology key.
struct Term {
    kind: Kind,
    key: String,
    /// The owner's namespace and the term's namespaces (spread: only the owner's).
    namespace: String,
    namespaces: Vec<String>,
    selector: crate::model::LabelSelector,
    /// Placed pods the term selects, per domain, and in total.
    selected: HashMap<String, u32>,
    selected_total: u32,
    /// Placed pods that own the term, per domain (anti-affinity's other direction).
    owners: HashMap<String, u32>,
    /// Domains a spread may use besides those seen (the values of its key over the NodePools'
    /// offerings).
    domains: BTreeSet<String>,
}

impl Term {
    fn selects(&self, spec: &PodSpec) -> bool {
        match self.kind {
            Kind::Spread => self.namespace == spec.namespace && self.selector.matches(&spec.labels),
            _ => crate::model::PodAffinityTerm {
                selector: self.selector.clone(),
                namespaces: self.namespaces.clone(),
                topology_key: self.key.clone(),
            }
            .selects(&self.namespace, &spec.namespace, &spec.labels),
        }
    }
}

/// What one class (pod spec, by pointer) has to do with the terms.
#[derive(Clone, Default)]
struct ClassTerms {
    /// (term, max skew, min domains) of its own terms.
    own: Vec<(usize, u32, Option<u32>)>,
    /// Terms that select its pods.
    selected_by: Vec<usize>,
}

/// Per-domain counts of every required pod term and hard spread constraint of a set of pods, updated
/// as pods are placed: the checker replays a plan through it, and `kestrel bench pack`'s Karpenter-style
/// greedy places its pods with it.
pub struct Topology {
    terms: Vec<Term>,
    by_value: HashMap<
        (
            Kind,
            String,
            String,
            Vec<String>,
            crate::model::LabelSelector,
        ),
        usize,
    >,
    classes: HashMap<*const PodSpec, ClassTerms>,
    /// A NodePool can open nodes: a hostname spread's minimum is 0 (every new node is an empty domain).
    can_open_nodes: bool,
    /// Values of a key over the NodePools' offerings.
    key_domains: HashMap<String, BTreeSet<String>>,
    /// Required pod affinity is left to [`Topology::affinity_holds`] on the final counts.
    pub final_affinity: bool,
}

/// A pod's domain for a key on some node: `Ok(None)` when the node has no such label, `Err` with the
/// values it may take when not pinned.
pub type Domain = Result<Option<String>, Vec<String>>;

impl Topology {
    /// Counts for the terms of `specs` (every pod spec that will be placed or is running), with spread
    /// domains taken from the NodePools' offerings in `snapshot`.
    pub fn new<'a>(snapshot: &Snapshot, specs: impl Iterator<Item = &'a Arc<PodSpec>>) -> Topology {
        let mut t = Topology {
            terms: Vec::new(),
            by_value: HashMap::new(),
            classes: HashMap::new(),
            can_open_nodes: !snapshot.node_pools.is_empty(),
            key_domains: HashMap::new(),
            final_affinity: false,
        };
        let mut own: Vec<(*const PodSpec, ClassTerms)> = Vec::new();
        let mut seen: BTreeSet<*const PodSpec> = BTreeSet::new();
        let mut all: Vec<Arc<PodSpec>> = Vec::new();
        for s in specs {
            if !seen.insert(Arc::as_ptr(s)) {
                continue;
            }
            all.push(s.clone());
            let mut ct = ClassTerms::default();
            for a in &s.pod_affinity {
                let id = t.term(
                    Kind::Affinity,
                    &a.topology_key,
                    &s.namespace,
                    &a.namespaces,
                    &a.selector,
                );
                ct.own.push((id, 0, None));
            }
            for a in &s.pod_anti_affinity {
                let id = t.term(
                    Kind::AntiAffinity,
                    &a.topology_key,
                    &s.namespace,
                    &a.namespaces,
                    &a.selector,
                );
                ct.own.push((id, 0, None));
            }
            for c in &s.topology_spread {
                if c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule {
                    let id = t.term(
                        Kind::Spread,
                        &c.topology_key,
                        &s.namespace,
                        &[],
                        &c.selector,
                    );
                    ct.own.push((id, c.max_skew, c.min_domains));
                }
            }
            own.push((Arc::as_ptr(s), ct));
        }
        for (ptr, mut ct) in own {
            let spec = all
                .iter()
                .find(|s| Arc::as_ptr(s) == ptr)
                .expect("collected");
            ct.selected_by = (0..t.terms.len())
                .filter(|&i| t.terms[i].selects(spec))
                .collect();
            t.classes.insert(ptr, ct);
        }
        let keys: BTreeSet<String> = t
            .terms
            .iter()
            .filter(|x| x.kind == Kind::Spread && x.key != labels::HOSTNAME)
            .map(|x| x.key.clone())
            .collect();
        for key in keys {
            let mut d = BTreeSet::new();
            for pool in &snapshot.node_pools {
                let reqs = pool.compiled_requirements();
                for o in snapshot.catalog.offerings.iter().filter(|o| o.available) {
                    let mut l = snapshot.catalog.offering_labels(o);
                    l.extend(pool.labels.clone());
                    l.insert(labels::NODE_POOL.into(), pool.name.clone());
                    if reqs.allows_labels(&l)
                        && let Some(v) = l.get(&key)
                    {
                        d.insert(v.clone());
                    }
                }
            }
            t.key_domains.insert(key, d);
        }
        for term in &mut t.terms {
            if let Some(d) = t.key_domains.get(&term.key) {
                term.domains = d.clone();
            }
        }
        t
    }

    fn term(
        &mut self,
        kind: Kind,
        key: &str,
        namespace: &str,
        namespaces: &[String],
        selector: &crate::model::LabelSelector,
    ) -> usize {
        let k = (
            kind,
            key.to_string(),
            namespace.to_string(),
            namespaces.to_vec(),
            selector.clone(),
        );
        if let Some(&id) = self.by_value.get(&k) {
            return id;
        }
        self.terms.push(Term {
            kind,
            key: key.to_string(),
            namespace: namespace.to_string(),
            namespaces: namespaces.to_vec(),
            selector: selector.clone(),
            selected: HashMap::new(),
            selected_total: 0,
            owners: HashMap::new(),
            domains: BTreeSet::new(),
        });
        self.by_value.insert(k, self.terms.len() - 1);
        self.terms.len() - 1
    }

    fn class(&self, spec: &Arc<PodSpec>) -> Option<&ClassTerms> {
        self.classes.get(&Arc::as_ptr(spec))
    }

    /// The topology keys that matter to `spec` (its own terms and the terms that select it).
    pub fn keys_of(&self, spec: &Arc<PodSpec>) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        if let Some(ct) = self.class(spec) {
            for (id, _, _) in &ct.own {
                keys.insert(self.terms[*id].key.as_str());
            }
            for id in &ct.selected_by {
                keys.insert(self.terms[*id].key.as_str());
            }
        }
        keys
    }

    /// Whether a pod of `spec` may be placed where `domain(key)` gives its domains: `Err((rule, why))`
    /// for the first rule it breaks.
    pub fn admits(
        &self,
        spec: &Arc<PodSpec>,
        domain: &dyn Fn(&str) -> Domain,
    ) -> Result<(), (&'static str, String)> {
        let Some(ct) = self.class(spec) else {
            return Ok(());
        };
        let pinned = |key: &str| -> Result<Option<String>, (&'static str, String)> {
            domain(key).map_err(|values| {
                (
                    "topology",
                    format!(
                        "{key} is not pinned: the claim may launch in {}",
                        values.join(", ")
                    ),
                )
            })
        };
        for &(id, max_skew, min_domains) in &ct.own {
            let t = &self.terms[id];
            let Some(here) = pinned(&t.key)? else {
                if t.kind == Kind::AntiAffinity {
                    continue;
                }
                return Err(("topology", format!("node has no {} label", t.key)));
            };
            let count = t.selected.get(&here).copied().unwrap_or(0);
            match t.kind {
                Kind::AntiAffinity => {
                    if count > 0 {
                        return Err((
                            "pod anti-affinity",
                            format!("a selected pod is already in {} {here}", t.key),
                        ));
                    }
                }
                Kind::Affinity => {
                    let ok = if self.final_affinity {
                        // Checked on the final counts by `affinity_holds`.
                        true
                    } else if t.selected_total == 0 {
                        t.selects(spec)
                    } else {
                        count > 0
                    };
                    if !ok {
                        return Err((
                            "pod affinity",
                            format!(
                                "no selected pod in {} {here} ({} elsewhere)",
                                t.key, t.selected_total
                            ),
                        ));
                    }
                }
                Kind::Spread => {
                    let mut domains: BTreeSet<&str> =
                        t.domains.iter().map(String::as_str).collect();
                    domains.extend(t.selected.keys().map(String::as_str));
                    domains.insert(here.as_str());
                    let min = if t.key == labels::HOSTNAME {
                        if self.can_open_nodes {
                            0
                        } else {
                            domains
                                .iter()
                                .map(|d| t.selected.get(*d).copied().unwrap_or(0))
                                .min()
                                .unwrap_or(0)
                        }
                    } else if min_domains.is_some_and(|m| (domains.len() as u32) < m) {
                        0
                    } else {
                        domains
                            .iter()
                            .map(|d| t.selected.get(*d).copied().unwrap_or(0))
                            .min()
                            .unwrap_or(0)
                    };
                    let mine = count + u32::from(t.selects(spec));
                    if mine > min + max_skew {
                        return Err((
                            "topology spread",
                            format!(
                                "{} {here} would hold {mine} matching pods, min {min}, maxSkew {max_skew}",
                                t.key
                            ),
                        ));
                    }
                }
            }
        }
        for &id in &ct.selected_by {
            let t = &self.terms[id];
            if t.kind != Kind::AntiAffinity {
                continue;
            }
            let Some(here) = pinned(&t.key)? else {
                continue;
            };
            if t.owners.get(&here).copied().unwrap_or(0) > 0 {
                return Err((
                    "pod anti-affinity (existing pod's)",
                    format!("a pod in {} {here} repels this one", t.key),
                ));
            }
        }
        Ok(())
    }

    /// Required pod affinity on the final counts (after every pod is recorded): a pod of `spec` where
    /// `domain` says has a pod its term selects in its domain besides itself, or selects itself (the
    /// first of a group; the scheduler binds the pods a term selects before the pods that follow them,
    /// so the order of the replay does not decide it).
    pub fn affinity_holds(
        &self,
        spec: &Arc<PodSpec>,
        domain: &dyn Fn(&str) -> Domain,
    ) -> Result<(), (&'static str, String)> {
        let Some(ct) = self.class(spec) else {
            return Ok(());
        };
        for &(id, _, _) in &ct.own {
            let t = &self.terms[id];
            if t.kind != Kind::Affinity {
                continue;
            }
            let Ok(Some(here)) = domain(&t.key) else {
                continue;
            };
            let me = t.selects(spec);
            let others = t.selected.get(&here).copied().unwrap_or(0) - u32::from(me);
            if others == 0 && !me {
                return Err((
                    "pod affinity",
                    format!(
                        "no selected pod in {} {here} ({} elsewhere)",
                        t.key, t.selected_total
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Counts a pod of `spec` placed where `domain(key)` says.
    pub fn record(&mut self, spec: &Arc<PodSpec>, domain: &dyn Fn(&str) -> Domain) {
        let Some(ct) = self.classes.get(&Arc::as_ptr(spec)).cloned() else {
            return;
        };
        for id in ct.selected_by {
            let t = &mut self.terms[id];
            if let Ok(Some(here)) = domain(&t.key) {
                *t.selected.entry(here).or_default() += 1;
                t.selected_total += 1;
            }
        }
        for (id, _, _) in ct.own {
            let t = &mut self.terms[id];
            if let Ok(Some(here)) = domain(&t.key) {
                *t.owners.entry(here).or_default() += 1;
            }
        }
    }
}

/// The planner's documented order: priority, CPU, memory (largest first), namespace, name.
pub fn planner_order(snapshot: &Snapshot, pods: &mut [usize]) {
    pods.sort_by(|&a, &b| {
        let (pa, pb) = (&snapshot.pods[a], &snapshot.pods[b]);
        let size = |p: &crate::model::Pod| {
            (
                p.spec.requests.cpu.millis(),
                p.spec.requests.memory.millis(),
            )
        };
        pb.spec
            .priority
            .cmp(&pa.spec.priority)
            .then(size(pb).cmp(&size(pa)))
            .then(pa.spec.namespace.cmp(&pb.spec.namespace))
            .then(pa.name.cmp(&pb.name))
    });
}

fn check_topology(snapshot: &Snapshot, places: &[Place], out: &mut Vec<Violation>) {
    let pods = &snapshot.pods;
    let mut at: HashMap<usize, usize> = HashMap::new();
    let mut running = Vec::new();
    let mut planned = Vec::new();
    for (i, place) in places.iter().enumerate() {
        for &p in &place.running {
            at.insert(p, i);
            running.push(p);
        }
        for &p in &place.planned {
            at.insert(p, i);
            planned.push(p);
        }
    }
    planner_order(snapshot, &mut planned);
    let mut topology = Topology::new(
        snapshot,
        running.iter().chain(&planned).map(|&p| &pods[p].spec),
    );
    topology.final_affinity = true;
    for (step, &p) in running.iter().chain(&planned).enumerate() {
        let spec = &pods[p].spec;
        let place = &places[at[&p]];
        let domain = |key: &str| place.domain(key).map(|d| d.map(str::to_string));
        if step >= running.len()
            && let Err((rule, detail)) = topology.admits(spec, &domain)
        {
            out.push(Violation {
                pod: p,
                node: place.name.clone(),
                rule,
                detail,
            });
        }
        topology.record(spec, &domain);
    }
    for &p in &planned {
        let place = &places[at[&p]];
        let domain = |key: &str| place.domain(key).map(|d| d.map(str::to_string));
        if let Err((rule, detail)) = topology.affinity_holds(&pods[p].spec, &domain) {
            out.push(Violation {
                pod: p,
                node: place.name.clone(),
                rule,
                detail,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Catalog, LabelSelector, NodePool, Pod, PodAffinityTerm, TopologySpread, WhenUnsatisfiable,
    };
    use crate::policy::NativeRanker;
    use crate::provisioning::{SingleRanker, plan};

    fn snapshot(spec: PodSpec, count: usize) -> Snapshot {
        let catalog =
            Arc::new(Catalog::ec2_on_demand(&["us-east-1a", "us-east-1b", "us-east-1c"]).unwrap());
        let mut s = Snapshot::new(0, catalog);
        s.node_pools.push(NodePool::new("general"));
        s.pods = Pod::replicas("web", Arc::new(spec), count);
        s
    }

    fn web(cpu: &str) -> PodSpec {
        let mut s = PodSpec::with_requests(
            "default",
            ResourceList::parse([("cpu", cpu), ("memory", "1Gi")]).unwrap(),
        );
        s.labels.insert("app".into(), "web".into());
        s
    }

    fn selector() -> LabelSelector {
        LabelSelector::from_labels(&BTreeMap::from([("app".to_string(), "web".to_string())]))
    }

    fn rules(v: &[Violation]) -> BTreeSet<&'static str> {
        v.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn anti_affinity_replicas_sharing_a_node_are_caught() {
        let mut s = web("1");
        s.pod_anti_affinity.push(PodAffinityTerm {
            selector: selector(),
            namespaces: vec![],
            topology_key: labels::HOSTNAME.into(),
        });
        let snap = snapshot(s, 4);
        let mut p = plan(&snap, &mut SingleRanker::new(NativeRanker::new()));
        assert_eq!(p.claims.len(), 4);
        assert_eq!(check_plan(&snap, &p), vec![]);
        // Two replicas on one claim: the second is refused by the first's term and its own.
        let moved = p.claims.pop().unwrap().pods;
        p.claims[0].pods.extend(moved);
        assert!(rules(&check_plan(&snap, &p)).contains("pod anti-affinity"));
    }

    #[test]
    fn zone_spread_skew_and_unpinned_zones_are_caught() {
        let mut s = web("1");
        s.topology_spread.push(TopologySpread {
            max_skew: 1,
            topology_key: labels::ZONE.into(),
            when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
            selector: selector(),
            min_domains: None,
        });
        let snap = snapshot(s, 6);
        let p = plan(&snap, &mut SingleRanker::new(NativeRanker::new()));
        assert_eq!(check_plan(&snap, &p), vec![]);
        // Every claim moved to us-east-1a: skew 2 appears by the third pod.
        let mut skewed = p.clone();
        for c in &mut skewed.claims {
            // The same instance type, in us-east-1a.
            let ty = snap.catalog.offerings[c.offerings[0].offering].instance_type;
            let o = snap
                .catalog
                .offerings
                .iter()
                .position(|o| o.zone == "us-east-1a" && o.instance_type == ty)
                .unwrap();
            c.offerings.truncate(1);
            c.offerings[0].offering = o;
            c.offerings[0].zone = "us-east-1a".into();
        }
        let v = check_plan(&snap, &skewed);
        assert!(rules(&v).contains("topology spread"), "{v:?}");
        // A claim that may launch in two zones leaves the domain to the cloud.
        let mut unpinned = p.clone();
        let extra = snap
            .catalog
            .offerings
            .iter()
            .position(|o| o.zone != unpinned.claims[0].offerings[0].zone)
            .unwrap();
        let mut o = unpinned.claims[0].offerings[0].clone();
        o.offering = extra;
        unpinned.claims[0].offerings.push(o);
        let v = check_plan(&snap, &unpinned);
        assert!(
            v.iter()
                .any(|v| v.rule == "topology" && v.detail.contains("not pinned")),
            "{v:?}"
        );
    }

    #[test]
    fn overfull_claims_and_unmet_affinity_are_caught() {
        let snap = snapshot(web("1"), 40);
        let mut p = plan(&snap, &mut SingleRanker::new(NativeRanker::new()));
        assert_eq!(check_plan(&snap, &p), vec![]);
        // Every pod on the smallest claim.
        let all: Vec<usize> = p.claims.iter().flat_map(|c| c.pods.clone()).collect();
        p.claims.truncate(1);
        p.claims[0].pods = all;
        assert!(rules(&check_plan(&snap, &p)).contains("resources"));

        // Pods requiring hostname affinity to a workload that is elsewhere.
        let mut follower = web("1");
        follower.labels.insert("app".into(), "follower".into());
        follower.pod_affinity.push(PodAffinityTerm {
            selector: selector(),
            namespaces: vec![],
            topology_key: labels::HOSTNAME.into(),
        });
        let mut snap = snapshot(web("1"), 1);
        snap.pods
            .extend(Pod::replicas("follower", Arc::new(follower), 1));
        let p = plan(&snap, &mut SingleRanker::new(NativeRanker::new()));
        assert_eq!(check_plan(&snap, &p), vec![]);
        let mut split = p.clone();
        let mut second = split.claims[0].clone();
        second
            .labels
            .insert(labels::HOSTNAME.into(), "elsewhere".into());
        second.pods = vec![1];
        split.claims[0].pods.retain(|&q| q != 1);
        split.claims.push(second);
        let v = check_plan(&snap, &split);
        assert!(rules(&v).contains("pod affinity"), "{v:?}");
    }
}
