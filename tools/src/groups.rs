//! `strata groups list|describe`: the group APIs through [`strata_client`].
//!
//! `describe` asks DescribeGroups (members, assignments), OffsetFetch (committed offsets) and
//! ListOffsets (log end offsets) and prints, per partition, the committed offset, the end and
//! the lag (end − committed; `-` when nothing is committed).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_client::consumer::decode_assignment;
use strata_client::{Conn, error_name as err_name};

/// Arguments of `strata groups`.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupsArgs {
    #[command(subcommand)]
    pub command: GroupsCommand,
    /// HOST:PORT of the broker.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum GroupsCommand {
    /// Every group with its state and protocol type.
    List,
    /// A group's members, their assignments, committed offsets and lag per partition.
    Describe { group: String },
}

pub fn run(args: &GroupsArgs) -> Result<std::process::ExitCode> {
    let mut c = Conn::connect(&args.bootstrap, "strata-groups")?;
    match &args.command {
        GroupsCommand::List => {
            let r = c.call(&ListGroupsRequest::default(), 4)?;
            if r.error_code != 0 {
                bail!("ListGroups: {}", err_name(r.error_code));
            }
            println!("{:<40} {:<20} PROTOCOL_TYPE", "GROUP", "STATE");
            for g in r.groups {
                println!(
                    "{:<40} {:<20} {}",
                    g.group_id.0.as_str(),
                    g.group_state.as_str(),
                    g.protocol_type.as_str()
                );
            }
        }
        GroupsCommand::Describe { group } => describe(&mut c, group)?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn describe(c: &mut Conn, group: &str) -> Result<()> {
    let gid = GroupId(StrBytes::from_string(group.to_string()));
    let d = c.call(
        &DescribeGroupsRequest::default().with_groups(vec![gid.clone()]),
        5,
    )?;
    let g = d
        .groups
        .into_iter()
        .next()
        .context("empty DescribeGroups answer")?;
    if g.error_code != 0 {
        bail!("DescribeGroups {group}: {}", err_name(g.error_code));
    }
    println!(
        "group {group}: state {} protocol_type {:?} protocol {:?} members {}",
        g.group_state.as_str(),
        g.protocol_type.as_str(),
        g.protocol_data.as_str(),
        g.members.len()
    );
    // (topic, partition) → member id.
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &g.members {
        let assignment = decode_assignment(&m.member_assignment);
        let shown = match &assignment {
            Some(a) => {
                let parts: Vec<String> = a
                    .topics
                    .iter()
                    .map(|(t, ps)| {
                        let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                        format!("{t}[{}]", ps.join(","))
                    })
                    .collect();
                format!("v{} {}", a.version, parts.join(" "))
            }
            None if m.member_assignment.is_empty() => "none".to_string(),
            None => format!("{} undecoded bytes", m.member_assignment.len()),
        };
        println!(
            "  member {} client_id {} instance {} assignment: {shown}",
            m.member_id.as_str(),
            m.client_id.as_str(),
            m.group_instance_id.as_ref().map_or("-", |i| i.as_str()),
        );
        for (t, ps) in assignment.map(|a| a.topics).unwrap_or_default() {
            for p in ps {
                owner.insert((t.clone(), p), m.member_id.to_string());
            }
        }
    }
    let f = c.call(
        &OffsetFetchRequest::default()
            .with_group_id(gid)
            .with_topics(None),
        7,
    )?;
    if f.error_code != 0 {
        bail!("OffsetFetch {group}: {}", err_name(f.error_code));
    }
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in f.topics {
        for p in t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                committed.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in owner.keys().chain(committed.keys()) {
        let ps = partitions.entry(t.clone()).or_default();
        if !ps.contains(p) {
            ps.push(*p);
        }
    }
    let lo = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            partitions
                .iter()
                .map(|(t, ps)| {
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.clone())))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    list_offsets_request::ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    if !partitions.is_empty() {
        for t in c.call(&lo, 7)?.topics {
            for p in t.partitions {
                if p.error_code == 0 {
                    ends.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
    }
    println!(
        "  {:<30} {:>9} {:>12} {:>12} {:>8}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    for (t, ps) in &mut partitions {
        ps.sort_unstable();
        for p in ps.iter() {
            let key = (t.clone(), *p);
            let c = committed.get(&key);
            let e = ends.get(&key);
            let dash = || "-".to_string();
            println!(
                "  {:<30} {:>9} {:>12} {:>12} {:>8}  {}",
                t,
                p,
                c.map_or_else(dash, i64::to_string),
                e.map_or_else(dash, i64::to_string),
                match (c, e) {
                    (Some(c), Some(e)) => (e - c).max(0).to_string(),
                    _ => dash(),
                },
                owner.get(&key).map_or("-", String::as_str)
            );
        }
    }
    Ok(())
}
