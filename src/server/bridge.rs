//! The protocol bridge of one attempt: the client's protocol × the
//! provider's, chosen once, and everything that depends on the pair: the
//! request body the provider gets, the whole answer (or refusal) the client
//! gets, and the relay a stream goes through. The one place the pairing is
//! matched.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::clock;
use crate::config::Api;
use crate::error::ClientApi;
use crate::protocol::openai;
use crate::protocol::translate::{self, TranslateError, Wire};
use crate::stream::sse::{self, AnthropicRelay, OpenAiRelay, Relay, Tokens};
use crate::stream::translate::{AnthropicToOpenAiRelay, OpenAiToAnthropicRelay};
use crate::upstream::{AttemptError, Endpoint};

/// Client protocol → provider protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bridge {
    /// OpenAI in, OpenAI out: passed through.
    OpenAi,
    /// Anthropic in, Anthropic out: passed through.
    Anthropic,
    /// An OpenAI client served by an Anthropic provider.
    OpenAiToAnthropic,
    /// An Anthropic client served by an OpenAI provider.
    AnthropicToOpenAi,
}

/// A whole answer as the client gets it.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) content_type: HeaderValue,
    pub(crate) body: Bytes,
    /// Usage, from a success (a refusal carries none).
    pub(crate) tokens: Tokens,
}

// === impl Bridge ===

impl Bridge {
    pub(crate) fn new(client: ClientApi, provider: Api) -> Self {
        match (client, provider) {
            (ClientApi::OpenAi, Api::OpenAi) => Bridge::OpenAi,
            (ClientApi::Anthropic, Api::Anthropic) => Bridge::Anthropic,
            (ClientApi::OpenAi, Api::Anthropic) => Bridge::OpenAiToAnthropic,
            (ClientApi::Anthropic, Api::OpenAi) => Bridge::AnthropicToOpenAi,
        }
    }

    /// The client's protocol (in which a failed stream's last event is told).
    pub(crate) fn client(self) -> Wire {
        match self {
            Bridge::OpenAi | Bridge::OpenAiToAnthropic => Wire::OpenAi,
            Bridge::Anthropic | Bridge::AnthropicToOpenAi => Wire::Anthropic,
        }
    }

    fn provider(self) -> Wire {
        match self {
            Bridge::OpenAi | Bridge::AnthropicToOpenAi => Wire::OpenAi,
            Bridge::Anthropic | Bridge::OpenAiToAnthropic => Wire::Anthropic,
        }
    }

    /// The body for the provider and the provider endpoint it goes to. A
    /// request that cannot be put in the provider's protocol is the
    /// client's to fix (the error names the field only).
    pub(crate) fn request(
        self,
        fields: &openai::Request<'_>,
        body: &[u8],
        endpoint: Endpoint,
        upstream_model: &str,
    ) -> Result<(Vec<u8>, Endpoint), TranslateError> {
        Ok(match self {
            Bridge::OpenAi => (fields.forward_body(upstream_model), endpoint),
            Bridge::Anthropic => (fields.with_model(upstream_model), Endpoint::Messages),
            Bridge::OpenAiToAnthropic => (
                translate::openai_to_anthropic_request(body, upstream_model)?,
                Endpoint::Messages,
            ),
            Bridge::AnthropicToOpenAi => (
                translate::anthropic_to_openai_request(body, upstream_model)?,
                Endpoint::ChatCompletions,
            ),
        })
    }

    /// A provider's whole answer in the client's protocol. A refusal keeps
    /// the provider's status and documented error type, never its words
    /// (they may echo the credential cordon sent: SPEC invariant 4). A
    /// success must be an answer of the provider's protocol: an error
    /// object, or anything else sent with 2xx, is the provider's failure
    /// (`BadAnswer`: 502), never relayed or recorded as a success.
    pub(crate) fn answer(
        self,
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
        public_model: &str,
    ) -> Result<Answer, AttemptError> {
        let json = HeaderValue::from_static("application/json");
        if !status.is_success() {
            let (status, body) =
                translate::scrub_provider_error(self.provider(), self.client(), status, &body);
            return Ok(Answer {
                status,
                content_type: json,
                body,
                tokens: Tokens::default(),
            });
        }
        let bad = |_: TranslateError| AttemptError::BadAnswer;
        let tokens = match self.provider() {
            Wire::OpenAi => sse::openai_body_tokens(&body),
            Wire::Anthropic => sse::anthropic_body_tokens(&body),
        }
        .ok_or(AttemptError::BadAnswer)?;
        let (content_type, body) = match self {
            Bridge::OpenAi | Bridge::Anthropic => (content_type.unwrap_or(json), body),
            Bridge::AnthropicToOpenAi => (
                json,
                Bytes::from(
                    translate::openai_to_anthropic_response(&body, public_model).map_err(bad)?,
                ),
            ),
            Bridge::OpenAiToAnthropic => {
                let created = clock::now_ms() / 1000;
                (
                    json,
                    Bytes::from(
                        translate::anthropic_to_openai_response_at(&body, public_model, created)
                            .map_err(bad)?,
                    ),
                )
            }
        };
        Ok(Answer {
            status,
            content_type,
            body,
            tokens,
        })
    }

    /// The relay a successful stream goes through to the client.
    pub(crate) fn relay(self, public_model: &str, client_wants_usage: bool) -> Box<dyn Relay> {
        match self {
            Bridge::OpenAi => Box::new(OpenAiRelay::new(!client_wants_usage)),
            Bridge::Anthropic => Box::new(AnthropicRelay::new()),
            Bridge::OpenAiToAnthropic => {
                let inner =
                    translate::AnthropicToOpenAiStream::new(public_model, client_wants_usage)
                        .with_created(clock::now_ms() / 1000);
                Box::new(AnthropicToOpenAiRelay::new(inner))
            }
            Bridge::AnthropicToOpenAi => Box::new(OpenAiToAnthropicRelay::new(
                translate::OpenAiToAnthropicStream::new(public_model),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pairing_has_one_bridge_that_speaks_both_sides() {
        for (client, provider, bridge) in [
            (ClientApi::OpenAi, Api::OpenAi, Bridge::OpenAi),
            (ClientApi::Anthropic, Api::Anthropic, Bridge::Anthropic),
            (ClientApi::OpenAi, Api::Anthropic, Bridge::OpenAiToAnthropic),
            (ClientApi::Anthropic, Api::OpenAi, Bridge::AnthropicToOpenAi),
        ] {
            let b = Bridge::new(client, provider);
            assert_eq!(b, bridge);
            let wire = |w| match w {
                Wire::OpenAi => "openai",
                Wire::Anthropic => "anthropic",
            };
            let c = match client {
                ClientApi::OpenAi => "openai",
                ClientApi::Anthropic => "anthropic",
            };
            let p = match provider {
                Api::OpenAi => "openai",
                Api::Anthropic => "anthropic",
            };
            assert_eq!((wire(b.client()), wire(b.provider())), (c, p));
        }
    }

    #[test]
    fn a_success_that_is_not_the_providers_answer_is_a_bad_answer() {
        let error = Bytes::from_static(br#"{"error":{"message":"x","type":"server_error"}}"#);
        for b in [Bridge::OpenAi, Bridge::AnthropicToOpenAi, Bridge::Anthropic] {
            assert!(matches!(
                b.answer(StatusCode::OK, None, error.clone(), "m"),
                Err(AttemptError::BadAnswer)
            ));
        }
    }
}
