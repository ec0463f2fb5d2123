//! Witnesses as typed values: the URL a Standby asks before promoting itself, and how it
//! checks an `https://` witness's certificate. Parsed once, in the configuration, so a witness
//! the configuration accepts is one the runtime can ask (an `https://` witness that was
//! accepted and then never asked silently turned the split-brain guard off).

use crate::address::PeerAddress;
use std::fmt;

/// The longest witness URL: the scheme, a 253-character host, a port and a path fit many times
/// over. A longer value is a paste gone wrong, and it would be repeated in every request and
/// every failover log line.
pub const WITNESS_URL_CHARS_MAX: usize = 512;
/// The port of an `http://` witness given without one.
pub const HTTP_PORT_DEFAULT: u16 = 80;
/// The port of an `https://` witness given without one.
pub const HTTPS_PORT_DEFAULT: u16 = 443;
/// Characters of a SHA-256 fingerprint in hex.
pub const SHA256_HEX_CHARS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WitnessScheme {
    Http,
    Https,
}

/// `http://HOST[:PORT]/PATH[?QUERY]` or `https://…`: no user information (a witness is asked
/// without credentials), no fragment (it is never sent), no spaces or control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WitnessUrl {
    scheme: WitnessScheme,
    address: PeerAddress,
    /// The authority as written (host, brackets, port if given): the `Host` header.
    authority: String,
    /// The path and query, starting with `/`.
    target: String,
}

/// How to write a witness, appended to every problem.
const WITNESS_USAGE: &str = "a witness is an http:// or https:// URL that answers whether it \
                             can reach the Primary, e.g. http://10.0.0.9:9444/witness/primary \
                             (a traffic controller's witness endpoint)";

impl WitnessUrl {
    /// Parses a witness URL; the error is the problem and the fix (the caller names the field
    /// and the value).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let fail = |problem: String| format!("{problem}; {WITNESS_USAGE}");
        if text.chars().count() > WITNESS_URL_CHARS_MAX {
            return Err(fail(format!(
                "longer than {WITNESS_URL_CHARS_MAX} characters"
            )));
        }
        if let Some(bad) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(fail(format!(
                "contains {bad:?} (spaces and control characters are not allowed; \
                 percent-encode them in the path)"
            )));
        }
        if let Some(bad) = text.chars().find(|c| !c.is_ascii()) {
            return Err(fail(format!(
                "contains {bad:?}; percent-encode non-ASCII characters"
            )));
        }
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("https://") {
            (WitnessScheme::Https, &text["https://".len()..])
        } else if lower.starts_with("http://") {
            (WitnessScheme::Http, &text["http://".len()..])
        } else {
            return Err(fail(
                "only http:// and https:// witnesses can be asked".into(),
            ));
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(fail(
                "user information (user@) is not allowed: a witness is asked without \
                 credentials"
                    .into(),
            ));
        }
        if target.contains('#') {
            return Err(fail(
                "a fragment (#…) is never sent to the witness; remove it".into(),
            ));
        }
        let port_default = match scheme {
            WitnessScheme::Http => HTTP_PORT_DEFAULT,
            WitnessScheme::Https => HTTPS_PORT_DEFAULT,
        };
        let address = PeerAddress::parse_with_default_port(authority, port_default)
            .map_err(|error| fail(format!("its host and port {error}")))?;
        let target = match target {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Ok(Self {
            scheme,
            address,
            authority: authority.to_owned(),
            target,
        })
    }

    pub fn scheme(&self) -> WitnessScheme {
        self.scheme
    }

    /// The host and port to connect to.
    pub fn address(&self) -> &PeerAddress {
        &self.address
    }

    /// The `Host` header: the authority as written.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request target: the path and query, starting with `/`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl fmt::Display for WitnessUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            WitnessScheme::Http => "http",
            WitnessScheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority, self.target)
    }
}

impl std::str::FromStr for WitnessUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl serde::Serialize for WitnessUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WitnessUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .map_err(|problem| serde::de::Error::custom(format!("witness {text:?}: {problem}")))
    }
}

/// How a Standby checks an `https://` witness's certificate: the same three choices as the
/// traffic controller's probes (`[probe_tls]` of `tandem lb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WitnessTls {
    /// A PEM file of CA certificates (absolute path) that signed the witness's certificate;
    /// its name is checked against the URL's host.
    CaFile(String),
    /// SHA-256 fingerprints (lowercase hex) of the witness's certificate itself.
    Pinned(Vec<String>),
    /// Any certificate (labs only): the answer could come from anyone on the path.
    Insecure,
}

/// A certificate fingerprint as operators paste it (`AB:CD:…` or `abcd…`), normalised to
/// lowercase hex without colons; the error is the problem and the fix.
pub fn normalize_sha256(text: &str) -> Result<String, String> {
    let normalized = text.trim().replace(':', "").to_ascii_lowercase();
    if normalized.len() == SHA256_HEX_CHARS && normalized.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(normalized)
    } else {
        Err(format!(
            "not a SHA-256 fingerprint: write the certificate's {SHA256_HEX_CHARS} hex digits \
             (colons allowed), e.g. as `openssl x509 -noout -fingerprint -sha256` prints it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_urls_parse_into_scheme_address_and_target() {
        let url = WitnessUrl::parse(" https://[fd00::9]:9444/witness/primary?x=1 ").unwrap();
        assert_eq!(url.scheme(), WitnessScheme::Https);
        assert_eq!(url.address().to_string(), "[fd00::9]:9444");
        assert_eq!(url.authority(), "[fd00::9]:9444");
        assert_eq!(url.target(), "/witness/primary?x=1");
        assert_eq!(
            url.to_string(),
            "https://[fd00::9]:9444/witness/primary?x=1"
        );
        let url = WitnessUrl::parse("HTTP://lb.example").unwrap();
        assert_eq!(url.address().port(), HTTP_PORT_DEFAULT);
        assert_eq!(url.to_string(), "http://lb.example/");
        assert_eq!(
            WitnessUrl::parse("https://lb.example?q").unwrap().target(),
            "/?q"
        );
        assert_eq!(
            WitnessUrl::parse("https://lb.example")
                .unwrap()
                .address()
                .port(),
            HTTPS_PORT_DEFAULT
        );
    }

    #[test]
    fn bad_witness_urls_are_refused_with_the_reason_and_the_fix() {
        let long = format!("http://lb/{}", "a".repeat(WITNESS_URL_CHARS_MAX));
        for (bad, why) in [
            ("ftp://lb/witness", "only http:// and https://"),
            ("lb:9444/witness", "only http:// and https://"),
            ("http://", "the host is empty"),
            ("http:///witness", "the host is empty"),
            ("http://user:pw@lb/witness", "user information"),
            ("http://lb/witness#part", "fragment"),
            ("http://lb/wit ness", "spaces and control characters"),
            ("http://lb/wit\u{0}ness", "spaces and control characters"),
            ("http://lb/wïtness", "percent-encode non-ASCII"),
            ("http://lb:0/witness", "1 to 65535"),
            (long.as_str(), "longer than 512"),
        ] {
            let problem = WitnessUrl::parse(bad).unwrap_err();
            assert!(problem.contains(why), "{bad:?}: {problem}");
            assert!(problem.contains("e.g. http://"), "{problem}");
        }
    }

    #[test]
    fn fingerprints_are_normalised() {
        let pin = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_sha256(&pin).unwrap(), "ab".repeat(32));
        assert!(normalize_sha256("abcd").is_err());
        assert!(normalize_sha256(&"zz".repeat(32)).is_err());
    }
}
