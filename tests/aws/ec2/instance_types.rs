//! Instance types read from moto's DescribeInstanceTypes and DescribeInstanceTypeOfferings (the
//! real catalog and the real per-zone offerings of us-east-1): allocatable and the well-known labels
//! computed from them, against the embedded figures, which come from Karpenter's published table.

use std::collections::{BTreeMap, BTreeSet};

use kestrel_core::model::catalog;
use kestrel_core::model::quantity::Quantity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computed_types_agree_with_the_embedded_catalog() -> anyhow::Result<()> {
    let moto = kestrel_aws_tests::MotoServer::start()?;
    let client = aws_sdk_ec2::Client::new(&crate::fixture::sdk_config(&moto).await);
    let infos = kestrel_aws::ec2::instance_types::describe(&client).await?;
    assert!(infos.len() > 1000, "{} types", infos.len());
    let embedded = catalog::ec2_instance_types().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut compared, mut agree) = (0, 0);
    let mut differ = Vec::new();
    // Per label: (types both carry it and agree, types where either carries it).
    let mut by_label: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    // Per label, a few (type, embedded, computed) that differ.
    let mut examples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut labels_agree = 0;
    for t in embedded {
        let Some(info) = infos
            .iter()
            .find(|i| i.instance_type().map(|n| n.as_str()) == Some(t.name.as_str()))
        else {
            continue;
        };
        compared += 1;
        let f = kestrel_aws::ec2::instance_types::TypeFacts::from_sdk(info)
            .ok_or_else(|| anyhow::anyhow!("{} incompletely described", t.name))?;
        let a = f.allocatable(None);
        let computed = [
            ("cpu", Quantity::parse(&format!("{}m", a.cpu_millis))?),
            ("memory", Quantity::parse(&format!("{}Mi", a.memory_mib))?),
            ("pods", Quantity::parse(&a.pods.to_string())?),
            (
                "ephemeral-storage",
                Quantity::parse(&format!("{}Mi", a.ephemeral_mib))?,
            ),
        ];
        if computed.iter().all(|(r, q)| t.allocatable.get(r) == *q) {
            agree += 1;
        } else if differ.len() < 5 {
            differ.push(t.name.clone());
        }
        // The whole type as the controller plans with it: every label, every resource.
        let typed = kestrel_aws::ec2::instance_types::instance_type(info, Some(t))
            .ok_or_else(|| anyhow::anyhow!("{} not typed", t.name))?;
        let mut all = true;
        let keys: BTreeSet<&String> = t.labels.keys().chain(typed.labels.keys()).collect();
        for key in keys {
            let entry = by_label.entry(key.to_string()).or_default();
            let same = t.labels.get(key) == typed.labels.get(key);
            entry.0 += usize::from(same);
            let shown = examples.entry(key.to_string()).or_default();
            if !same && shown.len() < 3 {
                shown.push(format!(
                    "{} {:?} computed {:?}",
                    t.name,
                    t.labels.get(key),
                    typed.labels.get(key)
                ));
            }
            entry.1 += 1;
            all &= same;
        }
        labels_agree += usize::from(all);
        for (resource, q) in t.allocatable.iter() {
            if !["cpu", "memory", "pods", "ephemeral-storage"].contains(&resource) {
                assert_eq!(typed.allocatable.get(resource), q, "{} {resource}", t.name);
            }
        }
    }
    eprintln!(
        "allocatable: {agree} of {compared} catalog types agree exactly; e.g. differing: {differ:?}"
    );
    eprintln!("labels: all agree on {labels_agree} of {compared} types");
    for (key, (same, of)) in &by_label {
        eprintln!("  {key}: {same} of {of} agree {:?}", examples[key]);
    }
    assert!(compared > 1000);
    assert!(agree * 100 >= compared * 90, "{agree} of {compared} agree");
    // Each label agrees on nine types in ten at least (the network bandwidth is EC2's baseline
    // where Karpenter's generated table has none for older generations).
    for (key, (same, of)) in &by_label {
        assert!(same * 10 >= of * 9, "{key}: {same} of {of} agree");
    }
    assert!(
        labels_agree * 100 >= compared * 85,
        "labels agree on {labels_agree} of {compared}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_described_region_offers_each_type_only_where_ec2_does() -> anyhow::Result<()> {
    let moto = kestrel_aws_tests::MotoServer::start()?;
    let client = aws_sdk_ec2::Client::new(&crate::fixture::sdk_config(&moto).await);
    let described = kestrel_aws::ec2::instance_types::described_types(&client).await?;
    let zones: Vec<String> = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"]
        .map(String::from)
        .to_vec();
    // A type us-east-1 offers in some of these zones only (real data: not every type everywhere).
    let partial = described
        .zones
        .iter()
        .find(|(t, z)| {
            z.iter().any(|z| zones.contains(z))
                && !zones.iter().all(|zone| z.contains(zone))
                && described.types.iter().any(|d| &d.name == *t)
                && catalog::ec2_on_demand_prices().is_ok_and(|p| p.contains_key(*t))
        })
        .map(|(t, z)| (t.clone(), z.clone()))
        .ok_or_else(|| anyhow::anyhow!("every priced type is offered in every zone"))?;
    let (core, infos, _) =
        kestrel_core::controller::assemble::described_region(&described, &[], &zones)?;
    let info = infos
        .iter()
        .find(|i| i.name == partial.0)
        .ok_or_else(|| anyhow::anyhow!("{} missing", partial.0))?;
    for zone in &zones {
        assert_eq!(
            info.offered_in(zone),
            partial.1.contains(zone),
            "{} {zone}",
            partial.0
        );
    }
    let offered: Vec<_> = core
        .offerings
        .iter()
        .filter(|o| core.instance_types[o.instance_type].name == partial.0)
        .map(|o| o.zone.clone())
        .collect();
    assert!(offered.iter().all(|z| partial.1.contains(z)), "{offered:?}");
    eprintln!(
        "{} described types, {} priced and offered in {zones:?}; e.g. {} only in {:?}",
        described.types.len(),
        infos.len(),
        partial.0,
        partial.1
    );
    Ok(())
}
