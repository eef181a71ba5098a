//! Request-level limits of the HTTP server, in the order a request meets them:
//!
//! 1. each request marks its connection as handling a request (see `conn`), so the
//!    connection's idle clock does not cut it;
//! 2. a request that may change state (any method but GET and HEAD, on any path) needs
//!    the bearer token, checked from the head before any of the body is read; its body is
//!    then read whole, at most [`MAX_BODY_BYTES`] (else 413) within [`BODY_TIMEOUT`]
//!    (else 408), before it waits for a slot;
//! 3. the API endpoints wait for one of `max_in_flight` slots; the probes (`/healthz`,
//!    `/readyz`, `/metrics`) do not wait.
//!
//! Not for connection-level limits (count, stalls, age): `conn`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use super::conn::Conn;
use super::{App, error};

/// The largest request body read (silences are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request body may take to arrive, from the end of its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub(super) fn new(t: String) -> Token {
        Token(t)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Marks the request's connection as handling a request until the answer is ready.
pub(super) async fn track(req: Request, next: Next) -> Response {
    let _handling = req
        .extensions()
        .get::<ConnectInfo<Conn>>()
        .map(|c| c.0.0.begin());
    next.run(req).await
}

/// Requests other than GET and HEAD: the token, then the body within its limits.
pub(super) async fn changes(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    if let Some(r) = refused(app.token.as_ref(), req.headers()) {
        return r;
    }
    let (parts, body) = req.into_parts();
    match read_body(&parts.headers, body, MAX_BODY_BYTES, BODY_TIMEOUT).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => e.response(),
    }
}

/// At most `max_in_flight` requests past this point at once; the rest wait.
pub(super) async fn bounded(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = app.gate.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    next.run(req).await
}

/// Checks the bearer token of a mutating request: the refusal, if it is refused.
pub(super) fn refused(token: Option<&Token>, headers: &HeaderMap) -> Option<Response> {
    let Some(Token(token)) = token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "changes through the API are off: set http.token_env or http.token_file",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    (!constant_time_eq(given.as_bytes(), token.as_bytes())).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        )
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("the request body is over {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("cannot read the request body: {0}")]
    Broken(String),
}

impl BodyError {
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn response(&self) -> Response {
        error(self.status(), &self.to_string())
    }
}

/// The whole body: too large when it is (or says it is) over `limit` bytes, timed out
/// when it has not arrived `within`.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut stream = body.into_data_stream();
    let read = async {
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
            if buf.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut(within)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_off_without_a_token_and_need_the_right_one() {
        let mut h = HeaderMap::new();
        let e = refused(None, &h).unwrap();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let t = Token::new("sixteen-chars-token".into());
        assert_eq!(
            refused(Some(&t), &h).unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        h.insert(
            header::AUTHORIZATION,
            "Bearer sixteen-chars-tokeX".parse().unwrap(),
        );
        assert_eq!(
            refused(Some(&t), &h).unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        h.insert(
            header::AUTHORIZATION,
            "Bearer sixteen-chars-token".parse().unwrap(),
        );
        assert!(refused(Some(&t), &h).is_none());
    }

    #[test]
    fn the_token_never_prints() {
        let t = Token::new("sixteen-chars-token".into());
        assert!(!format!("{t:?}").contains("sixteen"));
    }

    fn length(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, n.to_string().parse().unwrap());
        h
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = Body::from_stream(futures::stream::iter(
            ["{\"a\":", " 1}"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))),
        ));
        let got = read_body(&HeaderMap::new(), body, 64, Duration::from_secs(5)).await;
        assert_eq!(got.unwrap(), Bytes::from("{\"a\": 1}"));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        // The body never arrives: only the declared length can answer.
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let r = read_body(&length(1_000_000), body, 1024, Duration::from_secs(30)).await;
        assert_eq!(
            r.unwrap_err().response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn a_streamed_body_over_the_limit_is_refused() {
        let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 200])));
        let body = Body::from_stream(futures::stream::iter(chunks));
        let r = read_body(&HeaderMap::new(), body, 1024, Duration::from_secs(5)).await;
        assert_eq!(
            r.unwrap_err().response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out() {
        let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("{"))]);
        let body = Body::from_stream(first.chain(futures::stream::pending()));
        let r = read_body(&length(100), body, 1024, Duration::from_millis(200)).await;
        assert_eq!(
            r.unwrap_err().response().status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }
}
