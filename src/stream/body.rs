//! The response body of a streamed exchange: upstream bytes re-framed by the
//! SSE relay and passed on as they arrive. Its end callback runs exactly once:
//! at the end of the stream, on an upstream error, or when the client goes
//! away and the body is dropped (which also drops, and so cancels, the
//! upstream request).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body, Frame};

#[cfg(test)]
use super::sse::OpenAiRelay;
use super::sse::{Relay, Tokens};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

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

/// What the end callback learns.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub how: StreamEnd,
    pub tokens: Tokens,
    /// When the first content event was handed to the client.
    pub first_content_at: Option<Instant>,
    pub at: Instant,
}

type OnEnd = Box<dyn FnOnce(Ended) + Send>;

/// A relayed SSE body.
pub struct RelayBody {
    upstream: Upstream,
    relay: Box<dyn Relay>,
    queue: VecDeque<Bytes>,
    scratch: Vec<Bytes>,
    done: bool,
    first_content_at: Option<Instant>,
    on_end: Option<OnEnd>,
}

impl RelayBody {
    pub fn new(
        upstream: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
        relay: impl Relay + 'static,
        on_end: impl FnOnce(Ended) + Send + 'static,
    ) -> Self {
        Self {
            upstream: Box::pin(upstream),
            relay: Box::new(relay),
            queue: VecDeque::new(),
            scratch: Vec::new(),
            done: false,
            first_content_at: None,
            on_end: Some(Box::new(on_end)),
        }
    }

    fn end(&mut self, how: StreamEnd) {
        if let Some(f) = self.on_end.take() {
            f(Ended {
                how,
                tokens: self.relay.tokens(),
                first_content_at: self.first_content_at,
                at: Instant::now(),
            });
        }
    }

    fn take_events(&mut self) {
        if self.first_content_at.is_none() && self.relay.saw_content() {
            self.first_content_at = Some(Instant::now());
        }
        // Events that arrived together leave together: one frame (one HTTP
        // chunk, one write) rather than one per event.
        match self.scratch.len() {
            0 => {}
            1 => self.queue.extend(self.scratch.drain(..)),
            _ => {
                let len = self.scratch.iter().map(Bytes::len).sum();
                let mut joined = BytesMut::with_capacity(len);
                for event in self.scratch.drain(..) {
                    joined.extend_from_slice(&event);
                }
                self.queue.push_back(joined.freeze());
            }
        }
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.done {
                this.end(StreamEnd::Complete);
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.relay.push(&chunk, &mut this.scratch);
                    this.take_events();
                }
                Poll::Ready(Some(Err(_))) => {
                    this.done = true;
                    this.end(StreamEnd::UpstreamFailed);
                    return Poll::Ready(Some(Err("upstream stream failed".into())));
                }
                Poll::Ready(None) => {
                    this.relay.finish(&mut this.scratch);
                    this.take_events();
                    this.done = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queue.is_empty() && self.on_end.is_none()
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        self.end(StreamEnd::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::stream;
    use http_body_util::BodyExt;

    use super::*;

    fn recorder() -> (Arc<Mutex<Vec<Ended>>>, impl FnOnce(Ended) + Send + 'static) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (seen, move |e| s.lock().unwrap().push(e))
    }

    #[tokio::test]
    async fn completes_once_with_usage_and_passes_events() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![
            Ok(Bytes::from_static(
                b"data: {\"choices\":[{\"delta\":{}}]}\n\ndata: {\"choices\":[],\"usage\":",
            )),
            Ok(Bytes::from_static(
                b"{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
            )),
        ];
        let (seen, on_end) = recorder();
        let body = RelayBody::new(stream::iter(chunks), OpenAiRelay::new(true), on_end);
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

    #[tokio::test]
    async fn events_that_arrive_together_leave_as_one_frame() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![
            Ok(Bytes::from_static(b"data: 1\n\ndata: 2\n\ndata: 3\n\n")),
            Ok(Bytes::from_static(b"data: 4\n\n")),
        ];
        let (_, on_end) = recorder();
        let mut body = RelayBody::new(stream::iter(chunks), OpenAiRelay::new(true), on_end);
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(
            frames,
            [
                Bytes::from_static(b"data: 1\n\ndata: 2\n\ndata: 3\n\n"),
                Bytes::from_static(b"data: 4\n\n"),
            ]
        );
    }

    #[tokio::test]
    async fn dropping_the_body_reports_cancellation_once() {
        let (seen, on_end) = recorder();
        let body = RelayBody::new(stream::pending(), OpenAiRelay::new(false), on_end);
        drop(body);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].how, StreamEnd::Cancelled);
    }
}
