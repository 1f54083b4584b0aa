//! The edge of every request, outermost: a request id (`X-Request-Id`, echoed; an
//! incoming one is kept when it is short and plain), the client IP (peer address, or
//! the last `X-Forwarded-For` entry, the one the trusted proxy added, when trusted), the body size limit (413), the rate
//! limits of `/api` routes, the mapping of every error to a problem+json response,
//! security headers like helmet's, Prometheus counters by route template, and one
//! access log line per request (method, route, status, duration, client IP; the
//! request id comes from the span) — never headers, bodies or tokens.
//!
//! In two halves with the CORS layer between them ([`edge`]): [`Edge`] outside (request
//! id, client IP, security headers, metrics, log) and [`Guarded`] inside (limits and
//! problem answers), because CORS turns an error from within into a bare text answer
//! of its own, and adds its headers only to what passes through it.

use super::limits::{Limits, RATELIMIT, RATELIMIT_POLICY, Verdict, quota_key};
use super::problem::{ApiError, to_api_error};
use super::state::{AppState, BodyLimit};
use crate::metrics::{HttpLabels, Metrics};
use poem::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OperationId;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A Content-Security-Policy as helmet's defaults, with the page's `script-src` and
/// any directives appended.
macro_rules! csp {
    ($script:literal $(, $tail:literal)?) => {
        concat!(
            "default-src 'self'; base-uri 'self'; font-src 'self' data:; ",
            "form-action 'self'; frame-ancestors 'none'; img-src 'self' data:; ",
            "object-src 'none'; script-src ",
            $script,
            "; style-src 'self' 'unsafe-inline'"
            $(, $tail)?
        )
    };
}

/// The Content-Security-Policy of every response but Swagger UI's. Over TLS (`--hsts`)
/// it ends with `upgrade-insecure-requests`; over plain HTTP it must not, or a browser
/// on any host but localhost rewrites the page's own scripts and API calls to https.
pub const CSP: &str = csp!("'self'");
/// Swagger UI's: its page is one HTML document with inline script.
pub const DOCS_CSP: &str = csp!("'self' 'unsafe-inline'");
const CSP_TLS: &str = csp!("'self'", "; upgrade-insecure-requests");
const DOCS_CSP_TLS: &str = csp!("'self' 'unsafe-inline'", "; upgrade-insecure-requests");

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// What the edge needs to know.
pub struct EdgeConfig {
    pub metrics: Metrics,
    /// `None`: nothing is rate limited (the orchestrator's probe listener).
    pub state: Option<Arc<AppState>>,
    pub hsts: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_body_bytes: usize,
    /// operationId → route template, for metrics and logs.
    pub routes: HashMap<String, String>,
    /// Route template → the methods it answers, for `Allow` on 405.
    pub methods: Vec<(String, String)>,
}

/// The outer half: request id, client IP, security headers, metrics and the access
/// log, for every answer — including those of a layer between the halves (CORS).
pub struct Edge<E> {
    inner: E,
    config: Arc<EdgeConfig>,
}

/// The inner half, right around the routes: size and rate limits, and every error
/// turned into a problem+json answer. Inside the CORS layer, so that CORS headers reach
/// refusals and problems too (CORS turns an error into a bare text answer itself).
pub struct Guarded<E> {
    inner: E,
    config: Arc<EdgeConfig>,
}

impl<E> Edge<Guarded<E>> {
    /// Both halves around `routes`, with nothing between them.
    pub fn new(routes: E, config: EdgeConfig) -> Self {
        edge(routes, config, |guarded| guarded)
    }
}

/// Both halves around `routes`, with `middle` (CORS) between them.
pub fn edge<E, M>(routes: E, config: EdgeConfig, middle: impl FnOnce(Guarded<E>) -> M) -> Edge<M> {
    let config = Arc::new(config);
    Edge {
        inner: middle(Guarded {
            inner: routes,
            config: config.clone(),
        }),
        config,
    }
}

/// What the outer half learnt about a request, for the inner half.
#[derive(Clone)]
struct RequestFacts {
    request_id: Arc<str>,
    ip: IpAddr,
}

fn usable_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn peer_ip(req: &Request) -> IpAddr {
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The client's address: the peer's, unless the peer is a trusted proxy. Then the
/// `X-Forwarded-For` entries are read from the right — each proxy appends the address
/// it received the request from — past every trusted proxy, to the first address that
/// is none: the client as the outermost trusted proxy saw it. Everything left of that
/// is the client's own word. An entry that is no address stops the walk at the last
/// address read. Read as bytes, so that junk the client put in front (not even ASCII)
/// cannot hide the proxies' entries.
fn client_ip(peer: IpAddr, headers: &poem::http::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let lines: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").into_iter().collect();
    for line in lines.into_iter().rev() {
        for entry in line.as_bytes().rsplit(|&b| b == b',') {
            let Some(ip) = std::str::from_utf8(entry).ok().and_then(forwarded_address) else {
                return client;
            };
            client = ip.to_canonical();
            if !is_trusted(&client) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry's address: bare (`203.0.113.7`, `2001:db8::1`), or as
/// some proxies and load balancers write it, with a port (`203.0.113.7:5555`,
/// `[2001:db8::1]:443`) or in brackets (`[2001:db8::1]`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })
}

/// Whether the path is rate limited: the API, except its spec.
fn is_limited(path: &str) -> bool {
    (path == "/api" || path.starts_with("/api/")) && path != "/api/openapi.json"
}

impl<E: Endpoint> Endpoint for Edge<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let config = self.config.clone();
        let request_id: Arc<str> = req
            .header(X_REQUEST_ID)
            .filter(|v| usable_request_id(v))
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()));
        let ip = client_ip(peer_ip(&req), req.headers(), &config.trusted_proxies);
        req.set_data(BodyLimit(config.max_body_bytes));
        req.set_data(RequestFacts {
            request_id: request_id.clone(),
            ip,
        });
        let method = method_label(req.method());
        let path = req.uri().path().to_owned();
        let span = tracing::info_span!("request", request_id = %request_id);

        async move {
            // Errors reach here only from a layer between the halves (a CORS refusal);
            // the inner half answers every other one itself.
            let (mut resp, operation) = match self.inner.call(req).await {
                Ok(resp) => {
                    let resp = resp.into_response();
                    let op = resp.data::<OperationId>().map(|o| o.0);
                    (resp, op)
                }
                Err(err) => {
                    let op = err.data::<OperationId>().map(|o| o.0);
                    (problem_response(&config, err, &path, &request_id), op)
                }
            };
            let route = match operation {
                Some(op) => config
                    .routes
                    .get(op)
                    .cloned()
                    .unwrap_or_else(|| op.to_owned()),
                None => route_of(&path).to_owned(),
            };
            let headers = resp.headers_mut();
            security_headers(headers, &path, config.hsts);
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                headers.insert(X_REQUEST_ID, v);
            }
            headers.remove(header::SERVER);
            headers.remove("x-powered-by");

            let status = resp.status().as_u16();
            let elapsed = started.elapsed();
            config
                .metrics
                .http_requests
                .get_or_create(&HttpLabels {
                    method: method.to_owned(),
                    route: route.clone(),
                    status,
                })
                .inc();
            config
                .metrics
                .http_request_seconds
                .observe(elapsed.as_secs_f64());
            tracing::info!(
                method = %method,
                route = %route,
                status,
                duration_ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1000.0),
                client_ip = %ip,
                "request"
            );
            Ok(resp)
        }
        .instrument(span)
        .await
    }
}

impl<E: Endpoint> Endpoint for Guarded<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let config = &self.config;
        let RequestFacts { request_id, ip } =
            req.data::<RequestFacts>()
                .cloned()
                .unwrap_or_else(|| RequestFacts {
                    request_id: Arc::from(uuid::Uuid::new_v4().to_string()),
                    ip: peer_ip(&req),
                });
        let path = req.uri().path().to_owned();
        let mut verdicts: Vec<Verdict> = Vec::new();
        let result = match self.guard(&req, ip, &mut verdicts) {
            Ok(()) => self.inner.call(req).await.map(IntoResponse::into_response),
            Err(e) => {
                if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                    super::body::drain(req.take_body().into_async_read()).await;
                }
                Err(poem::Error::from(e))
            }
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => problem_response(config, err, &path, &request_id),
        };
        // A 429 carries the state of the quota that refused it, or none (the cap on open
        // streams is no rate): never the quotas that let it through, which would read
        // as room left on a refusal.
        let refused = resp.status() == StatusCode::TOO_MANY_REQUESTS;
        let headers = resp.headers_mut();
        if !verdicts.is_empty() && !refused && !headers.contains_key(RATELIMIT) {
            let policy: Vec<String> = verdicts.iter().map(Verdict::policy_item).collect();
            let state: Vec<String> = verdicts.iter().map(Verdict::state_item).collect();
            if let (Ok(p), Ok(s)) = (
                HeaderValue::from_str(&policy.join(", ")),
                HeaderValue::from_str(&state.join(", ")),
            ) {
                headers.insert(RATELIMIT_POLICY, p);
                headers.insert(RATELIMIT, s);
            }
        }
        Ok(resp)
    }
}

/// An error as a problem+json answer: path parameters by their names, `Allow` on 405,
/// a 5xx's cause logged (never sent), the operation kept for the route label.
fn problem_response(
    config: &EdgeConfig,
    err: poem::Error,
    path: &str,
    request_id: &str,
) -> Response {
    let op = err.data::<OperationId>().copied();
    let mut api = to_api_error(&err);
    if let Some(template) = op.and_then(|o| config.routes.get(o.0)) {
        name_path_params(&mut api, template);
    }
    if api.status == StatusCode::METHOD_NOT_ALLOWED
        && !api.headers.iter().any(|(n, _)| n == header::ALLOW)
        && let Some((_, allow)) = config
            .methods
            .iter()
            .find(|(t, _)| super::spec::matches_template(t, path))
    {
        api = api.with_header(header::ALLOW, allow);
    }
    if api.status.is_server_error() {
        tracing::error!(
            status = api.status.as_u16(),
            cause = api.internal.as_deref().unwrap_or("unknown"),
            "request failed"
        );
    } else if let Some(cause) = &api.internal {
        tracing::warn!(status = api.status.as_u16(), cause = %cause, "request refused");
    }
    let mut resp = api.render(Some(path), Some(request_id));
    if let Some(op) = op {
        resp.set_data(op);
    }
    resp
}

impl<E> Guarded<E> {
    /// Size and rate checks before the request reaches a route.
    fn guard(
        &self,
        req: &Request,
        ip: IpAddr,
        verdicts: &mut Vec<Verdict>,
    ) -> Result<(), ApiError> {
        let config = &self.config;
        if let Some(len) = req
            .header(header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            && len > config.max_body_bytes as u64
        {
            return Err(ApiError::payload_too_large(config.max_body_bytes));
        }
        let path = req.uri().path();
        let Some(state) = &config.state else {
            return Ok(());
        };
        if !is_limited(path) || req.method() == Method::OPTIONS {
            return Ok(());
        }
        let limits: &Limits = &state.limits;
        let client = quota_key(ip);
        let outcome = (|| {
            verdicts.push(limits.global.check(&client)?);
            if req.method() == Method::POST && path == "/api/stores" {
                verdicts.push(limits.create.check(&client)?);
            }
            if req.method() == Method::POST && path == "/api/auth/login" {
                verdicts.push(limits.login_ip.check(&client)?);
            }
            Ok(())
        })();
        if outcome.is_err() {
            config.metrics.rate_limited.inc();
        }
        outcome
    }
}

/// poem-openapi names path parameters `param0`, `param1`… in its errors; use the
/// template's names (`id`).
fn name_path_params(api: &mut ApiError, template: &str) {
    let names: Vec<&str> = template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let internal = format!("param{i}");
        for e in &mut api.errors {
            if e.field == internal {
                e.field = (*name).to_owned();
            }
        }
        api.detail = api
            .detail
            .replace(&format!("`{internal}`"), &format!("`{name}`"));
    }
}

/// The method as metrics and logs name it: one of the standard methods, or `other`.
/// A client may send any token as a method, and each would otherwise be a new metric
/// series kept for the life of the process.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route label of requests no operation answered.
fn route_of(path: &str) -> &'static str {
    match path {
        "/metrics" => "/metrics",
        "/api/openapi.json" => "/api/openapi.json",
        p if p == "/docs" || p.starts_with("/docs/") => "/docs",
        p if p == "/api" || p.starts_with("/api/") => "unmatched",
        _ => "dashboard",
    }
}

fn security_headers(headers: &mut poem::http::HeaderMap, path: &str, hsts: bool) {
    // Only the Swagger UI page itself needs its inline script; anything else under
    // `/docs/` is the dashboard's page and keeps the strict policy.
    let docs = path == "/docs" || path == "/docs/";
    let set = |headers: &mut poem::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    let csp = match (docs, hsts) {
        (false, false) => CSP,
        (true, false) => DOCS_CSP,
        (false, true) => CSP_TLS,
        (true, true) => DOCS_CSP_TLS,
    };
    set(headers, "content-security-policy", csp);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(headers, "x-dns-prefetch-control", "off");
    set(headers, "x-permitted-cross-domain-policies", "none");
    set(headers, "origin-agent-cluster", "?1");
    if hsts {
        set(headers, "strict-transport-security", HSTS);
    }
    // Answers about accounts, tokens and stores are the caller's alone: no cache (a
    // proxy's, the browser's back button) keeps them — the event stream included,
    // whose `no-cache` (set by the SSE response) would still let a cache store it.
    // The spec and the dashboard's files set their own caching.
    if path.starts_with("/api/") && path != "/api/openapi.json" {
        set(headers, "cache-control", "no-store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_method_a_client_invents_is_one_label() {
        for m in ["GET", "POST", "DELETE", "OPTIONS"] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), m);
        }
        for m in ["FOO000001", "PROPFIND", "BREW"] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                "other"
            );
        }
    }

    #[test]
    fn request_ids_from_clients_are_kept_only_when_plain() {
        assert!(usable_request_id("abc-123_x.y:z"));
        assert!(!usable_request_id(""));
        assert!(!usable_request_id("a b"));
        assert!(!usable_request_id("a\nforged log line"));
        assert!(!usable_request_id(&"a".repeat(129)));
    }

    #[test]
    fn the_client_is_the_first_untrusted_forwarded_for_entry_from_the_right() {
        use poem::http::HeaderMap;
        let headers = |lines: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for line in lines {
                h.append("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
            }
            h
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let proxy = ip("10.1.2.3");
        let from = |peer: IpAddr, lines: &[&[u8]]| client_ip(peer, &headers(lines), &trusted);
        // From a peer that is no trusted proxy, the header is the client's own word.
        assert_eq!(
            from(ip("198.51.100.4"), &[b"203.0.113.7"]),
            ip("198.51.100.4")
        );
        assert_eq!(client_ip(proxy, &headers(&[b"203.0.113.7"]), &[]), proxy);
        // Through the proxy: what it appended. A forged first entry is the client's.
        assert_eq!(from(proxy, &[b"203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(from(proxy, &[b"192.0.2.9, 203.0.113.7"]), ip("203.0.113.7"));
        // Past a second trusted hop (a load balancer in front of the proxy).
        assert_eq!(
            from(proxy, &[b"192.0.2.9, 203.0.113.7, 10.9.9.9"]),
            ip("203.0.113.7")
        );
        // A client that writes a trusted address gains nothing: the walk stops at the
        // first untrusted entry from the right.
        assert_eq!(from(proxy, &[b"10.0.0.1, 203.0.113.7"]), ip("203.0.113.7"));
        // Not even ASCII in front.
        assert_eq!(from(proxy, &[b"\xff\xfe, 203.0.113.7"]), ip("203.0.113.7"));
        // A proxy that adds its own line; IPv6, and IPv4-mapped peers.
        assert_eq!(
            from(proxy, &[b"192.0.2.9", b"2001:db8::1"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            from(ip("::ffff:10.1.2.3"), &[b"203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(from(ip("fd00::1"), &[b"203.0.113.7"]), ip("203.0.113.7"));
        // Entries with a port, or an IPv6 address in brackets, as some proxies write.
        assert_eq!(from(proxy, &[b"203.0.113.7:5555"]), ip("203.0.113.7"));
        assert_eq!(
            from(proxy, &[b"192.0.2.9, [2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(from(proxy, &[b"[2001:db8::1]"]), ip("2001:db8::1"));
        assert_eq!(from(proxy, &[b"[203.0.113.7]"]), proxy);
        // No usable entry: the proxy itself (every such request shares one key).
        assert_eq!(from(proxy, &[b"not an address"]), proxy);
        assert_eq!(from(proxy, &[]), proxy);
    }

    #[test]
    fn only_the_api_is_limited() {
        assert!(is_limited("/api/stores"));
        assert!(!is_limited("/api/openapi.json"));
        assert!(!is_limited("/health"));
        assert!(!is_limited("/metrics"));
        assert!(!is_limited("/assets/app.js"));
    }
}
