//! Who may use a cluster: every node and client holds the same secret token.
//!
//! The scheduler's gRPC service and each executor's Arrow Flight service
//! refuse a request that does not carry it. Clients send it as
//! `authorization: Bearer TOKEN` where Ballista lets them add metadata
//! (client → scheduler), and as the first word of their `user-agent`
//! (`crossflow-token/TOKEN`) on the connections for which Ballista only
//! lets them shape the endpoint (executor → scheduler, executor → executor
//! shuffle fetches, client → executor result fetches). Without TLS the token
//! crosses the network in clear: keep the cluster on a private network.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ballista_core::extension::EndpointOverrideFn;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::error::{ClusterError, Result};

/// Who may use a node and which files its plans may touch.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token every call must carry; `None`: no authentication.
    pub token: Option<Token>,
    /// The directories plans may read and write under; `None`: anywhere
    /// this process's user may.
    pub data_roots: Option<crate::DataRoots>,
}

/// The first word of a `user-agent` that carries the token.
const USER_AGENT_PREFIX: &str = "crossflow-token/";

/// The shortest token accepted.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// The cluster's shared secret.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token of at least [`MIN_TOKEN_LENGTH`] visible ASCII characters
    /// (surrounding white space, such as a file's last newline, is ignored).
    pub fn new(secret: &str) -> Result<Self> {
        Self::parse(secret).ok_or_else(|| ClusterError::Token(token_rule()))
    }

    /// The token in file `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClusterError::Token(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
            .ok_or_else(|| ClusterError::Token(format!("{}: {}", path.display(), token_rule())))
    }

    fn parse(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        let valid =
            secret.len() >= MIN_TOKEN_LENGTH && secret.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Self(secret.into()))
    }

    /// Whether a request's metadata carries this token.
    pub fn accepts(&self, metadata: &MetadataMap) -> bool {
        let bearer = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let agent = metadata
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.strip_prefix(USER_AGENT_PREFIX));
        [bearer, agent]
            .into_iter()
            .flatten()
            .any(|given| same(given.as_bytes(), self.0.as_bytes()))
    }

    /// Metadata that a client adds to its scheduler calls.
    pub fn grpc_metadata(&self) -> HashMap<String, String> {
        HashMap::from([("authorization".to_string(), format!("Bearer {}", self.0))])
    }

    /// An endpoint override that makes every connection carry the token.
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let agent = format!("{USER_AGENT_PREFIX}{}", self.0);
        Arc::new(move |endpoint| Ok(endpoint.user_agent(agent.clone())?))
    }

    /// A server interceptor that refuses requests without the token.
    pub fn interceptor(&self) -> RequireToken {
        RequireToken(self.clone())
    }
}

/// What a token must be.
fn token_rule() -> String {
    format!(
        "a cluster token must be at least {MIN_TOKEN_LENGTH} visible ASCII characters without \
         spaces (e.g. `openssl rand -hex 32`)"
    )
}

/// Compares in time that does not depend on where the inputs differ.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// A tonic interceptor that lets through only requests with the token.
#[derive(Clone, Debug)]
pub struct RequireToken(Token);

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if self.0.accepts(request.metadata()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "crossflow cluster: this node needs the cluster token; pass the same \
                 --cluster-token-file (or CROSSFLOW_CLUSTER_TOKEN) as the cluster's nodes",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn request(key: &'static str, value: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert(key, value.parse().unwrap());
        request
    }

    #[test]
    fn only_requests_with_the_token_pass() {
        let token = Token::new("0123456789abcdef0123\n").unwrap();
        let mut check = token.interceptor();
        assert!(
            check
                .call(request("authorization", "Bearer 0123456789abcdef0123"))
                .is_ok()
        );
        let agent = "crossflow-token/0123456789abcdef0123 tonic/0.14.9";
        assert!(check.call(request("user-agent", agent)).is_ok());
        for (key, value) in [
            ("authorization", "Bearer 0123456789abcdef0124"),
            ("authorization", "0123456789abcdef0123"),
            ("user-agent", "tonic/0.14.9"),
            ("user-agent", "crossflow-token/0123456789abcdef012"),
        ] {
            let refused = check.call(request(key, value)).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        assert!(check.call(Request::new(())).is_err());
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("0123456789 abcdef0123").is_err());
    }
}
