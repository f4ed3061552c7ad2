//! Aggregate groups (v1 §2.16): one endpoint over several standard groups of the same channel.
//! A request picks one member by smooth weighted round-robin, skipping members without an active
//! key; everything after that (keys, upstreams, rewrites, retries) uses the member.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::snapshot::Group;
use crate::upstream::target::smooth_wrr_schedule;

#[derive(Debug)]
pub struct AggregateMember {
    pub group: Arc<Group>,
    pub weight: u32,
}

#[derive(Debug, Default)]
pub struct Aggregate {
    /// Members with weight > 0 (weight 0 = temporarily disabled, as in v1).
    members: Box<[AggregateMember]>,
    /// One period of the smooth WRR sequence over `members`, walked by a shared counter.
    schedule: Box<[u16]>,
    next: AtomicUsize,
}

impl Aggregate {
    pub fn new(members: Vec<AggregateMember>) -> Self {
        let members: Box<[AggregateMember]> =
            members.into_iter().filter(|m| m.weight > 0).collect();
        let weights: Vec<u64> = members.iter().map(|m| m.weight as u64).collect();
        Self {
            schedule: smooth_wrr_schedule(&weights),
            members,
            next: AtomicUsize::new(0),
        }
    }

    pub fn members(&self) -> &[AggregateMember] {
        &self.members
    }

    /// The member for this request: the next in the weighted sequence that has an active key;
    /// each member is looked at once. `None` when no member has one.
    pub fn pick(&self) -> Option<&Arc<Group>> {
        let period = self.schedule.len();
        if period == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut seen = vec![false; self.members.len()];
        for i in 0..period {
            let index = self.schedule[start.wrapping_add(i) % period] as usize;
            if std::mem::replace(&mut seen[index], true) {
                continue;
            }
            let member = &self.members[index].group;
            if member.keys.has_active() {
                return Some(member);
            }
        }
        None
    }
}
