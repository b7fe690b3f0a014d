//! Applying the metadata image to the broker's disk: every topic of the image gets its local
//! form (the partitions placed on this broker opened, the others known as elsewhere), and a
//! topic the image deleted is deleted here too, also when this broker was down at the time
//! (the image remembers deleted ids). A local topic the image does not know yet is left
//! alone: this node may not have applied its creation yet.
//!
//! `__consumer_offsets` is hosted and replicated like any topic; in addition, the leader of
//! each of its partitions is the coordinator of that partition's groups, so applying the image
//! loads the offsets of a partition this broker has just become the leader of, and drops them
//! when it stops leading it (`crate::broker::groups::Coordinator::offsets_partition_led`).

use std::sync::Arc;

use strata_storage::meta::TopicMeta;
use tokio::sync::watch;

use super::controller::OFFSETS_TOPIC;
use super::image::MetadataImage;
use super::link::Link;
use crate::broker::Broker;
use crate::broker::replica::Assignment;

/// Follows the link's image until `stop`, applying each new one (blocking work on the
/// blocking pool, one image at a time; images that arrive meanwhile are folded into the next).
pub async fn follow(broker: Arc<Broker>, link: Arc<Link>, mut stop: watch::Receiver<bool>) {
    let mut rx = link.subscribe();
    loop {
        let image = rx.borrow_and_update().clone();
        let (b, me) = (broker.clone(), link.node_id);
        if let Err(e) = tokio::task::spawn_blocking(move || apply(&b, &image, me)).await {
            tracing::error!(error = %e, "applying the metadata image failed");
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// The leader's side of ISR changes (Kafka's `maybeShrinkIsr`/`maybeExpandIsr`, sent as
/// AlterPartition): every half `replica.lag.time.max.ms`, each partition this broker leads
/// proposes the ISR its followers' progress makes, until `stop`.
pub async fn isr_loop(
    broker: Arc<Broker>,
    link: Arc<Link>,
    lag_max: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    // Shrinking waits for `lag_max` anyway; a short tick lets a caught-up follower rejoin
    // soon (Kafka expands the ISR on the follower's fetch).
    let tick = (lag_max / 2).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_millis(500),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        for t in broker.topics() {
            for p in &t.partitions {
                let Some((leader_epoch, isr)) = p.isr_change(lag_max) else {
                    continue;
                };
                let req = super::rpc::Request::AlterPartition {
                    broker: link.node_id,
                    topic: t.name.clone(),
                    partition: p.index,
                    leader_epoch,
                    isr: isr.clone(),
                };
                // A stop does not wait for the asks still to come (with the controller gone,
                // each would take its whole timeout).
                let answer = tokio::select! {
                    a = link.ask(&req, std::time::Duration::from_secs(5)) => a,
                    _ = stop.changed() => return,
                };
                match answer {
                    Ok(super::rpc::Response::Done(Ok(()))) => {
                        tracing::info!(topic = %t.name, partition = p.index, ?isr, "ISR change committed");
                    }
                    Ok(other) => {
                        tracing::debug!(topic = %t.name, partition = p.index, answer = ?other, "ISR change refused");
                    }
                    Err(e) => tracing::debug!(error = %e.message, "ISR change not delivered"),
                }
            }
        }
    }
}

/// Brings the broker's local topics in line with `image` (node `me`).
pub fn apply(broker: &Broker, image: &MetadataImage, me: i32) {
    for t in image.topics.values() {
        let hosted: Vec<i32> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.replicas.contains(&me))
            .map(|(i, _)| i32::try_from(i).unwrap_or(i32::MAX))
            .collect();
        let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
        if let Some(local) = broker.topic(&t.name) {
            if local.id != t.id_value() {
                // Deleted and created again while this broker was away.
                if let Err(e) = broker.delete_topic(&t.name) {
                    tracing::error!(topic = %t.name, error = %e, "removing the old topic of a re-created name failed");
                    continue;
                }
            } else {
                let local_hosted: Vec<i32> = local
                    .partitions
                    .iter()
                    .filter(|p| p.is_hosted())
                    .map(|p| p.index)
                    .collect();
                if local.partitions.len() == t.partitions.len() && local_hosted == hosted {
                    if local.config.overrides != t.configs
                        && let Err(e) =
                            broker.alter_topic_configs(&t.name, t.configs.clone(), false)
                    {
                        tracing::error!(topic = %t.name, error = %e, "applying a topic's new configs failed");
                    }
                    continue;
                }
            }
        }
        let meta = TopicMeta {
            name: t.name.clone(),
            partitions: count,
            id: t.id.clone(),
            configs: t.configs.clone(),
            hosted: Some(hosted),
        };
        if let Err(e) = broker.host_topic(&meta) {
            tracing::error!(topic = %t.name, error = %e, "placing a topic on this broker failed");
        }
    }
    // Each held partition's leader, epoch and ISR: who appends (the leader, stamping its
    // epoch) and who fetches from whom.
    for t in image.topics.values() {
        let Some(local) = broker.topic(&t.name).filter(|l| l.id == t.id_value()) else {
            continue;
        };
        for (p, info) in local.partitions.iter().zip(&t.partitions) {
            if p.is_hosted() {
                let a = Assignment {
                    me,
                    leader: info.leader,
                    leader_epoch: info.leader_epoch,
                    replicas: info.replicas.clone(),
                    isr: info.isr.clone(),
                };
                if p.assignment().as_ref() != Some(&a) {
                    p.assign(a);
                }
            }
        }
    }
    // The coordinator's side of `__consumer_offsets`: load what this broker now leads.
    if let Some(local) = broker.topic(OFFSETS_TOPIC) {
        let n = i32::try_from(local.partitions.len()).unwrap_or(i32::MAX);
        for p in &local.partitions {
            let led = p
                .assignment()
                .filter(|a| a.leader == me)
                .and_then(|a| p.log().ok().map(|log| (a.leader_epoch, log)));
            broker.groups.offsets_partition_led(
                p.index,
                n,
                led.as_ref().map(|(e, log)| (*e, log.as_ref())),
            );
        }
    }
    for local in broker.topics() {
        let id = format!("{:032x}", local.id);
        if image.deleted_topic_ids.contains(&id) {
            match broker.delete_topic(&local.name) {
                Ok(()) => tracing::info!(topic = %local.name, "topic deleted by the controller"),
                Err(e) => {
                    tracing::error!(topic = %local.name, error = %e, "deleting a topic the controller deleted failed")
                }
            }
        }
    }
}
