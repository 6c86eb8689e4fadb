//! Which web pages may use the API from a browser: this server's own, and the origins
//! `--allowed-origins` lists. Those get CORS answers (preflights included); a browser request
//! from any other origin is refused with 403 before it reaches a handler. That includes the
//! WebSocket handshake, which browsers do not hold to CORS: without this check, any page a
//! signed-in visitor opens could listen to their rooms with their cookie.
//!
//! Requests without an `Origin` (curl, servers, apps) are not a browser acting for someone
//! else, and pass. The rules are here; `routes::CheckOrigin` applies them to every request.

/// The origins allowed besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    /// `https://app.example.com` (scheme, host and port, lower-case, no trailing slash).
    listed: Vec<String>,
    /// `*`: every origin.
    any: bool,
}

impl AllowedOrigins {
    /// From `--allowed-origins` entries, each checked by [`origin`].
    pub fn new(entries: Vec<String>) -> AllowedOrigins {
        let any = entries.iter().any(|e| e == "*");
        let listed = entries.into_iter().filter(|e| e != "*").collect();
        AllowedOrigins { listed, any }
    }

    /// Whether pages from `origin` may use the API.
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.listed.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// One `--allowed-origins` entry: `*`, or an origin like `https://app.example.com:8443`
/// (normalized: lower-case, default port dropped).
pub fn origin(entry: &str) -> Result<String, String> {
    let entry = entry.trim();
    if entry == "*" {
        return Ok(entry.to_owned());
    }
    let url = url::Url::parse(entry).map_err(|e| format!("{entry:?} is not an origin: {e}"))?;
    let origin = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{entry:?} is not an http(s) origin"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{entry:?} has a path: an origin is scheme://host[:port] only"
        ));
    }
    Ok(origin)
}

/// Paths a page on another origin may call: the API, and the seed's stream and submit.
pub fn guarded(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/stream/") || path == "/submit"
}

/// Whether `origin` is this server's own: its host and port are the request's `Host`.
pub fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        let ok = AllowedOrigins::new(vec![
            origin("https://App.example.com").unwrap(),
            origin(" http://localhost:3000 ").unwrap(),
        ]);
        assert!(ok.allows("https://app.example.com"));
        assert!(ok.allows("http://localhost:3000"));
        assert!(!ok.allows("http://app.example.com"), "the scheme counts");
        assert!(!ok.allows("https://evil.example"));
        assert!(AllowedOrigins::new(vec![origin("*").unwrap()]).allows("https://x.example"));
        for bad in [
            "https://app.example.com/chat",
            "app.example.com",
            "ftp://x.example",
            "null",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_servers_own_origin_is_its_host() {
        assert!(same_origin("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(same_origin("https://chat.example", Some("chat.example")));
        assert!(!same_origin(
            "http://127.0.0.1:8081",
            Some("127.0.0.1:8080")
        ));
        assert!(!same_origin("null", Some("127.0.0.1:8080")));
        assert!(!same_origin("http://x", None));
    }
}
