//! The dashboard's static files: built into the binary from `dashboard/dist` (rust-embed;
//! the crate builds without them), or read from `ApiSettings::dashboard_dir`. Unknown
//! paths outside `/api` get `index.html` (the SPA routes itself); hashed files under
//! `/assets/` are cached for a year, `index.html` never. Text files go out compressed
//! when the browser accepts it: the build writes Brotli and gzip copies next to them
//! (`dashboard/scripts/precompress.mjs`), sent with `Content-Encoding` and
//! `Vary: Accept-Encoding`, so nothing is compressed per request. Without a built
//! dashboard, `/` answers a short page saying how to build it.
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
        let head = req.method() == Method::HEAD;
        let accept = req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if safe
            && !file.ends_with('/')
            && let Some(data) = self.read(file).await
        {
            return Ok(self.respond(file, data, accept, head).await);
        }
        if path.starts_with("assets/") {
            return Err(ApiError::not_found("no such dashboard file"));
        }
        // The SPA's own routes, and the page saying it is not built.
        Ok(match self.read("index.html").await {
            Some(data) => self.respond("index.html", data, accept, head).await,
            None => Response::builder()
                .content_type("text/html; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(NOT_BUILT),
        })
    }

    /// `file` (whose bytes are `data`), or its precompressed copy in the best encoding
    /// `accept` (the request's Accept-Encoding) allows.
    async fn respond(
        &self,
        file: &str,
        mut data: Cow<'static, [u8]>,
        accept: &str,
        head: bool,
    ) -> Response {
        let cache = if file.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let mut builder = Response::builder()
            .content_type(content_type(file))
            .header(header::CACHE_CONTROL, cache);
        if compressible(file) {
            builder = builder.header(header::VARY, "accept-encoding");
            for (coding, ext) in ENCODINGS {
                if accepts(accept, coding)
                    && let Some(encoded) = self.read(&format!("{file}.{ext}")).await
                {
                    builder = builder.header(header::CONTENT_ENCODING, coding);
                    data = encoded;
                    break;
                }
            }
        }
        finish(builder, data, head)
    }
}

/// The encodings the build precompresses, in order of preference, with their files'
/// extensions.
const ENCODINGS: [(&str, &str); 2] = [("br", "br"), ("gzip", "gz")];

/// The files the build precompresses (text); the list of `precompress.mjs`.
fn compressible(file: &str) -> bool {
    matches!(
        extension(file).as_str(),
        "html" | "js" | "mjs" | "css" | "json" | "map" | "svg" | "txt" | "webmanifest"
    )
}

/// Whether an Accept-Encoding value allows `coding` (RFC 9110 §12.5.3): its own entry
/// with a q-value above 0, or else a `*` entry above 0. An empty header allows none.
fn accepts(accept_encoding: &str, coding: &str) -> bool {
    let mut star = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .map_or(1.0, |v| v.parse::<f32>().unwrap_or(0.0));
        if name.eq_ignore_ascii_case(coding) {
            return q > 0.0;
        }
        if name == "*" {
            star = q > 0.0;
        }
    }
    star
}

fn finish(builder: poem::ResponseBuilder, data: Cow<'static, [u8]>, head: bool) -> Response {
    if head {
        builder
            .header(header::CONTENT_LENGTH, data.len().to_string())
            .finish()
    } else {
        builder.body(data.into_owned())
    }
}

/// A file name's extension, lower-cased ("" without one).
fn extension(file: &str) -> String {
    file.rsplit_once('.')
        .map(|(_, e)| e)
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn content_type(file: &str) -> &'static str {
    match extension(file).as_str() {
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

    /// A dashboard served from a temporary folder holding `files` (path, content).
    fn dist(files: &[(&str, &str)]) -> (tempfile::TempDir, Dashboard) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        for (path, content) in files {
            std::fs::write(dir.path().join(path), content).unwrap();
        }
        let d = Dashboard::new(Some(dir.path().to_owned()));
        (dir, d)
    }

    #[tokio::test]
    async fn serves_files_with_cache_headers_and_falls_back_to_index() {
        let (_dir, d) = dist(&[
            ("index.html", "<html>app</html>"),
            ("assets/app-1234.js", "x"),
        ]);
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
    }

    #[tokio::test]
    async fn never_reads_a_file_outside_the_served_folder() {
        // The served folder is `root/dist`; a secret lies next to it, one `..` away.
        let root = tempfile::tempdir().unwrap();
        let dist = root.path().join("dist");
        std::fs::create_dir_all(dist.join("assets")).unwrap();
        std::fs::write(dist.join("index.html"), "<html>app</html>").unwrap();
        std::fs::write(root.path().join("secret.txt"), "SECRET").unwrap();
        let d = Dashboard::new(Some(dist));
        let get = |p: &str| Request::builder().uri(p.parse().unwrap()).finish();
        for path in [
            "/../secret.txt",
            "/a/../../secret.txt",
            "/assets/../../secret.txt",
            "/./../secret.txt",
            "/..%2fsecret.txt",
            "/%2e%2e/secret.txt",
        ] {
            let body = match d.serve(&get(path)).await {
                Ok(r) => r.into_body().into_string().await.unwrap(),
                Err(e) => format!("refused: {e:?}"),
            };
            assert!(
                !body.contains("SECRET"),
                "{path} read the file outside: {body}"
            );
        }
        // The same request path inside the folder is served: the guard, not a missing
        // file, kept the secret in.
        std::fs::write(root.path().join("dist/secret.txt"), "INSIDE").unwrap();
        let r = d.serve(&get("/secret.txt")).await.unwrap();
        assert_eq!(r.into_body().into_string().await.unwrap(), "INSIDE");
    }

    #[tokio::test]
    async fn sends_the_precompressed_copy_the_browser_accepts() {
        let (_dir, d) = dist(&[
            ("index.html", "<html>app</html>"),
            ("index.html.gz", "GZ-INDEX"),
            ("assets/app.js", "plain js"),
            ("assets/app.js.gz", "GZ"),
            ("assets/app.js.br", "BR"),
            ("assets/logo.png", "png"),
            ("assets/logo.png.gz", "never sent"),
        ]);
        let get = |path: &str, accept: Option<&str>| {
            let mut b = Request::builder().uri(path.parse().unwrap());
            if let Some(a) = accept {
                b = b.header(header::ACCEPT_ENCODING, a);
            }
            b.finish()
        };
        let fetch = async |path: &str, accept: Option<&str>| {
            let r = d.serve(&get(path, accept)).await.unwrap();
            let encoding = r
                .headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap().to_owned());
            let vary = r.headers().get(header::VARY).cloned();
            let body = r.into_body().into_string().await.unwrap();
            (encoding, vary.is_some(), body)
        };
        let some = |s: &str| Some(s.to_owned());

        // What Chromium sends: Brotli is preferred.
        let chromium = Some("gzip, deflate, br, zstd");
        assert_eq!(
            fetch("/assets/app.js", chromium).await,
            (some("br"), true, "BR".into())
        );
        assert_eq!(
            fetch("/assets/app.js", Some("gzip;q=1, br;q=0")).await,
            (some("gzip"), true, "GZ".into())
        );
        assert_eq!(
            fetch("/assets/app.js", Some("*;q=0.5")).await,
            (some("br"), true, "BR".into())
        );
        // Nothing acceptable, or no header: the file as it is, still marked as varying.
        for accept in [
            None,
            Some("identity"),
            Some("gzip;q=0, br;Q=0"),
            Some("*;q=0"),
        ] {
            assert_eq!(
                fetch("/assets/app.js", accept).await,
                (None, true, "plain js".into()),
                "{accept:?}"
            );
        }
        // index.html has only a gzip copy; the SPA's routes get it too.
        assert_eq!(
            fetch("/", chromium).await,
            (some("gzip"), true, "GZ-INDEX".into())
        );
        assert_eq!(
            fetch("/stores/abc", chromium).await,
            (some("gzip"), true, "GZ-INDEX".into())
        );
        // Images are not compressible: no copy is looked for, no Vary.
        assert_eq!(
            fetch("/assets/logo.png", chromium).await,
            (None, false, "png".into())
        );

        // HEAD states the length of what a GET would send.
        let mut head = get("/assets/app.js", chromium);
        head.set_method(Method::HEAD);
        let r = d.serve(&head).await.unwrap();
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "2");
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "br");
    }

    #[tokio::test]
    async fn says_how_to_build_when_there_is_no_dashboard() {
        let (_dir, d) = dist(&[]);
        let r = d
            .serve(&Request::builder().uri("/".parse().unwrap()).finish())
            .await
            .unwrap();
        let body = r.into_body().into_string().await.unwrap();
        assert!(body.contains("not built"), "{body}");
    }
}
