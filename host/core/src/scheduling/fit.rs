//! kube-scheduler's filter rules: whether a pod may run on a node (or a node about to be launched).
//!
//! Static rules depend only on the pod and the node's labels/taints (cached per pod spec by callers);
//! dynamic rules depend on what else is placed: free resources, host ports, pod (anti-)affinity and
//! topology spread.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::model::requirements::Incompatible;
use crate::model::resources::Shortfall;
use crate::model::taints::untolerated;
use crate::model::{
    HostPort, LabelLookup, PodSpec, Requirements, ResourceList, Taint, WhenUnsatisfiable, labels,
};

/// Why a pod cannot go somewhere: the rule that failed, with the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Resources(Shortfall),
    /// No instance type the pod may use has room for it (with daemonset overhead).
    NoInstanceTypeFits {
        requests: String,
        detail: String,
    },
    Taint(Taint),
    NodeAffinity(Incompatible),
    VolumeZone {
        zones: Vec<String>,
        node_zone: Option<String>,
    },
    HostPort(HostPort),
    /// A daemonset on every node that could be launched already uses the host port.
    DaemonSetHostPort {
        port: HostPort,
        daemonset: String,
    },
    /// A NodePool's `minValues` cannot be kept: fewer distinct values of `key` than `min` among the
    /// instance-type options that would hold the pods.
    MinValues {
        key: String,
        min: u32,
        found: usize,
    },
    PodAffinity {
        topology_key: String,
    },
    PodAntiAffinity {
        topology_key: String,
    },
    TopologySpread {
        topology_key: String,
        detail: String,
    },
    NotAccepting(String),
    Limits(String),
    NoOfferings(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Resources(s) => write!(f, "insufficient resources: {s}"),
            Failure::NoInstanceTypeFits { requests, detail } => {
                write!(
                    f,
                    "no allowed instance type has room for requests {{{requests}}}: {detail}"
                )
            }
            Failure::Taint(t) => write!(f, "taint {t} not tolerated"),
            Failure::NodeAffinity(i) => write!(f, "node affinity/selector: {i}"),
            Failure::VolumeZone { zones, node_zone } => write!(
                f,
                "volume zone conflict: volumes in {zones:?}, node in {}",
                node_zone.as_deref().unwrap_or("no zone")
            ),
            Failure::HostPort(p) => write!(f, "host port {}/{} already in use", p.port, p.protocol),
            Failure::DaemonSetHostPort { port, daemonset } => write!(
                f,
                "host port {}/{} is used by daemonset {daemonset} on every node this NodePool would launch",
                port.port, port.protocol
            ),
            Failure::MinValues { key, min, found } => write!(
                f,
                "minValues requirement not met: {key} needs at least {min} values among the instance types that hold the pods, {found} do"
            ),
            Failure::PodAffinity { topology_key } => {
                write!(
                    f,
                    "pod affinity ({topology_key}): no matching pod in this domain"
                )
            }
            Failure::PodAntiAffinity { topology_key } => {
                write!(
                    f,
                    "pod anti-affinity ({topology_key}): a matching pod is in this domain"
                )
            }
            Failure::TopologySpread {
                topology_key,
                detail,
            } => write!(f, "topology spread ({topology_key}): {detail}"),
            Failure::NotAccepting(why) => write!(f, "node not accepting pods: {why}"),
            Failure::Limits(why) => write!(f, "NodePool {why}"),
            Failure::NoOfferings(why) => write!(f, "no offering: {why}"),
        }
    }
}

/// Taints the pod does not tolerate (NoSchedule / NoExecute).
pub fn check_taints(spec: &PodSpec, taints: &[Taint]) -> Result<(), Failure> {
    match untolerated(taints, &spec.tolerations) {
        Some(t) => Err(Failure::Taint(t.clone())),
        None => Ok(()),
    }
}

/// Node selector and required node affinity against a node's labels: some term must match.
pub fn check_node_labels<L: LabelLookup + ?Sized>(
    terms: &[Requirements],
    node_labels: &L,
) -> Result<(), Failure> {
    if terms.is_empty() || terms.iter().any(|t| t.allows_labels(node_labels)) {
        return Ok(());
    }
    // Only a refusal pays for its explanation: the first term's.
    match terms[0].matches_labels(node_labels) {
        Err(e) => Err(Failure::NodeAffinity(e)),
        Ok(()) => Ok(()),
    }
}

pub fn check_volume_zone(spec: &PodSpec, zone: Option<&str>) -> Result<(), Failure> {
    match (&spec.volume_zones, zone) {
        (Some(zones), Some(z)) if zones.contains(z) => Ok(()),
        (Some(zones), z) => Err(Failure::VolumeZone {
            zones: zones.iter().cloned().collect(),
            node_zone: z.map(str::to_string),
        }),
        (None, _) => Ok(()),
    }
}

/// The static rules for a registered node (or in-flight claim): taints, node affinity, volume zones.
pub fn check_static<L: LabelLookup + ?Sized>(
    spec: &PodSpec,
    node_labels: &L,
    taints: &[Taint],
) -> Result<(), Failure> {
    check_taints(spec, taints)?;
    check_node_labels(&spec.node_terms, node_labels)?;
    check_volume_zone(spec, node_labels.label(labels::ZONE))
}

/// A place pods can go during the simulation: a node, an in-flight claim, or a claim being planned.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Node name or claim name.
    pub name: String,
    /// The labels that decide topology domains (hostname, zone, capacity type, ...).
    pub labels: Arc<BTreeMap<String, String>>,
    pub taints: Vec<Taint>,
    pub free: ResourceList,
    pub host_ports: Vec<HostPort>,
    /// Pods placed here (running or planned). Change it through [`Slot::place`] / [`Slot::unplace`],
    /// which keep `zone_repelling` in step.
    pub pods: Vec<Arc<PodSpec>>,
    pub accepting: bool,
    /// How many of `pods` have a required anti-affinity term wider than their node (zone, ...): while
    /// any slot has one, a pod without constraints of its own must still be checked against them.
    pub zone_repelling: u32,
}

impl Slot {
    /// An empty slot.
    pub fn new(
        name: String,
        labels: Arc<BTreeMap<String, String>>,
        taints: Vec<Taint>,
        free: ResourceList,
        accepting: bool,
    ) -> Slot {
        Slot {
            name,
            labels,
            taints,
            free,
            host_ports: Vec::new(),
            pods: Vec::new(),
            accepting,
            zone_repelling: 0,
        }
    }

    pub fn place(&mut self, spec: &Arc<PodSpec>) {
        self.free.sub(&spec.requests);
        self.host_ports.extend(spec.host_ports.iter().cloned());
        self.zone_repelling += u32::from(repels_beyond_its_node(spec));
        self.pods.push(spec.clone());
    }

    /// Takes one pod of `spec` off again (the inverse of [`Slot::place`]).
    pub fn unplace(&mut self, spec: &Arc<PodSpec>) {
        let Some(at) = self.pods.iter().rposition(|p| Arc::ptr_eq(p, spec)) else {
            return;
        };
        self.pods.remove(at);
        self.free.add(&spec.requests);
        self.zone_repelling -= u32::from(repels_beyond_its_node(spec));
        for port in &spec.host_ports {
            if let Some(used) = self.host_ports.iter().rposition(|p| p == port) {
                self.host_ports.remove(used);
            }
        }
    }
}

/// Whether a pod's required anti-affinity reaches past its own node (a zone, a capacity type, ...).
pub fn repels_beyond_its_node(spec: &PodSpec) -> bool {
    spec.pod_anti_affinity
        .iter()
        .any(|t| t.topology_key != labels::HOSTNAME)
}

/// Domains a pod could still open new capacity in, per topology key (e.g. the zones its NodePools can
/// launch into); used for topology spread minimums. A `kubernetes.io/hostname` entry (its set may be
/// empty) says a new node can be opened: every new node is a new hostname domain holding no pod, so the
/// minimum of a hostname spread is then 0 (Karpenter's `domainMinCount`), and a `maxSkew: 1` spread
/// puts one matching pod per node.
pub type NewDomains = BTreeMap<String, BTreeSet<String>>;

/// The [`NewDomains`] entry that says new nodes (new hostname domains) can be opened.
pub fn new_hosts_possible(new_domains: &mut NewDomains) {
    new_domains.entry(labels::HOSTNAME.to_string()).or_default();
}

/// What [`check_dynamic_memo`] learns about the whole cluster for one pod spec while the pods placed in
/// `slots` stay the same (only free room may change): whether some pod matches each affinity term,
/// the counts of each spread constraint, whether any pod repels beyond its node. Valid for one spec and
/// one set of placed pods; start a new one when either changes.
#[derive(Debug, Default)]
pub struct Memo {
    affinity_anywhere: Vec<Option<bool>>,
    spread: Vec<Option<BTreeMap<String, u32>>>,
    wider_repelling: Option<bool>,
}

impl Memo {
    pub fn new() -> Memo {
        Memo::default()
    }

    /// The counts of `spec.topology_spread[ci]` ([`spread_counts`]), counted once per memo.
    pub fn spread_counts(
        &mut self,
        spec: &PodSpec,
        ci: usize,
        slots: &[Slot],
        eligible: &dyn Fn(usize, &Slot) -> bool,
        new_domains: &NewDomains,
    ) -> &BTreeMap<String, u32> {
        if self.spread.len() < spec.topology_spread.len() {
            self.spread.resize(spec.topology_spread.len(), None);
        }
        self.spread[ci].get_or_insert_with(|| {
            spread_counts(
                spec,
                &spec.topology_spread[ci],
                slots,
                eligible,
                new_domains,
            )
        })
    }
}

/// Resources, host ports, pod (anti-)affinity (both directions for hostname) and topology spread.
/// `eligible(i, slot)` says whether `slots[i]` counts as a topology domain for the pod (its static rules
/// pass there; callers cache that per template).
pub fn check_dynamic(
    spec: &Arc<PodSpec>,
    slot_index: usize,
    slots: &[Slot],
    eligible: &dyn Fn(usize, &Slot) -> bool,
    new_domains: &NewDomains,
) -> Result<(), Failure> {
    check_dynamic_memo(
        spec,
        slot_index,
        slots,
        eligible,
        new_domains,
        &mut Memo::new(),
    )
}

/// [`check_dynamic`], remembering in `memo` what does not depend on the slot, so trying one pod on many
/// slots costs the cluster-wide scans once. The rules that only this slot can break (resources, host
/// ports, hostname terms, hostname spread while new nodes can open) are checked first, so a slot that
/// refuses the pod costs the pods on it, not the whole cluster: replicas that each need their own node
/// are placed in time linear in the open claims.
pub fn check_dynamic_memo(
    spec: &Arc<PodSpec>,
    slot_index: usize,
    slots: &[Slot],
    eligible: &dyn Fn(usize, &Slot) -> bool,
    new_domains: &NewDomains,
    memo: &mut Memo,
) -> Result<(), Failure> {
    let slot = &slots[slot_index];
    if !slot.accepting {
        return Err(Failure::NotAccepting("cordoned or being deleted".into()));
    }
    if let Some(s) = spec.requests.first_shortfall(&slot.free) {
        return Err(Failure::Resources(s));
    }
    for p in &spec.host_ports {
        if slot.host_ports.iter().any(|used| used.conflicts(p)) {
            return Err(Failure::HostPort(p.clone()));
        }
    }
    let hostname = labels::HOSTNAME;
    // Hostname terms reach only the pods on this slot (every slot is its own hostname).
    for other in &slot.pods {
        for term in &other.pod_anti_affinity {
            if term.topology_key == hostname
                && slot.labels.contains_key(hostname)
                && term.selects(&other.namespace, &spec.namespace, &spec.labels)
            {
                return Err(Failure::PodAntiAffinity {
                    topology_key: term.topology_key.clone(),
                });
            }
        }
    }
    if !spec.has_pod_constraints()
        && !*memo
            .wider_repelling
            .get_or_insert_with(|| slots.iter().any(|s| s.zone_repelling > 0))
    {
        return Ok(());
    }
    for term in &spec.pod_anti_affinity {
        if term.topology_key == hostname
            && slot.labels.contains_key(hostname)
            && slot
                .pods
                .iter()
                .any(|p| term.selects(&spec.namespace, &p.namespace, &p.labels))
        {
            return Err(Failure::PodAntiAffinity {
                topology_key: term.topology_key.clone(),
            });
        }
    }
    let opens_hosts = new_domains.contains_key(hostname);
    for c in &spec.topology_spread {
        if c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule
            && c.topology_key == hostname
            && opens_hosts
            && slot.labels.contains_key(hostname)
            && eligible(slot_index, slot)
        {
            // Minimum 0 (a new node is an empty domain): only this slot's count matters.
            let mine = count_matching(&slot.pods, |p| {
                p.namespace == spec.namespace && c.selector.matches(&p.labels)
            });
            if mine + 1 > c.max_skew {
                return Err(Failure::TopologySpread {
                    topology_key: c.topology_key.clone(),
                    detail: format!(
                        "{} would hold {} matching pods, min domain has 0, maxSkew {}",
                        slot.name,
                        mine + 1,
                        c.max_skew
                    ),
                });
            }
        }
    }
    fn domain_of<'s>(s: &'s Slot, key: &str) -> Option<&'s str> {
        s.labels.get(key).map(String::as_str)
    }
    // Other pods' anti-affinity wider than a node against the incoming pod (symmetry).
    if *memo
        .wider_repelling
        .get_or_insert_with(|| slots.iter().any(|s| s.zone_repelling > 0))
    {
        for other_slot in slots.iter().filter(|s| s.zone_repelling > 0) {
            for other in &other_slot.pods {
                for term in &other.pod_anti_affinity {
                    if term.topology_key == hostname {
                        continue;
                    }
                    let same = match (
                        domain_of(other_slot, &term.topology_key),
                        domain_of(slot, &term.topology_key),
                    ) {
                        (Some(a), Some(b)) => a == b,
                        _ => false,
                    };
                    if same && term.selects(&other.namespace, &spec.namespace, &spec.labels) {
                        return Err(Failure::PodAntiAffinity {
                            topology_key: term.topology_key.clone(),
                        });
                    }
                }
            }
        }
    }
    for term in &spec.pod_anti_affinity {
        if term.topology_key == hostname {
            continue;
        }
        let Some(here) = domain_of(slot, &term.topology_key) else {
            continue;
        };
        let clash = slots.iter().any(|s| {
            domain_of(s, &term.topology_key) == Some(here)
                && s.pods
                    .iter()
                    .any(|p| term.selects(&spec.namespace, &p.namespace, &p.labels))
        });
        if clash {
            return Err(Failure::PodAntiAffinity {
                topology_key: term.topology_key.clone(),
            });
        }
    }
    memo.affinity_anywhere.resize(spec.pod_affinity.len(), None);
    for (ti, term) in spec.pod_affinity.iter().enumerate() {
        let Some(here) = domain_of(slot, &term.topology_key) else {
            return Err(Failure::PodAffinity {
                topology_key: term.topology_key.clone(),
            });
        };
        let selected_in = |s: &Slot| {
            s.pods
                .iter()
                .any(|p| term.selects(&spec.namespace, &p.namespace, &p.labels))
        };
        // A selected pod here settles it; otherwise only the first of a self-selecting group may go
        // where nothing matches, and only while nothing matches anywhere.
        let ok_here = if term.topology_key == hostname {
            selected_in(slot)
        } else {
            slots
                .iter()
                .any(|s| domain_of(s, &term.topology_key) == Some(here) && selected_in(s))
        };
        if ok_here {
            continue;
        }
        let anywhere =
            *memo.affinity_anywhere[ti].get_or_insert_with(|| slots.iter().any(selected_in));
        if anywhere || !term.selects(&spec.namespace, &spec.namespace, &spec.labels) {
            return Err(Failure::PodAffinity {
                topology_key: term.topology_key.clone(),
            });
        }
    }
    for (ci, c) in spec.topology_spread.iter().enumerate() {
        if c.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway {
            continue;
        }
        let key = &c.topology_key;
        let Some(here) = domain_of(slot, key) else {
            return Err(Failure::TopologySpread {
                topology_key: key.clone(),
                detail: "node has no such label".into(),
            });
        };
        if key == hostname && opens_hosts && eligible(slot_index, slot) {
            // Checked above against this slot alone.
            continue;
        }
        let counts = memo.spread_counts(spec, ci, slots, eligible, new_domains);
        let domains = counts.len() as u32;
        let min = if (key == hostname && opens_hosts) || c.min_domains.is_some_and(|m| domains < m)
        {
            0
        } else {
            counts.values().copied().min().unwrap_or(0)
        };
        let mine = counts.get(here).copied().unwrap_or(0);
        if mine + 1 > min + c.max_skew {
            return Err(Failure::TopologySpread {
                topology_key: key.clone(),
                detail: format!(
                    "{here} would hold {} matching pods, min domain has {min}, maxSkew {}",
                    mine + 1,
                    c.max_skew
                ),
            });
        }
    }
    Ok(())
}

/// Matching pods per eligible domain of a spread constraint (domains with none included as 0).
pub fn spread_counts(
    spec: &PodSpec,
    c: &crate::model::TopologySpread,
    slots: &[Slot],
    eligible: &dyn Fn(usize, &Slot) -> bool,
    new_domains: &NewDomains,
) -> BTreeMap<String, u32> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for d in new_domains.get(&c.topology_key).into_iter().flatten() {
        counts.entry(d.clone()).or_insert(0);
    }
    for (i, s) in slots.iter().enumerate() {
        let Some(domain) = s.labels.get(&c.topology_key) else {
            continue;
        };
        if !eligible(i, s) {
            continue;
        }
        let n = count_matching(&s.pods, |p| {
            p.namespace == spec.namespace && c.selector.matches(&p.labels)
        });
        match counts.get_mut(domain) {
            Some(count) => *count += n,
            None => {
                counts.insert(domain.clone(), n);
            }
        }
    }
    counts
}

/// How many of `pods` satisfy `test`, asked once per run of the same spec: the pods of one workload
/// share one `Arc<PodSpec>` and sit side by side on a slot, so a slot of 50 replicas costs one
/// selector match, not 50.
fn count_matching(pods: &[Arc<PodSpec>], test: impl Fn(&PodSpec) -> bool) -> u32 {
    let mut last: Option<(*const PodSpec, bool)> = None;
    let mut n = 0;
    for p in pods {
        let at = Arc::as_ptr(p);
        let hit = match last {
            Some((seen, hit)) if seen == at => hit,
            _ => {
                let hit = test(p);
                last = Some((at, hit));
                hit
            }
        };
        n += u32::from(hit);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LabelSelector, PodAffinityTerm, Quantity, TaintEffect, TopologySpread};

    fn spec(app: &str) -> PodSpec {
        let mut s = PodSpec::with_requests(
            "default",
            ResourceList::new().with("cpu", Quantity::from_units(1)),
        );
        s.labels.insert("app".into(), app.into());
        s
    }

    fn slot(name: &str, zone: &str, cpu: i64) -> Slot {
        Slot::new(
            name.into(),
            Arc::new(BTreeMap::from([
                (labels::HOSTNAME.to_string(), name.to_string()),
                (labels::ZONE.to_string(), zone.to_string()),
            ])),
            vec![],
            ResourceList::new()
                .with("cpu", Quantity::from_units(cpu))
                .with("pods", Quantity::from_units(110)),
            true,
        )
    }

    fn selector(app: &str) -> LabelSelector {
        LabelSelector::from_labels(&BTreeMap::from([("app".to_string(), app.to_string())]))
    }

    #[test]
    fn resources_and_host_ports() {
        let mut slots = vec![slot("n1", "a", 1)];
        let mut s = spec("web");
        s.host_ports.push(HostPort {
            port: 80,
            protocol: "TCP".into(),
            ip: String::new(),
        });
        let s = Arc::new(s);
        assert!(check_dynamic(&s, 0, &slots, &|_, _| true, &NewDomains::new()).is_ok());
        slots[0].place(&s);
        slots[0].free.cpu = Quantity::from_units(5);
        assert!(matches!(
            check_dynamic(&s, 0, &slots, &|_, _| true, &NewDomains::new()),
            Err(Failure::HostPort(_))
        ));
        slots[0].free.cpu = Quantity::from_millis(500);
        let plain = Arc::new(spec("x"));
        assert!(matches!(
            check_dynamic(&plain, 0, &slots, &|_, _| true, &NewDomains::new()),
            Err(Failure::Resources(_))
        ));
    }

    #[test]
    fn a_zone_anti_affinity_elsewhere_refuses_an_unconstrained_pod_in_its_zone() {
        // db on n1 (zone a) keeps "web" out of zone a; n2 is in zone a too, n3 in zone b.
        let mut slots = vec![slot("n1", "a", 8), slot("n2", "a", 8), slot("n3", "b", 8)];
        let mut db = spec("db");
        db.pod_anti_affinity.push(PodAffinityTerm {
            selector: selector("web"),
            namespaces: vec![],
            topology_key: labels::ZONE.into(),
        });
        let db = Arc::new(db);
        slots[0].place(&db);
        assert_eq!(slots[0].zone_repelling, 1);
        let web = Arc::new(spec("web"));
        let nd = NewDomains::new();
        assert!(matches!(
            check_dynamic(&web, 1, &slots, &|_, _| true, &nd),
            Err(Failure::PodAntiAffinity { .. })
        ));
        assert!(check_dynamic(&web, 2, &slots, &|_, _| true, &nd).is_ok());
        // Once db is gone, zone a is open again.
        slots[0].unplace(&db);
        assert_eq!(slots[0].zone_repelling, 0);
        assert!(slots[0].pods.is_empty());
        assert!(check_dynamic(&web, 1, &slots, &|_, _| true, &nd).is_ok());
    }

    #[test]
    fn anti_affinity_both_directions_and_affinity() {
        let mut slots = vec![slot("n1", "a", 8), slot("n2", "b", 8)];
        let mut lonely = spec("db");
        lonely.pod_anti_affinity.push(PodAffinityTerm {
            selector: selector("db"),
            namespaces: vec![],
            topology_key: labels::HOSTNAME.into(),
        });
        let lonely = Arc::new(lonely);
        slots[0].place(&lonely);
        let nd = NewDomains::new();
        assert!(check_dynamic(&lonely, 0, &slots, &|_, _| true, &nd).is_err());
        assert!(check_dynamic(&lonely, 1, &slots, &|_, _| true, &nd).is_ok());
        // Symmetry: a plain "db" pod may not join the pod whose anti-affinity selects it.
        let plain_db = Arc::new(spec("db"));
        assert!(check_dynamic(&plain_db, 0, &slots, &|_, _| true, &nd).is_err());
        // Affinity to "db" by zone: only zone a qualifies.
        let mut follower = spec("cache");
        follower.pod_affinity.push(PodAffinityTerm {
            selector: selector("db"),
            namespaces: vec![],
            topology_key: labels::ZONE.into(),
        });
        let follower = Arc::new(follower);
        assert!(check_dynamic(&follower, 0, &slots, &|_, _| true, &nd).is_ok());
        assert!(matches!(
            check_dynamic(&follower, 1, &slots, &|_, _| true, &nd),
            Err(Failure::PodAffinity { .. })
        ));
        // Affinity to pods that exist nowhere fails unless the pod selects itself.
        let mut orphan = spec("cache");
        orphan.pod_affinity.push(PodAffinityTerm {
            selector: selector("nothing"),
            namespaces: vec![],
            topology_key: labels::ZONE.into(),
        });
        assert!(check_dynamic(&Arc::new(orphan), 0, &slots, &|_, _| true, &nd).is_err());
    }

    #[test]
    fn topology_spread_max_skew_and_min_domains() {
        let mut slots = vec![slot("n1", "a", 8), slot("n2", "b", 8)];
        let mut s = spec("web");
        s.topology_spread.push(TopologySpread {
            max_skew: 1,
            topology_key: labels::ZONE.into(),
            when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
            selector: selector("web"),
            min_domains: None,
        });
        let s = Arc::new(s);
        let nd = NewDomains::new();
        slots[0].place(&s);
        assert!(check_dynamic(&s, 0, &slots, &|_, _| true, &nd).is_err());
        assert!(check_dynamic(&s, 1, &slots, &|_, _| true, &nd).is_ok());
        // A third zone that new nodes could open keeps the minimum at 0.
        let nd3 = NewDomains::from([(labels::ZONE.to_string(), BTreeSet::from(["c".to_string()]))]);
        slots[1].place(&s);
        assert!(check_dynamic(&s, 1, &slots, &|_, _| true, &nd3).is_err());
        assert!(check_dynamic(&s, 1, &slots, &|_, _| true, &nd).is_ok());
        // minDomains above the domain count treats the minimum as 0.
        let mut strict = (*s).clone();
        strict.topology_spread[0].min_domains = Some(3);
        let strict = Arc::new(strict);
        assert!(check_dynamic(&strict, 1, &slots, &|_, _| true, &nd).is_err());
        // ScheduleAnyway never blocks.
        let mut soft = (*s).clone();
        soft.topology_spread[0].when_unsatisfiable = WhenUnsatisfiable::ScheduleAnyway;
        slots[0].place(&s);
        slots[0].place(&s);
        assert!(check_dynamic(&Arc::new(soft), 0, &slots, &|_, _| true, &nd).is_ok());
    }

    #[test]
    fn counting_matches_asks_once_per_run_of_one_spec() {
        let (web, db) = (Arc::new(spec("web")), Arc::new(spec("db")));
        let pods = vec![web.clone(), web.clone(), db.clone(), web.clone(), db];
        let asked = std::cell::Cell::new(0);
        let n = count_matching(&pods, |p| {
            asked.set(asked.get() + 1);
            p.labels["app"] == "web"
        });
        assert_eq!(n, 3);
        assert_eq!(asked.get(), 4, "runs: web web | db | web | db");
    }

    #[test]
    fn static_rules() {
        let s = spec("web");
        let node = slot("n1", "a", 1);
        let taint = Taint::new("dedicated", Some("gpu"), TaintEffect::NoSchedule);
        assert!(matches!(
            check_static(&s, &node.labels, std::slice::from_ref(&taint)),
            Err(Failure::Taint(_))
        ));
        let mut zoned = s.clone();
        zoned.volume_zones = Some(BTreeSet::from(["b".to_string()]));
        assert!(matches!(
            check_static(&zoned, &node.labels, &[]),
            Err(Failure::VolumeZone { .. })
        ));
        let mut selective = s.clone();
        selective.node_terms = vec![Requirements::from_labels(&BTreeMap::from([(
            labels::ZONE.to_string(),
            "b".to_string(),
        )]))];
        assert!(matches!(
            check_static(&selective, &node.labels, &[]),
            Err(Failure::NodeAffinity(_))
        ));
    }
}
