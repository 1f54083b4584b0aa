//! The dashboard's static files: built into the binary from `dashboard/dist` (rust-embed;
//! the crate builds without them), or read from `ApiSettings::dashboard_dir`. Unknown
//! paths outside `/api` get `index.html` (the SPA routes itself); hashed files under
//! `/assets/` are cached for a year, `index.html` never. Without a built dashboard, `/`
//! answers a short page saying how to build it.
//!
//! Serves files only; it must not know about the API.

use super::problem::ApiError;
use poem::http::{Method, StatusCode, header};
use poem::{Request, Response};
use std::borrow::Cow;
use std::path::PathBuf;

#[derive(rust_embed::RustEmbed)]
#[folder = "dashboard/dist/"]
#[allow_missing = true]
struct Embedded;

const NOT_BUILT: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Storeplane</title></head><body>\n<h1>Storeplane</h1>\n<p>The dashboard is not built \
into this binary. Build it with <code>npm ci &amp;&amp; npm run build</code> in \
<code>dashboard/</code> and rebuild Storeplane, or start the server with \
<code>--dashboard-dir dashboard/dist</code>.</p>\n<p>The API is served at <code>/api</code>; \
its documentation at <a href=\"/docs\">/docs</a>.</p>\n</body></html>\n";

/// Where the dashboard's files come from.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    dir: Option<PathBuf>,
}

impl Dashboard {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Dashboard { dir }
    }

    async fn read(&self, file: &str) -> Option<Cow<'static, [u8]>> {
        match &self.dir {
            Some(dir) => tokio::fs::read(dir.join(file)).await.ok().map(Cow::Owned),
            None => Embedded::get(file).map(|f| f.data),
        }
    }

    /// Answers a request for a path outside the API.
    pub async fn serve(&self, req: &Request) -> Result<Response, ApiError> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "the dashboard's files are read with GET",
            )
            .with_header(header::ALLOW, "GET, HEAD"));
        }
        let path = req.uri().path().trim_start_matches('/');
        let safe = !path
            .split('/')
            .any(|seg| seg == ".." || seg == "." || seg.contains('\\'));
        let file = if path.is_empty() { "index.html" } else { path };
        if safe
            && !file.ends_with('/')
            && let Some(data) = self.read(file).await
        {
            return Ok(respond(file, data, req.method() == Method::HEAD));
        }
        if path.starts_with("assets/") {
            return Err(ApiError::not_found("no such dashboard file"));
        }
        // The SPA's own routes, and the page saying it is not built.
        Ok(match self.read("index.html").await {
            Some(data) => respond("index.html", data, req.method() == Method::HEAD),
            None => Response::builder()
                .content_type("text/html; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(NOT_BUILT),
        })
    }
}

fn respond(file: &str, data: Cow<'static, [u8]>, head: bool) -> Response {
    let cache = if file.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let builder = Response::builder()
        .content_type(content_type(file))
        .header(header::CACHE_CONTROL, cache);
    if head {
        builder
            .header(header::CONTENT_LENGTH, data.len().to_string())
            .finish()
    } else {
        builder.body(data.into_owned())
    }
}

fn content_type(file: &str) -> &'static str {
    let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_files_with_cache_headers_and_falls_back_to_index() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<html>app</html>").unwrap();
        std::fs::write(dir.path().join("assets/app-1234.js"), "x").unwrap();
        let d = Dashboard::new(Some(dir.path().to_owned()));
        let get = |p: &str| Request::builder().uri(p.parse().unwrap()).finish();

        let r = d.serve(&get("/assets/app-1234.js")).await.unwrap();
        assert!(
            r.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert_eq!(r.content_type(), Some("text/javascript; charset=utf-8"));
        let r = d.serve(&get("/stores/abc")).await.unwrap();
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            r.into_body().into_string().await.unwrap(),
            "<html>app</html>"
        );
        assert!(d.serve(&get("/assets/missing.js")).await.is_err());
        let r = d.serve(&get("/../etc/passwd")).await.unwrap();
        assert_eq!(
            r.into_body().into_string().await.unwrap(),
            "<html>app</html>"
        );
    }

    #[tokio::test]
    async fn says_how_to_build_when_there_is_no_dashboard() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dashboard::new(Some(dir.path().to_owned()));
        let r = d
            .serve(&Request::builder().uri("/".parse().unwrap()).finish())
            .await
            .unwrap();
        let body = r.into_body().into_string().await.unwrap();
        assert!(body.contains("not built"), "{body}");
    }
}
