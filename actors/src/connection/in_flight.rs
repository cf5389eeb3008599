//! The ordered queue of requests awaiting their response. A broker answers the requests of
//! one connection in the order they were sent, so every response must carry the correlation
//! id of the queue's head; anything else means the byte stream is out of step, and the
//! connection is dropped. No socket here: the connection feeds it frames.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use herald::protocol::{self, responses};
use herald::ProtocolError;
use kafka_protocol::messages::ApiKey;

/// How many correlation ids of acks=0 requests are remembered (see
/// [`InFlightQueue::push_unanswered`]).
const UNANSWERED_MEMORY: usize = 64;

/// One request on the wire.
#[derive(Debug)]
pub(crate) struct InFlight<K> {
    pub(crate) correlation_id: i32,
    pub(crate) api: ApiKey,
    pub(crate) version: i16,
    pub(crate) sent_at: Instant,
    /// What the connection needs to handle the response.
    pub(crate) kind: K,
}

/// What a frame from the broker is.
#[derive(Debug)]
pub(crate) enum Answer<K> {
    /// The response to the oldest request, which leaves the queue; its body starts at
    /// `body_at` in the frame.
    Response {
        request: InFlight<K>,
        body_at: usize,
    },
    /// An answer to an acks=0 request, which Kafka brokers never send but some (Tansu) do:
    /// nothing to do, and no reason to drop the connection.
    Ignored { correlation_id: i32 },
    /// Out of step: drop the connection for this reason.
    Broken(String),
}

/// Requests sent and not yet answered, oldest first.
#[derive(Debug)]
pub(crate) struct InFlightQueue<K> {
    queue: VecDeque<InFlight<K>>,
    /// Correlation ids of recent acks=0 requests, oldest first.
    unanswered: VecDeque<i32>,
    next_correlation_id: i32,
}

impl<K> Default for InFlightQueue<K> {
    fn default() -> Self {
        InFlightQueue {
            queue: VecDeque::new(),
            unanswered: VecDeque::new(),
            next_correlation_id: 0,
        }
    }
}

impl<K> InFlightQueue<K> {
    /// Requests awaiting a response.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The correlation id for the next request (ids wrap around; they only need to differ
    /// between requests in flight together).
    pub(crate) fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    /// A request was written and expects a response.
    pub(crate) fn push(&mut self, correlation_id: i32, api: ApiKey, version: i16, kind: K) {
        self.queue.push_back(InFlight {
            correlation_id,
            api,
            version,
            sent_at: Instant::now(),
            kind,
        });
    }

    /// An acks=0 produce request was written: it expects no response, but should one come
    /// (some brokers answer anyway) it must not cost the connection.
    pub(crate) fn push_unanswered(&mut self, correlation_id: i32) {
        if self.unanswered.len() == UNANSWERED_MEMORY {
            self.unanswered.pop_front();
        }
        self.unanswered.push_back(correlation_id);
    }

    /// Matches a frame (without its size prefix) against the oldest request.
    pub(crate) fn answer(&mut self, frame: &[u8]) -> Answer<K> {
        if !self.unanswered.is_empty() && frame.len() >= 4 {
            let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            if let Some(pos) = self.unanswered.iter().position(|&u| u == id) {
                if self.queue.front().is_none_or(|h| h.correlation_id != id) {
                    self.unanswered.drain(..=pos);
                    return Answer::Ignored { correlation_id: id };
                }
            }
        }
        let Some(head) = self.queue.front() else {
            return Answer::Broken("response with no request in flight".into());
        };
        let header_version = protocol::response_header_version(head.api, head.version);
        let (correlation_id, body_at) =
            match responses::decode_response_header(frame, header_version) {
                Ok(h) => h,
                Err(e) => return Answer::Broken(format!("bad response header: {e}")),
            };
        if correlation_id != head.correlation_id {
            let e = ProtocolError::CorrelationMismatch {
                expected: head.correlation_id,
                actual: correlation_id,
            };
            return Answer::Broken(e.to_string());
        }
        let request = self.queue.pop_front().expect("head exists");
        Answer::Response { request, body_at }
    }

    /// Whether the oldest request has waited longer than `timeout` at `now`.
    pub(crate) fn head_timed_out(&self, timeout: Duration, now: Instant) -> bool {
        self.queue
            .front()
            .is_some_and(|head| now.saturating_duration_since(head.sent_at) > timeout)
    }

    /// The connection is gone: takes every request, oldest first, and forgets the acks=0
    /// ids (a new connection starts a new stream).
    pub(crate) fn take_all(&mut self) -> VecDeque<InFlight<K>> {
        self.unanswered.clear();
        std::mem::take(&mut self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v0 response header (Produce v8 uses one): the correlation id, then the body.
    fn frame(correlation_id: i32, body: &[u8]) -> Vec<u8> {
        let mut f = correlation_id.to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    fn send(q: &mut InFlightQueue<&'static str>, what: &'static str) -> i32 {
        let id = q.next_correlation_id();
        q.push(id, ApiKey::Produce, 8, what);
        id
    }

    fn response(q: &mut InFlightQueue<&'static str>, f: &[u8]) -> (&'static str, usize) {
        match q.answer(f) {
            Answer::Response { request, body_at } => (request.kind, body_at),
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn responses_complete_requests_in_order() {
        let mut q = InFlightQueue::default();
        let a = send(&mut q, "a");
        let b = send(&mut q, "b");
        assert_eq!((a, b), (0, 1));
        assert_eq!(q.len(), 2);
        assert_eq!(response(&mut q, &frame(a, b"body")), ("a", 4));
        assert_eq!(response(&mut q, &frame(b, b"")), ("b", 4));
        assert!(q.is_empty());
    }

    #[test]
    fn a_response_out_of_order_breaks_the_stream() {
        let mut q = InFlightQueue::default();
        let _a = send(&mut q, "a");
        let b = send(&mut q, "b");
        let Answer::Broken(why) = q.answer(&frame(b, b"")) else {
            panic!("accepted a response for the second request first");
        };
        assert!(why.contains("correlation"), "{why}");
        // Nothing was taken off the queue.
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_response_with_nothing_in_flight_or_a_short_header_breaks_the_stream() {
        let mut q = InFlightQueue::<&str>::default();
        assert!(matches!(q.answer(&frame(0, b"")), Answer::Broken(_)));
        send(&mut q, "a");
        let Answer::Broken(why) = q.answer(&[0, 0]) else {
            panic!("accepted a truncated header");
        };
        assert!(why.starts_with("bad response header"), "{why}");
    }

    #[test]
    fn answers_to_acks0_requests_are_ignored_unless_the_head_expects_them() {
        let mut q = InFlightQueue::default();
        let fire_and_forget = q.next_correlation_id();
        q.push_unanswered(fire_and_forget);
        let a = send(&mut q, "a");
        assert!(matches!(
            q.answer(&frame(fire_and_forget, b"")),
            Answer::Ignored { .. }
        ));
        // Answered once: the same id again is out of step.
        assert!(matches!(
            q.answer(&frame(fire_and_forget, b"")),
            Answer::Broken(_)
        ));
        assert_eq!(response(&mut q, &frame(a, b"")).0, "a");

        // Correlation ids wrap: a request in flight can carry the id of a remembered acks=0
        // request. Its answer is the request's, not one to ignore.
        let mut q = InFlightQueue::default();
        q.push_unanswered(7);
        q.push(7, ApiKey::Produce, 8, "wrapped");
        assert_eq!(response(&mut q, &frame(7, b"")).0, "wrapped");
    }

    #[test]
    fn ignoring_an_acks0_answer_forgets_the_older_ones() {
        let mut q = InFlightQueue::<&str>::default();
        let first = q.next_correlation_id();
        let second = q.next_correlation_id();
        q.push_unanswered(first);
        q.push_unanswered(second);
        assert!(matches!(
            q.answer(&frame(second, b"")),
            Answer::Ignored { .. }
        ));
        assert!(matches!(q.answer(&frame(first, b"")), Answer::Broken(_)));
    }

    #[test]
    fn only_the_latest_acks0_ids_are_remembered() {
        let mut q = InFlightQueue::<&str>::default();
        for _ in 0..=UNANSWERED_MEMORY {
            let id = q.next_correlation_id();
            q.push_unanswered(id);
        }
        // The first one was forgotten; the second is still known.
        assert!(matches!(q.answer(&frame(0, b"")), Answer::Broken(_)));
        assert!(matches!(q.answer(&frame(1, b"")), Answer::Ignored { .. }));
    }

    #[test]
    fn correlation_ids_wrap_around() {
        let mut q = InFlightQueue::<&str> {
            next_correlation_id: i32::MAX,
            ..Default::default()
        };
        assert_eq!(q.next_correlation_id(), i32::MAX);
        assert_eq!(q.next_correlation_id(), i32::MIN);
    }

    #[test]
    fn the_head_times_out() {
        let mut q = InFlightQueue::default();
        let timeout = Duration::from_secs(30);
        assert!(!q.head_timed_out(timeout, Instant::now()));
        send(&mut q, "a");
        let now = Instant::now();
        assert!(!q.head_timed_out(timeout, now));
        assert!(q.head_timed_out(timeout, now + timeout + Duration::from_millis(1)));
    }

    #[test]
    fn take_all_empties_the_queue_and_forgets_acks0_ids() {
        let mut q = InFlightQueue::default();
        let fire_and_forget = q.next_correlation_id();
        q.push_unanswered(fire_and_forget);
        send(&mut q, "a");
        send(&mut q, "b");
        let taken: Vec<_> = q.take_all().into_iter().map(|r| r.kind).collect();
        assert_eq!(taken, ["a", "b"]);
        assert!(q.is_empty());
        assert!(matches!(
            q.answer(&frame(fire_and_forget, b"")),
            Answer::Broken(_)
        ));
        // Ids keep counting across connections.
        assert_eq!(q.next_correlation_id(), 3);
    }
}
