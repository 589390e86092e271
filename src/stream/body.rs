//! The response body of a streamed exchange: upstream bytes re-framed by the
//! SSE relay and passed on as they arrive. Its end callback runs exactly once:
//! at the end of the stream, on an upstream error, or when the client goes
//! away and the body is dropped (which also drops, and so cancels, the
//! upstream request). An upstream that sends nothing for the provider's
//! timeout ends the stream as failed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use tokio::time::Sleep;

#[cfg(test)]
use super::sse::{AnthropicRelay, OpenAiRelay};
use super::sse::{Framer, Relay, Tokens};
use crate::protocol::translate::Wire;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The provider finished the stream.
    Complete,
    /// The client went away first.
    Cancelled,
    /// The provider's stream broke.
    UpstreamFailed,
}

/// Why cordon ended a stream as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The provider's stream broke.
    Broke,
    /// The provider sent nothing for its timeout.
    Stalled,
    /// One event from the provider outgrew the limit.
    EventTooLarge,
    /// The stream ran past its time limit.
    TooLong,
}

impl Failure {
    /// cordon's words for the client's last event.
    fn words(self) -> &'static str {
        match self {
            Failure::Broke => "the provider's stream broke",
            Failure::Stalled => "the provider's stream stalled",
            Failure::EventTooLarge => "an event from the provider was too large",
            Failure::TooLong => "the stream ran past its time limit",
        }
    }
}

/// What the end callback learns.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub how: StreamEnd,
    /// Why, when cordon ended it as failed.
    pub failure: Option<Failure>,
    pub tokens: Tokens,
    /// When the first content event was handed to the client.
    pub first_content_at: Option<Instant>,
    pub at: Instant,
}

type OnEnd = Box<dyn FnOnce(Ended) + Send>;

/// A relayed SSE body, reading the upstream body `B`.
pub struct RelayBody<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Taken only when the client leaves after the finish (see `Drop`).
    upstream: Option<B>,
    framer: Framer,
    relay: Box<dyn Relay>,
    /// The client's protocol, in which a failure is told as a last event.
    client: Wire,
    /// The next frame for the client: the events gathered last, joined.
    ready: Option<Bytes>,
    scratch: Vec<Bytes>,
    done: bool,
    first_content_at: Option<Instant>,
    on_end: Option<OnEnd>,
    idle: Option<Idle>,
    /// An upstream failure, reported once the events before it are out.
    failure: Option<Failure>,
    /// Set once the stream has failed: the end callback reports it.
    failed: Option<Failure>,
    /// When the whole stream must have ended.
    deadline: Option<Deadline>,
}

/// The stream's time limit: checked against the clock read each chunk
/// already takes, and by a timer while upstream is silent.
struct Deadline {
    at: tokio::time::Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

/// The longest event accepted from upstream by default.
pub const DEFAULT_MAX_EVENT: usize = 1 << 20;

/// Events gathered beyond this many bytes leave without waiting for more.
const MAX_GATHER: usize = 32 * 1024;

/// The longest silence allowed from upstream. One timer per stream, armed
/// when upstream first has nothing to give and moved only when it fires, so
/// a chunk costs a clock read rather than a timer update.
struct Idle {
    limit: Duration,
    last: tokio::time::Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Idle {
    /// True once upstream has been silent for `limit`. The timer is armed
    /// for the end of the silence as it was when armed; when it fires early
    /// (chunks came since), it is moved to the end of the current silence.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let (last, limit) = (self.last, self.limit);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(last + limit)));
        while timer.as_mut().poll(cx).is_ready() {
            let deadline = last + limit;
            if deadline <= timer.deadline() {
                return true;
            }
            timer.as_mut().reset(deadline);
        }
        false
    }
}

impl<B> RelayBody<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Relays `upstream` through `relay` to a client speaking `client`.
    pub fn new(
        upstream: B,
        relay: impl Relay + 'static,
        client: Wire,
        on_end: impl FnOnce(Ended) + Send + 'static,
    ) -> Self {
        Self::boxed(upstream, Box::new(relay), client, on_end)
    }

    /// As [`RelayBody::new`], with the relay chosen at run time.
    pub fn boxed(
        upstream: B,
        relay: Box<dyn Relay>,
        client: Wire,
        on_end: impl FnOnce(Ended) + Send + 'static,
    ) -> Self {
        Self {
            upstream: Some(upstream),
            framer: Framer::new(DEFAULT_MAX_EVENT),
            relay,
            client,
            ready: None,
            scratch: Vec::new(),
            done: false,
            first_content_at: None,
            on_end: Some(Box::new(on_end)),
            idle: None,
            failure: None,
            failed: None,
            deadline: None,
        }
    }

    /// Fails the stream once it has run for `limit`.
    pub fn with_max_duration(mut self, limit: Duration) -> Self {
        self.deadline = Some(Deadline {
            at: tokio::time::Instant::now() + limit,
            timer: None,
        });
        self
    }

    /// Fails the stream when one upstream event grows past `bytes`.
    pub fn with_max_event(mut self, bytes: usize) -> Self {
        self.framer = Framer::new(bytes);
        self
    }

    /// Fails the stream when upstream sends nothing for `limit`.
    pub fn with_idle_timeout(mut self, limit: Duration) -> Self {
        self.idle = Some(Idle {
            limit,
            last: tokio::time::Instant::now(),
            timer: None,
        });
        self
    }

    fn end(&mut self, how: StreamEnd) {
        if let Some(f) = self.on_end.take() {
            f(Ended {
                how,
                failure: self.failed,
                tokens: self.relay.tokens(),
                first_content_at: self.first_content_at,
                at: Instant::now(),
            });
        }
    }

    /// Ends the stream as failed: the client is told so in its protocol's
    /// own words (a last error event), then the stream ends. An SDK raises
    /// the error, where a connection that just dropped would look like a
    /// network fault, or, worse, like a complete answer.
    fn fail(&mut self, why: Failure) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.failed = Some(why);
        self.end(StreamEnd::UpstreamFailed);
        Poll::Ready(Some(Ok(Frame::data(super::sse::failure_event(
            self.client,
            why.words(),
        )))))
    }

    fn take_events(&mut self) {
        if self.first_content_at.is_none() && self.relay.saw_content() {
            self.first_content_at = Some(Instant::now());
        }
        // Events gathered together leave together: one frame (one HTTP
        // chunk, one write) rather than one per event.
        self.ready = match self.scratch.len() {
            0 => return,
            1 => self.scratch.pop(),
            _ => {
                let len = self.scratch.iter().map(Bytes::len).sum();
                let mut joined = BytesMut::with_capacity(len);
                for event in self.scratch.drain(..) {
                    joined.extend_from_slice(&event);
                }
                Some(joined.freeze())
            }
        };
    }
}

impl<B> Body for RelayBody<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Everything upstream has ready is taken before anything is sent, so
        // the events of one burst leave as one frame (one write, one wake-up
        // of the client); cordon's upstream body reads its connection in this
        // task, so a burst already received is all ready at once. Nothing
        // waits for data that has not arrived.
        let this = &mut *self;
        loop {
            if let Some(b) = this.ready.take() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if let Some(why) = this.failure.take() {
                return this.fail(why);
            }
            if this.done {
                this.end(StreamEnd::Complete);
                return Poll::Ready(None);
            }
            let Some(upstream) = &mut this.upstream else {
                // Taken only by `Drop`; never seen here.
                return Poll::Ready(None);
            };
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if this.idle.is_some() || this.deadline.is_some() {
                        let now = tokio::time::Instant::now();
                        if let Some(idle) = &mut this.idle {
                            idle.last = now;
                        }
                        if this.deadline.as_ref().is_some_and(|d| now >= d.at) {
                            this.take_events();
                            this.failure = Some(Failure::TooLong);
                            continue;
                        }
                    }
                    // Trailers carry nothing to relay.
                    if let Ok(chunk) = frame.into_data() {
                        let pushed = this
                            .framer
                            .push(&chunk, &mut *this.relay, &mut this.scratch);
                        if pushed.is_err() {
                            this.take_events();
                            this.failure = Some(Failure::EventTooLarge);
                        } else if this.scratch.iter().map(Bytes::len).sum::<usize>() >= MAX_GATHER {
                            this.take_events();
                        }
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    this.take_events();
                    this.failure = Some(Failure::Broke);
                }
                Poll::Ready(None) => {
                    this.framer.finish(&mut *this.relay, &mut this.scratch);
                    this.take_events();
                    this.done = true;
                }
                Poll::Pending if !this.scratch.is_empty() => this.take_events(),
                Poll::Pending => {
                    if let Some(idle) = &mut this.idle
                        && idle.expired(cx)
                    {
                        return this.fail(Failure::Stalled);
                    }
                    if let Some(d) = &mut this.deadline {
                        let at = d.at;
                        let timer = d
                            .timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                        if timer.as_mut().poll(cx).is_ready() {
                            return this.fail(Failure::TooLong);
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_none() && self.on_end.is_none()
    }
}

/// How long, and how many bytes, cordon keeps reading a provider's stream
/// for its usage after the client has gone.
const USAGE_DRAIN_TIME: Duration = Duration::from_secs(10);
const USAGE_DRAIN_BYTES: usize = 256 * 1024;

impl<B> Drop for RelayBody<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// The client went away. If the provider had already finished the
    /// answer but its usage was still to come (OpenAI sends it in a last
    /// chunk), the rest of its stream is read, bounded in time and bytes,
    /// in a task of its own, so the record carries the tokens (a client
    /// leaving at `finish_reason` must not make a request free); then the
    /// end is reported as cancelled.
    fn drop(&mut self) {
        let wants_usage = !self.done
            && self.relay.saw_finish()
            && self.relay.tokens().completion.is_none()
            && self.on_end.is_some();
        if wants_usage
            && let Ok(rt) = tokio::runtime::Handle::try_current()
            && let Some(upstream) = self.upstream.take()
        {
            let drain = Drain {
                upstream,
                framer: std::mem::replace(&mut self.framer, Framer::new(0)),
                relay: std::mem::replace(&mut self.relay, Box::new(NoRelay)),
                on_end: self.on_end.take(),
                first_content_at: self.first_content_at,
            };
            drop(rt.spawn(drain.run()));
            return;
        }
        self.end(StreamEnd::Cancelled);
    }
}

/// The rest of a stream whose client left after the finish, read for usage.
struct Drain<B> {
    upstream: B,
    framer: Framer,
    relay: Box<dyn Relay>,
    on_end: Option<OnEnd>,
    first_content_at: Option<Instant>,
}

impl<B> Drain<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn run(mut self) {
        use http_body_util::BodyExt;
        let mut read = 0usize;
        let mut discard = Vec::new();
        let until = tokio::time::Instant::now() + USAGE_DRAIN_TIME;
        while read < USAGE_DRAIN_BYTES && self.relay.tokens().completion.is_none() {
            let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, self.upstream.frame()).await
            else {
                break;
            };
            if let Ok(chunk) = frame.into_data() {
                read += chunk.len();
                if self
                    .framer
                    .push(&chunk, &mut *self.relay, &mut discard)
                    .is_err()
                {
                    break;
                }
                discard.clear();
            }
        }
        if let Some(f) = self.on_end.take() {
            f(Ended {
                how: StreamEnd::Cancelled,
                failure: None,
                tokens: self.relay.tokens(),
                first_content_at: self.first_content_at,
                at: Instant::now(),
            });
        }
    }
}

/// Stands in for a relay moved out of a dropped body.
struct NoRelay;

impl Relay for NoRelay {
    fn event(&mut self, _: Bytes, _: &mut Vec<Bytes>) {}
    fn tokens(&self) -> Tokens {
        Tokens::default()
    }
    fn saw_content(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::{StreamExt, stream};
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    type Chunks = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>>;

    /// An upstream body that yields `chunks`, one read each, then ends.
    fn upstream(chunks: &[&'static [u8]]) -> Chunks {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(stream::iter(frames))
    }

    fn recorder() -> (Arc<Mutex<Vec<Ended>>>, impl FnOnce(Ended) + Send + 'static) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (seen, move |e| s.lock().unwrap().push(e))
    }

    #[tokio::test]
    async fn completes_once_with_usage_and_passes_events() {
        let chunks = upstream(&[
            b"data: {\"choices\":[{\"delta\":{}}]}\n\ndata: {\"choices\":[],\"usage\":",
            b"{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        ]);
        let (seen, on_end) = recorder();
        let body = RelayBody::new(chunks, OpenAiRelay::new(true), Wire::OpenAi, on_end);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            &out[..],
            b"data: {\"choices\":[{\"delta\":{}}]}\n\ndata: [DONE]\n\n"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "end callback runs exactly once");
        assert_eq!(seen[0].how, StreamEnd::Complete);
        assert_eq!(seen[0].tokens.prompt, Some(4));
        assert!(seen[0].first_content_at.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_leaves_as_one_frame_and_an_event_after_a_pause_is_not_waited_for() {
        let burst = upstream(&[b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]);
        let later = stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"data: 4\n\n")))
        });
        let upstream = StreamBody::new(Box::pin(
            http_body_util::BodyStream::new(burst).chain(later),
        ));
        let (_, on_end) = recorder();
        let mut body = RelayBody::new(upstream, OpenAiRelay::new(true), Wire::OpenAi, on_end);
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(
            frames,
            [
                Bytes::from_static(b"data: 1\n\ndata: 2\n\ndata: 3\n\n"),
                Bytes::from_static(b"data: 4\n\n"),
            ],
            "the burst is gathered; the event 50 ms later is not waited for"
        );
    }

    #[tokio::test]
    async fn events_before_an_upstream_failure_are_delivered_then_an_error_event() {
        let frames = stream::iter([
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"data: 1\n\n"))),
            Err::<Frame<Bytes>, BoxError>("connection reset".into()),
        ]);
        let (seen, on_end) = recorder();
        let mut body = RelayBody::new(
            StreamBody::new(frames),
            OpenAiRelay::new(true),
            Wire::OpenAi,
            on_end,
        );
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, Bytes::from_static(b"data: 1\n\n"));
        let last = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(
            last.starts_with(b"data: {\"error\":") && last.ends_with(b"\n\n"),
            "{last:?}"
        );
        assert!(body.frame().await.is_none(), "then the end");
        assert_eq!(seen.lock().unwrap()[0].how, StreamEnd::UpstreamFailed);
    }

    #[tokio::test]
    async fn an_event_that_never_ends_fails_the_stream_at_the_limit() {
        // 1 KiB chunks of one event that never ends, for ever.
        let endless = stream::iter(std::iter::repeat_with(|| {
            Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; 1024])))
        }));
        let (seen, on_end) = recorder();
        let mut body = RelayBody::new(
            StreamBody::new(endless),
            AnthropicRelay::new(),
            Wire::Anthropic,
            on_end,
        )
        .with_max_event(64 * 1024);
        let last = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(last.starts_with(b"event: error\n"), "{last:?}");
        assert!(body.frame().await.is_none());
        assert_eq!(seen.lock().unwrap()[0].how, StreamEnd::UpstreamFailed);
    }

    #[tokio::test]
    async fn dropping_the_body_reports_cancellation_once() {
        let (seen, on_end) = recorder();
        let body = RelayBody::new(silent(), OpenAiRelay::new(false), Wire::OpenAi, on_end);
        drop(body);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].how, StreamEnd::Cancelled);
    }

    /// An upstream that sends one event, then nothing, forever.
    fn silent() -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let first = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        )))]);
        StreamBody::new(first.chain(stream::pending()))
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_silent_for_the_timeout_fails_the_stream() {
        let (seen, on_end) = recorder();
        let started = tokio::time::Instant::now();
        let mut body = RelayBody::new(silent(), OpenAiRelay::new(true), Wire::OpenAi, on_end)
            .with_idle_timeout(Duration::from_secs(30));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(first.starts_with(b"data: "), "the event before the silence");
        let after = tokio::time::timeout(Duration::from_secs(120), body.frame())
            .await
            .expect("a silent upstream must end the stream")
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert!(
            after.starts_with(b"data: {\"error\":"),
            "ended with an error event, not as a complete stream: {after:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
            "ended after {waited:?} of (paused) time"
        );
        assert!(body.frame().await.is_none(), "nothing after the error");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "end callback runs exactly once");
        assert_eq!(seen[0].how, StreamEnd::UpstreamFailed);
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_keep_a_slow_stream_alive_past_the_timeout() {
        // 5 events, 20 s apart: 100 s in all, with a 30 s idle limit.
        let events = stream::iter(0..5).then(|i| async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            Ok::<_, BoxError>(Frame::data(Bytes::from(format!("data: {i}\n\n"))))
        });
        let (seen, on_end) = recorder();
        let body = RelayBody::new(
            StreamBody::new(Box::pin(events)),
            OpenAiRelay::new(true),
            Wire::OpenAi,
            on_end,
        )
        .with_idle_timeout(Duration::from_secs(30));
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 10);
        assert_eq!(seen.lock().unwrap()[0].how, StreamEnd::Complete);
    }
}
