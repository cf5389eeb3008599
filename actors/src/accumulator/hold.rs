//! What keeps a partition's first unsent batch from going out: the checks `drain` and
//! `send_ready` make, in their order, as one pure function of what the accumulator knows,
//! so that the warning logged when such a batch expires names the wait that outlived
//! `delivery.timeout.ms` (a refusing broker, an absent one, a lost wake-up).

use std::fmt;
use std::time::{Duration, Instant};

use super::Identity;

/// What the accumulator knows when its first unsent batch expires.
#[derive(Debug)]
pub(super) struct Facts {
    /// Transactional, and the partition not yet added to the open transaction.
    pub(super) awaiting_transaction: bool,
    /// The producer identity batches must carry now.
    pub(super) identity: Identity,
    /// The identity the partition's sequences belong to.
    pub(super) epoch: Option<(i64, i16)>,
    /// The partition's leader, when it has one with a connection.
    pub(super) leader: Option<i32>,
    /// The broker whose connection holds the batches in flight.
    pub(super) in_flight_leader: Option<i32>,
    pub(super) in_flight: usize,
    pub(super) in_flight_limit: usize,
    /// The first batch is still being compressed.
    pub(super) sealing: bool,
    /// The first batch waits out a retry backoff.
    pub(super) backing_off: bool,
}

/// The first check that holds the batch back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Transaction,
    ProducerId,
    IdempotenceFailed,
    EpochChange {
        producer_id: i64,
        epoch: i16,
        in_flight: usize,
    },
    NoLeader,
    OldLeader {
        in_flight: usize,
        old: Option<i32>,
        leader: i32,
    },
    InFlight {
        in_flight: usize,
        leader: i32,
    },
    Compression,
    Backoff,
    /// Nothing did: it could have gone, and nothing woke the accumulator to send it.
    Nothing {
        leader: i32,
    },
}

/// The first of `drain`'s and `send_ready`'s checks that `facts` fail.
pub(super) fn first_hold(facts: &Facts) -> Hold {
    if facts.awaiting_transaction {
        return Hold::Transaction;
    }
    match &facts.identity {
        Identity::Pending => return Hold::ProducerId,
        Identity::Failed(_) => return Hold::IdempotenceFailed,
        Identity::Ready { producer_id, epoch } if facts.epoch != Some((*producer_id, *epoch)) => {
            return Hold::EpochChange {
                producer_id: *producer_id,
                epoch: *epoch,
                in_flight: facts.in_flight,
            };
        }
        Identity::Off | Identity::Ready { .. } => {}
    }
    let Some(leader) = facts.leader else {
        return Hold::NoLeader;
    };
    if facts.in_flight > 0 && facts.in_flight_leader != Some(leader) {
        return Hold::OldLeader {
            in_flight: facts.in_flight,
            old: facts.in_flight_leader,
            leader,
        };
    }
    if facts.in_flight >= facts.in_flight_limit {
        return Hold::InFlight {
            in_flight: facts.in_flight,
            leader,
        };
    }
    if facts.sealing {
        return Hold::Compression;
    }
    if facts.backing_off {
        return Hold::Backoff;
    }
    Hold::Nothing { leader }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Transaction => f.write_str("the partition is not added to the transaction yet"),
            Hold::ProducerId => f.write_str("waiting for a producer id"),
            Hold::IdempotenceFailed => f.write_str("idempotence failed"),
            Hold::EpochChange {
                producer_id,
                epoch,
                in_flight,
            } => write!(
                f,
                "an epoch change to {producer_id}/{epoch}, with {in_flight} batches in flight"
            ),
            Hold::NoLeader => f.write_str("no leader with a connection"),
            Hold::OldLeader {
                in_flight,
                old,
                leader,
            } => match old {
                Some(old) => write!(
                    f,
                    "{in_flight} batches in flight to broker {old}, the leader now being {leader}"
                ),
                None => write!(
                    f,
                    "{in_flight} batches in flight, the leader now being {leader}"
                ),
            },
            Hold::InFlight { in_flight, leader } => {
                write!(f, "{in_flight} batches in flight to broker {leader}")
            }
            Hold::Compression => f.write_str("its compression"),
            Hold::Backoff => f.write_str("its retry backoff"),
            Hold::Nothing { leader } => write!(
                f,
                "nothing: broker {leader} could take it, but no wake-up came"
            ),
        }
    }
}

/// When the accumulator wakes next for its first unsent batch's backoff and for expiries.
/// The backoff's end counts while it is ahead. Once it has passed and the batch is still
/// first, drain found it held by something else (an epoch change, no leader, full in-flight
/// slots, the old leader's answers, the transaction's AddPartitions), whose end arrives as a
/// message; waking at the past instant again would fire at every timer tick, about once a
/// millisecond, for as long as the hold lasts. A look every `look_again` (retry.backoff.ms)
/// stays, for a hold that ends without a message.
pub(super) fn next_wake(
    retry_at: Option<Instant>,
    expiry: Option<Instant>,
    now: Instant,
    look_again: Duration,
) -> Option<Instant> {
    let retry = retry_at.map(|at| if at > now { at } else { now + look_again });
    match (retry, expiry) {
        (Some(r), Some(e)) => Some(r.min(e)),
        (r, e) => r.or(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch that could go now: idempotent, identity current, leader 1 connected, a slot
    /// free.
    fn free() -> Facts {
        Facts {
            awaiting_transaction: false,
            identity: Identity::Ready {
                producer_id: 7,
                epoch: 0,
            },
            epoch: Some((7, 0)),
            leader: Some(1),
            in_flight_leader: Some(1),
            in_flight: 0,
            in_flight_limit: 1,
            sealing: false,
            backing_off: false,
        }
    }

    #[test]
    fn nothing_holds_a_batch_that_could_go() {
        assert_eq!(first_hold(&free()), Hold::Nothing { leader: 1 });
        let plain = Facts {
            identity: Identity::Off,
            epoch: None,
            ..free()
        };
        assert_eq!(first_hold(&plain), Hold::Nothing { leader: 1 });
        assert_eq!(
            Hold::Nothing { leader: 1 }.to_string(),
            "nothing: broker 1 could take it, but no wake-up came"
        );
    }

    #[test]
    fn each_check_holds_in_drain_order() {
        let cases = [
            (
                Facts {
                    backing_off: true,
                    ..free()
                },
                Hold::Backoff,
            ),
            (
                Facts {
                    sealing: true,
                    backing_off: true,
                    ..free()
                },
                Hold::Compression,
            ),
            (
                Facts {
                    in_flight: 1,
                    sealing: true,
                    ..free()
                },
                Hold::InFlight {
                    in_flight: 1,
                    leader: 1,
                },
            ),
            (
                Facts {
                    in_flight: 1,
                    in_flight_leader: Some(2),
                    ..free()
                },
                Hold::OldLeader {
                    in_flight: 1,
                    old: Some(2),
                    leader: 1,
                },
            ),
            (
                Facts {
                    leader: None,
                    in_flight: 1,
                    ..free()
                },
                Hold::NoLeader,
            ),
            (
                Facts {
                    epoch: Some((7, 1)),
                    leader: None,
                    ..free()
                },
                Hold::EpochChange {
                    producer_id: 7,
                    epoch: 0,
                    in_flight: 0,
                },
            ),
            (
                Facts {
                    identity: Identity::Pending,
                    epoch: None,
                    ..free()
                },
                Hold::ProducerId,
            ),
            (
                Facts {
                    identity: Identity::Failed("refused".into()),
                    ..free()
                },
                Hold::IdempotenceFailed,
            ),
            (
                Facts {
                    awaiting_transaction: true,
                    identity: Identity::Pending,
                    ..free()
                },
                Hold::Transaction,
            ),
        ];
        for (facts, hold) in cases {
            assert_eq!(first_hold(&facts), hold, "{facts:?}");
        }
    }

    #[test]
    fn the_warning_names_the_wait() {
        assert_eq!(Hold::Backoff.to_string(), "its retry backoff");
        assert_eq!(
            Hold::OldLeader {
                in_flight: 2,
                old: Some(3),
                leader: 1
            }
            .to_string(),
            "2 batches in flight to broker 3, the leader now being 1"
        );
        assert_eq!(
            Hold::EpochChange {
                producer_id: 7,
                epoch: 1,
                in_flight: 0
            }
            .to_string(),
            "an epoch change to 7/1, with 0 batches in flight"
        );
    }

    /// A backoff that has ended with its batch still first is not a deadline to wake at again
    /// (it would fire at every timer tick); expiries and backoffs still ahead are.
    #[test]
    fn a_passed_backoff_is_looked_at_again_after_the_backoff_not_at_once() {
        let now = Instant::now();
        let backoff = Duration::from_millis(100);
        let ahead = now + Duration::from_millis(30);
        assert_eq!(next_wake(Some(ahead), None, now, backoff), Some(ahead));
        let passed = now - Duration::from_millis(5);
        assert_eq!(
            next_wake(Some(passed), None, now, backoff),
            Some(now + backoff)
        );
        let expiry = now + Duration::from_millis(20);
        assert_eq!(
            next_wake(Some(passed), Some(expiry), now, backoff),
            Some(expiry)
        );
        let past_expiry = now - Duration::from_millis(1);
        assert_eq!(
            next_wake(Some(passed), Some(past_expiry), now, backoff),
            Some(past_expiry),
            "an expiry that is due fires at once"
        );
        assert_eq!(next_wake(None, None, now, backoff), None);
    }
}
