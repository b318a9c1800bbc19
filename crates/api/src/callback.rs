//! Where webhooks may go. A `callback_url` is chosen by whoever holds a service key, so the
//! gateway must not become their way into the networks it can reach: the URL must be
//! `https` (plain `http` only when the operator allows it), name a host and no user
//! information, and its host must be, or resolve only to, public unicast addresses. Loopback,
//! private, link-local, shared (CGNAT), multicast, unspecified, broadcast, documentation and
//! the other IANA special-purpose addresses, and IPv4-mapped or translated forms of them, are
//! refused unless the operator lists their network in `[api] callback_allow`.
//!
//! The check is made when the challenge is created (a refusal says why) and again at every
//! delivery, where the name is resolved once, by [`Pinned`], and the connection goes to the
//! addresses that were checked and nowhere else: a name that resolved to a public address at
//! creation and to an internal one later (DNS rebinding) is not posted to.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use ipnet::IpNet;

/// The longest a callback host's name may take to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest `callback_url`, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// What a [`Resolver`] gives back.
pub type Resolving = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// How callback hosts' names are resolved: the system's resolver, or one a test gives.
#[derive(Clone)]
pub struct Resolver(Arc<dyn Fn(&str) -> Resolving + Send + Sync>);

impl Resolver {
    /// The operating system's resolver (`getaddrinfo`).
    pub fn system() -> Resolver {
        Resolver::new(|host| {
            let host = host.to_string();
            Box::pin(async move {
                let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
                Ok(addrs.map(|a| a.ip()).collect())
            })
        })
    }

    /// A resolver that answers with `f`.
    pub fn new(f: impl Fn(&str) -> Resolving + Send + Sync + 'static) -> Resolver {
        Resolver(Arc::new(f))
    }

    /// Its answer for `host`, unbounded.
    pub fn answer(&self, host: &str) -> Resolving {
        (self.0)(host)
    }

    /// The addresses of `host`, within [`RESOLVE_TIMEOUT`].
    pub async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        match tokio::time::timeout(RESOLVE_TIMEOUT, self.answer(host)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")),
        }
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::system()
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// Where callbacks may go.
#[derive(Clone, Debug, Default)]
pub struct CallbackPolicy {
    /// Plain `http://` callbacks are allowed (`[api] allow_http_callbacks`).
    pub allow_http: bool,
    /// Networks callbacks may reach although they are not public (`[api] callback_allow`).
    pub allow: Vec<IpNet>,
    /// How names are resolved.
    pub resolver: Resolver,
}

/// The host a URL names.
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Why a callback is refused (said to the API client at creation; logged at delivery).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl CallbackPolicy {
    /// Checks the form of `url` and gives its host.
    fn host(&self, url: &str) -> Result<Host, Refused> {
        if url.len() > MAX_URL_LEN {
            return Err(Refused(format!(
                "callback_url is {} bytes long, at most {MAX_URL_LEN} are taken",
                url.len()
            )));
        }
        let u = reqwest::Url::parse(url)
            .map_err(|e| Refused(format!("callback_url is not a URL: {e}")))?;
        match u.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(Refused(
                    "callback_url must be https (http needs [api] allow_http_callbacks = true)"
                        .into(),
                ));
            }
            other => {
                return Err(Refused(format!("callback_url must be https, not {other}:")));
            }
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(Refused(
                "callback_url must not carry a user name or password".into(),
            ));
        }
        match u.host() {
            Some(url::Host::Ipv4(a)) => Ok(Host::Ip(IpAddr::V4(a))),
            Some(url::Host::Ipv6(a)) => Ok(Host::Ip(IpAddr::V6(a))),
            Some(url::Host::Domain(d)) if !d.is_empty() => Ok(Host::Name(d.to_string())),
            _ => Err(Refused("callback_url must name a host".into())),
        }
    }

    /// Whether a connection may go to `ip`.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Refused> {
        let plain = canonical(ip);
        if self
            .allow
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&plain))
        {
            return Ok(());
        }
        match special(ip) {
            None => Ok(()),
            Some(what) => Err(Refused(format!(
                "{ip} is {what}: callbacks go to public addresses only, unless [api] \
                 callback_allow lists the network"
            ))),
        }
    }

    /// Every address must be allowed, and there must be one.
    fn check_all(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Refused> {
        if addrs.is_empty() {
            return Err(Refused(format!(
                "callback_url's host {host} has no address"
            )));
        }
        for &a in addrs {
            self.check_address(a)
                .map_err(|Refused(why)| Refused(format!("callback_url's host {host}: {why}")))?;
        }
        Ok(())
    }

    /// The whole check at creation: the form, then the host's addresses (a name is resolved
    /// now, within [`RESOLVE_TIMEOUT`]).
    pub async fn check(&self, url: &str) -> Result<(), Refused> {
        match self.host(url)? {
            Host::Ip(ip) => self
                .check_address(ip)
                .map_err(|Refused(why)| Refused(format!("callback_url: {why}"))),
            Host::Name(name) => {
                let addrs = self.resolver.resolve(&name).await.map_err(|e| {
                    Refused(format!("callback_url's host {name} does not resolve: {e}"))
                })?;
                self.check_all(&name, &addrs)
            }
        }
    }

    /// The check at delivery that can be made before connecting: the form, and an address
    /// written in the URL (a name is checked by [`Pinned`] as the client resolves it).
    pub fn check_before_sending(&self, url: &str) -> Result<(), Refused> {
        match self.host(url)? {
            Host::Ip(ip) => self.check_address(ip),
            Host::Name(_) => Ok(()),
        }
    }
}

/// The HTTP client's resolver for deliveries: it resolves each name once, checks every
/// address, and gives the client those addresses only (or an error it cannot get around),
/// so the connection goes where the check said.
pub struct Pinned(pub CallbackPolicy);

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = policy.resolver.resolve(&host).await?;
            policy.check_all(&host, &addrs)?;
            let addrs: Vec<SocketAddr> = addrs.into_iter().map(|a| (a, 0).into()).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether an HTTP client error was a refusal of [`Pinned`].
pub fn refused_in(e: &reqwest::Error) -> Option<&Refused> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Some(r);
        }
        source = s.source();
    }
    None
}

/// The IPv4 address an IPv6 address carries, for the forms that reach it (IPv4-mapped
/// `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`), else
/// the address itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => embedded_v4(a).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s[..6] {
        [0, 0, 0, 0, 0, 0xffff] | [0, 0, 0, 0, 0xffff, 0] | [0x64, 0xff9b, 0, 0, 0, 0] => {
            Some(tail)
        }
        _ => None,
    }
}

/// IANA's IPv4 special-purpose registry (and multicast, the reserved 240/4): `(network,
/// prefix length, what it is)`. The first match names the address.
const V4_SPECIAL: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "a \"this network\" address (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "a private address (10.0.0.0/8)"),
    (
        [100, 64, 0, 0],
        10,
        "a shared (CGNAT) address (100.64.0.0/10)",
    ),
    ([127, 0, 0, 0], 8, "a loopback address (127.0.0.0/8)"),
    (
        [169, 254, 0, 0],
        16,
        "a link-local address (169.254.0.0/16)",
    ),
    ([172, 16, 0, 0], 12, "a private address (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "an IETF protocol address (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "a documentation address (192.0.2.0/24)"),
    ([192, 31, 196, 0], 24, "an AS112 address (192.31.196.0/24)"),
    ([192, 52, 193, 0], 24, "an AMT address (192.52.193.0/24)"),
    (
        [192, 88, 99, 0],
        24,
        "a 6to4 relay address (192.88.99.0/24)",
    ),
    ([192, 168, 0, 0], 16, "a private address (192.168.0.0/16)"),
    ([192, 175, 48, 0], 24, "an AS112 address (192.175.48.0/24)"),
    (
        [198, 18, 0, 0],
        15,
        "a benchmarking address (198.18.0.0/15)",
    ),
    (
        [198, 51, 100, 0],
        24,
        "a documentation address (198.51.100.0/24)",
    ),
    (
        [203, 0, 113, 0],
        24,
        "a documentation address (203.0.113.0/24)",
    ),
    ([224, 0, 0, 0], 4, "a multicast address (224.0.0.0/4)"),
    ([255, 255, 255, 255], 32, "the broadcast address"),
    ([240, 0, 0, 0], 4, "a reserved address (240.0.0.0/4)"),
];

/// IANA's IPv6 special-purpose registry and the other blocks outside public unicast that
/// lie in 2000::/3 (the forms that carry an IPv4 address are checked as that address).
const V6_SPECIAL: &[([u16; 8], u8, &str)] = &[
    (
        [0, 0, 0, 0, 0, 0, 0, 0],
        128,
        "the unspecified address (::)",
    ),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "the loopback address (::1)"),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "a local translation address (64:ff9b:1::/48)",
    ),
    (
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "a discard address (100::/64)",
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "a documentation address (2001:db8::/32)",
    ),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "an IETF protocol address (2001::/23, Teredo included)",
    ),
    (
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        "a 6to4 address (2002::/16)",
    ),
    (
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "a documentation address (3fff::/20)",
    ),
    (
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "an SRv6 address (5f00::/16)",
    ),
    (
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "a unique local address (fc00::/7)",
    ),
    (
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        "a link-local address (fe80::/10)",
    ),
    (
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "a site-local address (fec0::/10)",
    ),
    (
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        "a multicast address (ff00::/8)",
    ),
];

/// What kind of address `ip` is when it is not public unicast; `None` when it is.
fn special(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(a) => {
            let n = u32::from(a);
            V4_SPECIAL
                .iter()
                .find(|(net, len, _)| {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                    n & mask == u32::from(Ipv4Addr::from(*net)) & mask
                })
                .map(|(_, _, what)| what.to_string())
        }
        IpAddr::V6(a) => {
            if let Some(v4) = embedded_v4(a) {
                return special(IpAddr::V4(v4)).map(|what| format!("an IPv6 form of {what}"));
            }
            let n = u128::from(a);
            if let Some((_, _, what)) = V6_SPECIAL.iter().find(|(net, len, _)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
                n & mask == u128::from(Ipv6Addr::from(*net)) & mask
            }) {
                return Some(what.to_string());
            }
            // Only 2000::/3 is allocated as global unicast.
            (a.segments()[0] & 0xe000 != 0x2000)
                .then(|| "not a global unicast address (outside 2000::/3)".to_string())
        }
    }
}

/// A network of `[api] callback_allow`: `10.0.0.0/8`, `fd00::/8`, or one address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("{s:?} is not a network such as \"10.0.0.0/8\" or \"fd00::/8\", nor an address")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> Option<String> {
        special(s.parse().unwrap())
    }

    #[test]
    fn only_public_unicast_passes() {
        for ok in [
            "93.184.215.14",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused(ok), None, "{ok}");
        }
        for (bad, words) in [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("0.0.0.0", "this network"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.10", "documentation"),
            ("203.0.113.10", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("192.0.0.8", "IETF"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "Teredo"),
            ("2002:7f00:1::1", "6to4"),
            ("::ffff:127.0.0.1", "IPv6 form of a loopback"),
            ("::ffff:10.0.0.1", "IPv6 form of a private"),
            ("::ffff:0:169.254.169.254", "IPv6 form of a link-local"),
            ("64:ff9b::a00:1", "IPv6 form of a private"),
            ("64:ff9b:1::1", "local translation"),
            ("::127.0.0.1", "outside 2000::/3"),
            ("100::1", "discard"),
        ] {
            let why = refused(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(why.contains(words), "{bad}: {why}");
        }
    }

    #[test]
    fn the_allow_list_admits_its_networks_in_either_form() {
        let policy = CallbackPolicy {
            allow: vec![parse_net("127.0.0.0/8").unwrap(), parse_net("::1").unwrap()],
            ..CallbackPolicy::default()
        };
        for ok in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(policy.check_address(ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for bad in ["10.0.0.1", "::2", "169.254.169.254"] {
            assert!(policy.check_address(bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert_eq!(
            parse_net("10.1.2.3/8").unwrap(),
            parse_net("10.0.0.0/8").unwrap()
        );
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("intranet").is_err());
    }

    #[test]
    fn urls_must_be_https_with_a_host_and_no_user() {
        let policy = CallbackPolicy::default();
        let form = |u: &str| policy.host(u).map(|_| ()).map_err(|Refused(why)| why);
        assert_eq!(form("https://idp.example/hook?s=1"), Ok(()));
        assert!(
            form("http://idp.example/hook")
                .unwrap_err()
                .contains("https")
        );
        assert!(form("ftp://idp.example/").unwrap_err().contains("https"));
        assert!(
            form("https://u:p@idp.example/")
                .unwrap_err()
                .contains("user")
        );
        assert!(form("https://u@idp.example/").unwrap_err().contains("user"));
        assert!(form("not a url").unwrap_err().contains("not a URL"));
        assert!(form("file:///etc/passwd").is_err());
        let long = format!("https://idp.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(form(&long).unwrap_err().contains("at most 2048"));
        // The WHATWG parser reads these as 127.0.0.1: they are checked as such.
        for sneaky in ["https://2130706433/", "https://0x7f.1/", "https://127.1/"] {
            assert!(
                matches!(policy.host(sneaky), Ok(Host::Ip(ip)) if ip == Ipv4Addr::LOCALHOST),
                "{sneaky}"
            );
        }
        let http = CallbackPolicy {
            allow_http: true,
            ..CallbackPolicy::default()
        };
        assert!(http.host("http://idp.example/hook").is_ok());
    }
}
