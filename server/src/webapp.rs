//! The web client (`web/`), built (`web/dist/`, committed; see docs/architecture.md) and
//! embedded in the binary, so that `server all`'s gateway serves it at `/` with no node and
//! no files at run time. The app calls the API on the same origin, so no CORS is needed.
//! deploy/nginx.conf serves the same files and headers.

use http::{header, Response};

/// The security headers of every page and asset: scripts, styles and calls only from
/// this origin (no inline script, no third-party anything), never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every file of web/dist: its path under `/`, media type and bytes. The build names its
/// files without hashes (web/vite.config.ts), so this list only changes with the build's
/// shape, and a test checks it names every file there.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/dist/index.html"),
    ),
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/dist/assets/app.js"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/dist/assets/app.css"),
    ),
];

/// The app's answer to a GET of `path`, if `path` is one of its files (`/` is the page).
pub fn serve(path: &str) -> Option<Response<dropshot::Body>> {
    let path = if path == "/" { "/index.html" } else { path };
    let (_, media_type, bytes) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    Response::builder()
        .header(header::CONTENT_TYPE, *media_type)
        // Unhashed names: revalidate every time (cheap, and never a stale app).
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .body(dropshot::Body::from(bytes.to_vec()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::ASSETS;
    use std::path::Path;

    /// A build that emits a file this list does not name would serve a page missing it.
    #[test]
    fn every_built_file_is_embedded() {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(format!(
                        "/{}",
                        path.strip_prefix(root).unwrap().to_string_lossy()
                    ));
                }
            }
        }
        let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
        let mut built = Vec::new();
        walk(&dist, &dist, &mut built);
        built.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|(p, _, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(built, embedded);
    }
}
