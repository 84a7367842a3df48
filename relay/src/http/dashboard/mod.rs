//! The dashboard at `/admin/ui/` (`docs/operations.md` "Dashboard"): three static files
//! compiled into the binary (no build step, no CDN, no external font), served with their
//! content types, an `ETag` to revalidate against, and a Content-Security-Policy that allows
//! nothing but this origin's own script, style and API. The page signs in with the admin token
//! and calls the admin API like the CLI does; the files themselves are public, and are served
//! only when the admin API is enabled (an admin token is configured).

use std::sync::{Arc, LazyLock};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::http::error::ApiError;
use crate::state::AppState;

/// Where the dashboard lives.
pub const PREFIX: &str = "/admin/ui";

/// Scripts, styles and requests only from this origin; no inline code, no frames, no forms
/// posting elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("assets/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/app.css"),
    },
];

/// The `ETag` of each asset: a hash of its bytes, so a new build's files are fetched again.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{:016x}\"", fnv1a(a.bytes)))
        .collect()
});

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response()
}

fn serve(state: &AppState, name: &str, request: &HeaderMap) -> Response {
    if state.config.admin_token.is_empty() {
        return not_found();
    }
    let Some((i, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return not_found();
    };
    let etag = ETAGS.get(i).map(String::as_str).unwrap_or("\"0\"");
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time (cheap with the ETag): a relay upgrade never leaves a stale page.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /admin/ui` → `/admin/ui/`.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/admin/ui/")
}

/// `GET /admin/ui/`
pub async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    serve(&state, "index.html", &headers)
}

/// `GET /admin/ui/{file}`
pub async fn file(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&state, &name, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_no_inline_code_and_nothing_from_elsewhere() {
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap_or_default();
        // CSP forbids inline script and style; the page must not need them.
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("style="), "inline style");
        assert!(!html.contains("onclick="), "inline handler");
        for asset in &ASSETS {
            let text = std::str::from_utf8(asset.bytes).unwrap_or_default();
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} loads from elsewhere",
                asset.name
            );
        }
        let js = std::str::from_utf8(ASSETS[1].bytes).unwrap_or_default();
        assert!(
            !js.contains("innerHTML"),
            "relay data must be shown as text"
        );
        assert!(
            !js.contains("localStorage"),
            "the token is kept for the session only"
        );
    }

    #[test]
    fn etags_differ_per_file() {
        assert_eq!(ETAGS.len(), ASSETS.len());
        assert_ne!(ETAGS[0], ETAGS[1]);
    }
}
