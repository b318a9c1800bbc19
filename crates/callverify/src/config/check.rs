//! The checks [`Config::parse`] runs on a file that deserialised, one concern each. A file
//! with several mistakes is told the first one [`all`] meets, in the order it runs them.

use std::collections::HashSet;

use toml::Spanned;

use super::{
    Amd, ApiSettings, CallSettings, Config, ConfigError, Eam, EamGraph, Limit, Media,
    PolicySettings, PortRange, Radius, Sip, Source, SrtpName, StoreSettings, Timers, Transport,
    Trunk,
};

/// What a check finds: nothing, or the first error.
type Checked = Result<(), ConfigError>;

/// Every check, in the order their errors are reported; `env` looks up the trunks' password
/// variables.
pub(super) fn all(c: &Config, src: &Source, env: impl Fn(&str) -> Option<String>) -> Checked {
    listeners(&c.sip, src)?;
    advertised(&c.sip, src)?;
    codecs(&c.sip, src)?;
    timers(&c.sip.timers, src)?;
    tls_listeners(&c.sip, src)?;
    trunks(c, src, &env)?;
    media(&c.media, src)?;
    public_media(c, src)?;
    script(&c.call, &c.sip.timers, src)?;
    challenge_lifetimes(&c.api, src)?;
    policy(&c.policy, src)?;
    demo(c, src)?;
    retention(&c.store, src)?;
    http(&c.api, src)?;
    callbacks(&c.api, src)?;
    amd(&c.call.amd, src)?;
    if let Some(e) = &c.eam {
        eam(e.get_ref(), src, &env)?;
    }
    if let Some(r) = &c.radius {
        radius(r, src, &env)?;
    }
    tls_files(c, src)
}

/// At least one listener, each on an address peers can reach.
fn listeners(sip: &Sip, src: &Source) -> Checked {
    if sip.listen.get_ref().is_empty() {
        return Err(src.at(
            &sip.listen,
            "sip.listen is empty: give at least one transport:address:port",
        ));
    }
    if let Some(l) = sip
        .listen
        .get_ref()
        .iter()
        .find(|l| l.addr.ip().is_unspecified())
    {
        return Err(src.at(
            &sip.listen,
            format!(
                "listen address {} is unspecified: give the address peers reach (it goes into Via and Contact)",
                l.addr
            ),
        ));
    }
    Ok(())
}

/// Each advertised address is for a listener of `sip.listen`, of its address family, and
/// one peers can be sent to (not unspecified, port 0, multicast or broadcast).
fn advertised(sip: &Sip, src: &Source) -> Checked {
    for (listen, adv) in sip.advertise.get_ref() {
        let Some(l) = sip.listen.get_ref().iter().find(|l| *l == listen) else {
            let listed: Vec<String> = sip
                .listen
                .get_ref()
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect();
            return Err(src.at(
                adv,
                format!(
                    "sip.advertise names \"{listen}\", which is not in sip.listen ({}): write the listener as it is written there",
                    listed.join(", ")
                ),
            ));
        };
        let a = adv.get_ref().for_listener(l.addr);
        if let Some(why) = unreachable_address(a.ip()) {
            return Err(src.at(
                adv,
                format!("sip.advertise for \"{listen}\": {} is {why}: give the public address peers reach", a.ip()),
            ));
        }
        if a.port() == 0 {
            return Err(src.at(
                adv,
                format!("sip.advertise for \"{listen}\": port 0: give the port forwarded to the listener"),
            ));
        }
        if a.is_ipv4() != l.addr.is_ipv4() {
            return Err(src.at(
                adv,
                format!(
                    "sip.advertise for \"{listen}\": {a} is not of the listener's address family"
                ),
            ));
        }
    }
    Ok(())
}

/// Why `ip` cannot be where peers send to, if it cannot.
fn unreachable_address(ip: std::net::IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip == std::net::IpAddr::from([255, 255, 255, 255]) {
        Some("broadcast")
    } else {
        None
    }
}

/// At least one codec offered.
fn codecs(sip: &Sip, src: &Source) -> Checked {
    if sip.codecs.get_ref().is_empty() {
        return Err(src.at(&sip.codecs, "sip.codecs is empty: offer PCMU, PCMA or both"));
    }
    Ok(())
}

/// T1 above 0, T2 at least T1, a ring timeout above 0.
fn timers(t: &Timers, src: &Source) -> Checked {
    if *t.t1_ms.get_ref() == 0 {
        return Err(src.at(&t.t1_ms, "t1_ms must be above 0"));
    }
    if t.t2_ms.get_ref() < t.t1_ms.get_ref() {
        return Err(src.at(
            &t.t2_ms,
            format!(
                "t2_ms ({}) must be at least t1_ms ({})",
                t.t2_ms.get_ref(),
                t.t1_ms.get_ref()
            ),
        ));
    }
    if *t.ring_timeout_s.get_ref() == 0 {
        return Err(src.at(&t.ring_timeout_s, "ring_timeout_s must be above 0"));
    }
    Ok(())
}

/// A TLS listener has a certificate to present.
fn tls_listeners(sip: &Sip, src: &Source) -> Checked {
    let tls_listener = sip
        .listen
        .get_ref()
        .iter()
        .any(|l| l.transport == Transport::Tls);
    if tls_listener && sip.tls.is_none() {
        return Err(src.at(
            &sip.listen,
            "a tls: listener needs [sip.tls] with cert_file and key_file",
        ));
    }
    Ok(())
}

/// At least one trunk, each named once, with its credentials, a listener for its transport,
/// TLS settings only over TLS, and a username if it registers.
fn trunks(c: &Config, src: &Source, env: &impl Fn(&str) -> Option<String>) -> Checked {
    if c.trunks.is_empty() {
        return Err(src.error(None, "no [[trunk]]: calls need at least one"));
    }
    let mut names = HashSet::new();
    for trunk in &c.trunks {
        if trunk.name.get_ref().is_empty() || !names.insert(trunk.name.get_ref().clone()) {
            return Err(src.at(
                &trunk.name,
                format!(
                    "trunk name {:?} is empty or used twice",
                    trunk.name.get_ref()
                ),
            ));
        }
        credentials(trunk, src, env)?;
        served(trunk, &c.sip, src)?;
        tls_only(trunk, src)?;
        if trunk.register && trunk.username.is_none() {
            return Err(src.at(
                &trunk.name,
                format!(
                    "trunk {:?}: register = true needs a username",
                    trunk.name.get_ref()
                ),
            ));
        }
    }
    Ok(())
}

/// A username and a password variable go together, and the variable is set.
fn credentials(trunk: &Trunk, src: &Source, env: &impl Fn(&str) -> Option<String>) -> Checked {
    let name = trunk.name.get_ref();
    match (&trunk.username, &trunk.password_env) {
        (Some(_), Some(var)) if env(var.get_ref()).is_none_or(|v| v.is_empty()) => Err(src.at(
            var,
            format!(
                "trunk {name:?}: environment variable {} is not set",
                var.get_ref()
            ),
        )),
        (Some(u), None) => Err(src.at(u, format!("trunk {name:?}: username without password_env"))),
        (None, Some(v)) => Err(src.at(v, format!("trunk {name:?}: password_env without username"))),
        _ => Ok(()),
    }
}

/// A listener of the trunk's transport and address family.
fn served(trunk: &Trunk, sip: &Sip, src: &Source) -> Checked {
    let family = if trunk.address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    let served = sip
        .listen
        .get_ref()
        .iter()
        .any(|l| l.transport == trunk.transport && l.addr.is_ipv4() == trunk.address.is_ipv4());
    if !served {
        return Err(src.at(
            &trunk.name,
            format!(
                "trunk {:?} uses {} over {family} but sip.listen has no such listener",
                trunk.name.get_ref(),
                trunk.transport.name(),
            ),
        ));
    }
    Ok(())
}

/// The certificate settings and SRTP only on a TLS trunk.
fn tls_only(trunk: &Trunk, src: &Source) -> Checked {
    if trunk.transport == Transport::Tls {
        return Ok(());
    }
    let tls_only = [
        trunk
            .tls_server_name
            .as_ref()
            .map(|v| (v.span(), "tls_server_name")),
        trunk
            .tls_ca_file
            .as_ref()
            .map(|v| (v.span(), "tls_ca_file")),
        (*trunk.srtp.get_ref() != SrtpName::Off).then(|| (trunk.srtp.span(), "srtp")),
    ];
    if let Some((span, key)) = tls_only.into_iter().flatten().next() {
        return Err(src.error(
            Some(span),
            format!(
                "trunk {:?}: {key} needs transport = \"tls\" (SDES keys and certificate checks are for TLS)",
                trunk.name.get_ref()
            ),
        ));
    }
    Ok(())
}

/// Room for an RTP/RTCP pair above the system ports, and RTCP reports at some interval.
fn media(m: &Media, src: &Source) -> Checked {
    let PortRange { first, last } = *m.rtp_ports.get_ref();
    if first < 1024 || last < first.saturating_add(1) {
        return Err(src.at(
            &m.rtp_ports,
            format!("rtp_ports {first}-{last}: need first >= 1024 and room for at least one pair"),
        ));
    }
    if *m.rtcp_interval_s.get_ref() == 0 {
        return Err(src.at(&m.rtcp_interval_s, "rtcp_interval_s must be above 0"));
    }
    Ok(())
}

/// `[media] public_address` is one peers can send to, of the media address's family; and
/// behind a NAT both halves are given: advertised SIP addresses without a public media
/// address (or the other way round) would have the phone's audio, or its requests, sent to
/// a private address, and calls fail without a word.
fn public_media(c: &Config, src: &Source) -> Checked {
    let advertising = !c.sip.advertise.get_ref().is_empty();
    let Some(public) = &c.media.public_address else {
        if advertising {
            return Err(src.at(
                &c.sip.advertise,
                format!(
                    "sip.advertise is set but [media] public_address is not: the SDP would name {}, \
                     which a phone on the NAT's public side cannot reach; set public_address \
                     (to the media address itself if media is not behind the NAT)",
                    c.media_settings().address
                ),
            ));
        }
        return Ok(());
    };
    let ip = *public.get_ref();
    if let Some(why) = unreachable_address(ip) {
        return Err(src.at(
            public,
            format!(
                "media.public_address {ip} is {why}: give the public address RTP is forwarded from"
            ),
        ));
    }
    let local = c.media_settings().address;
    if ip.is_ipv4() != local.is_ipv4() {
        return Err(src.at(
            public,
            format!("media.public_address {ip} is not of the media address {local}'s family"),
        ));
    }
    if !advertising {
        return Err(src.at(
            public,
            "media.public_address is set but sip.advertise is not: Via and Contact would name the \
             listeners' private addresses, so the phone's BYE and re-INVITEs would be lost; advertise \
             the listeners' public addresses (or each listener itself if SIP is not behind the NAT)",
        ));
    }
    Ok(())
}

/// A known language, 1 to 10 plays, timeouts above 0, and a call longer than its ringing.
fn script(c: &CallSettings, timers: &Timers, src: &Source) -> Checked {
    if c.language.get_ref().parse::<media::Language>().is_err() {
        return Err(src.at(
            &c.language,
            format!(
                "unknown language {:?}, expected {}",
                c.language.get_ref(),
                media::Language::choices()
            ),
        ));
    }
    if store::Confirmation::from_name(c.confirmation.get_ref()).is_none() {
        return Err(src.at(
            &c.confirmation,
            format!(
                "unknown confirmation {:?}, expected pound, keypad_code or spoken_code",
                c.confirmation.get_ref()
            ),
        ));
    }
    if !(1..=10).contains(c.repeats.get_ref()) {
        return Err(src.at(
            &c.repeats,
            format!("repeats must be 1 to 10, found {}", c.repeats.get_ref()),
        ));
    }
    for (v, name) in [
        (&c.first_key_timeout_s, "first_key_timeout_s"),
        (&c.digit_timeout_s, "digit_timeout_s"),
    ] {
        if *v.get_ref() == 0 {
            return Err(src.at(v, format!("{name} must be above 0")));
        }
    }
    let ring = *timers.ring_timeout_s.get_ref();
    let call = *c.call_timeout_s.get_ref();
    if call <= ring {
        return Err(src.at(
            &c.call_timeout_s,
            format!(
                "call_timeout_s ({call}) must be longer than sip.timers.ring_timeout_s ({ring})"
            ),
        ));
    }
    Ok(())
}

/// A challenge lives some time, a trusted device at most a year.
fn challenge_lifetimes(a: &ApiSettings, src: &Source) -> Checked {
    if *a.challenge_ttl_s.get_ref() == 0 {
        return Err(src.at(&a.challenge_ttl_s, "challenge_ttl_s must be above 0"));
    }
    if *a.trusted_device_days.get_ref() > 365 {
        return Err(src.at(
            &a.trusted_device_days,
            "trusted_device_days must be at most 365",
        ));
    }
    Ok(())
}

/// The countries and number types that may be called, the limits' windows, the countries'
/// caps and the fraud block.
fn policy(p: &PolicySettings, src: &Source) -> Checked {
    allowed_countries(p, src)?;
    allowed_number_types(p, src)?;
    limit_windows(p, src)?;
    let c = p.per_country.get_ref();
    if let Some(bad) = c.overrides.keys().find(|k| !is_country_code(k)) {
        return Err(src.at(
            &p.per_country,
            format!("per_country.overrides: {bad:?} is not an ISO 3166 code such as \"JP\""),
        ));
    }
    if !(1..=8760).contains(p.fraud_block_hours.get_ref()) {
        return Err(src.at(
            &p.fraud_block_hours,
            "fraud_block_hours must be 1 to 8760 (a year)",
        ));
    }
    Ok(())
}

/// Given, not empty, and ISO 3166 codes or `"*"` alone.
fn allowed_countries(p: &PolicySettings, src: &Source) -> Checked {
    let Some(list) = &p.allowed_countries else {
        return Err(src.error(
            None,
            "[policy] has no allowed_countries: list the countries callverify may call \
             (ISO 3166 codes, e.g. allowed_countries = [\"JP\", \"US\"]), or write \
             allowed_countries = [\"*\"] to call every country",
        ));
    };
    let countries = list.get_ref();
    if countries.is_empty() {
        return Err(src.at(
            list,
            "allowed_countries is empty: no number could be called; list the countries \
             (e.g. [\"JP\"]) or write [\"*\"] for every country",
        ));
    }
    if countries.iter().any(|c| c == "*") && countries.len() > 1 {
        return Err(src.at(list, "allowed_countries: \"*\" (every country) goes alone"));
    }
    if let Some(bad) = countries
        .iter()
        .find(|c| c.as_str() != "*" && !is_country_code(c))
    {
        return Err(src.at(
            list,
            format!(
                "allowed_countries: {bad:?} is not an ISO 3166 code such as \"JP\" (or \"*\" for every country)"
            ),
        ));
    }
    Ok(())
}

/// Absent, or some of the types libphonenumber knows.
fn allowed_number_types(p: &PolicySettings, src: &Source) -> Checked {
    let Some(types) = &p.allowed_number_types else {
        return Ok(());
    };
    if types.get_ref().is_empty() {
        return Err(src.at(
            types,
            "allowed_number_types is empty: no number could be called",
        ));
    }
    if let Some(bad) = types
        .get_ref()
        .iter()
        .find(|t| api::NumberType::from_name(t).is_none())
    {
        let known: Vec<&str> = api::NumberType::ALL.iter().map(|t| t.as_str()).collect();
        return Err(src.at(
            types,
            format!(
                "allowed_number_types: unknown type {bad:?}, expected some of {}",
                known.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Every rate limit's window is a second to a week.
fn limit_windows(p: &PolicySettings, src: &Source) -> Checked {
    let c = p.per_country.get_ref();
    let limits = [
        ("per_number", p.per_number),
        ("per_user", p.per_user),
        ("per_api_key", p.per_api_key),
        (
            "per_country",
            Limit {
                max: c.max,
                window_s: c.window_s,
            },
        ),
    ];
    for (name, l) in limits {
        if l.window_s == 0 || l.window_s > 7 * 86_400 {
            return Err(src.error(
                None,
                format!("policy.{name}: window_s must be 1 to 604800 (a week)"),
            ));
        }
    }
    Ok(())
}

/// The demo page's numbers are E.164, and the page has some.
fn demo(c: &Config, src: &Source) -> Checked {
    let numbers = &c.demo.numbers;
    if let Some(bad) = numbers
        .get_ref()
        .iter()
        .find(|n| store::PhoneNumber::parse(n).is_err())
    {
        return Err(src.at(
            numbers,
            format!("demo.numbers: {bad:?} is not an E.164 number such as \"+819012345678\""),
        ));
    }
    if c.api.demo_page && numbers.get_ref().is_empty() {
        return Err(src.error(
            None,
            "api.demo_page = true needs [demo] numbers: the only numbers the page registers \
             (e.g. numbers = [\"+819012345678\"], a phone of the demo's)",
        ));
    }
    Ok(())
}

/// The call log is kept a day to ten years.
fn retention(s: &StoreSettings, src: &Source) -> Checked {
    let days = &s.retention_days;
    if !(1..=3650).contains(days.get_ref()) {
        return Err(src.at(
            days,
            format!("retention_days must be 1 to 3650, found {}", days.get_ref()),
        ));
    }
    Ok(())
}

/// The HTTP server's timeouts and caps are within bounds.
fn http(a: &ApiSettings, src: &Source) -> Checked {
    for (v, name) in [
        (&a.header_timeout_s, "header_timeout_s"),
        (&a.request_timeout_s, "request_timeout_s"),
    ] {
        if !(1..=3600).contains(v.get_ref()) {
            return Err(src.at(
                v,
                format!("{name} must be 1 to 3600 seconds, found {}", v.get_ref()),
            ));
        }
    }
    if !(1..=1_000_000).contains(a.max_connections.get_ref()) {
        return Err(src.at(
            &a.max_connections,
            format!(
                "max_connections must be 1 to 1000000, found {}",
                a.max_connections.get_ref()
            ),
        ));
    }
    for (v, name) in [
        (&a.max_streams_per_poll_token, "max_streams_per_poll_token"),
        (&a.max_streams_per_api_key, "max_streams_per_api_key"),
    ] {
        if *v.get_ref() == 0 {
            return Err(src.at(
                v,
                format!("{name} must be at least 1 (long polls and event streams need it)"),
            ));
        }
    }
    Ok(())
}

/// The networks callbacks may reach although not public are networks.
fn callbacks(a: &ApiSettings, src: &Source) -> Checked {
    let nets = &a.callback_allow;
    if let Some(Err(e)) = nets
        .get_ref()
        .iter()
        .map(|n| api::callback::parse_net(n))
        .find(Result::is_err)
    {
        return Err(src.at(nets, format!("callback_allow: {e}")));
    }
    Ok(())
}

/// A gap in speech is shorter than a greeting.
fn amd(amd: &Amd, src: &Source) -> Checked {
    if amd.enabled && amd.gap_ms.get_ref() >= amd.max_greeting_ms.get_ref() {
        return Err(src.at(
            &amd.gap_ms,
            format!(
                "amd.gap_ms ({}) must be shorter than amd.max_greeting_ms ({})",
                amd.gap_ms.get_ref(),
                amd.max_greeting_ms.get_ref()
            ),
        ));
    }
    Ok(())
}

/// The certificate, key and CA files load.
fn tls_files(c: &Config, src: &Source) -> Checked {
    match c.tls_settings() {
        Ok(_) => Ok(()),
        Err(e) => Err(src.error(
            c.sip.tls.as_ref().map(toml::Spanned::span),
            format!("TLS: {e}"),
        )),
    }
}

/// Two capital letters, as ISO 3166 codes are written.
fn is_country_code(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

/// `[eam]`: its URLs, the applications and tenants that may ask, its times, the claim that
/// names users, the help text and `[eam.graph]`.
fn eam(e: &Eam, src: &Source, env: &impl Fn(&str) -> Option<String>) -> Checked {
    issuer(&e.issuer, src)?;
    listed(
        &e.client_ids,
        "eam.client_ids",
        "the Entra application (client) id",
        src,
    )?;
    listed(&e.tenants, "eam.tenants", "the Entra tenant id", src)?;
    if let Some(t) = e.tenants.get_ref().iter().find(|t| !is_guid(t)) {
        return Err(src.at(
            &e.tenants,
            format!("eam.tenants: {t:?} is not a tenant id (a GUID)"),
        ));
    }
    listed(
        &e.redirect_uris,
        "eam.redirect_uris",
        "Entra's federation endpoint",
        src,
    )?;
    for uri in e.redirect_uris.get_ref() {
        web_url(uri, "eam.redirect_uris", src, &e.redirect_uris)?;
    }
    web_url(
        e.entra_discovery_url.get_ref(),
        "eam.entra_discovery_url",
        src,
        &e.entra_discovery_url,
    )?;
    in_range(&e.hint_max_age_s, 60..=3600, "eam.hint_max_age_s", src)?;
    in_range(&e.key_publish_hours, 0..=720, "eam.key_publish_hours", src)?;
    if !["oid", "preferred_username"].contains(&e.user_id_claim.get_ref().as_str()) {
        return Err(src.at(
            &e.user_id_claim,
            format!(
                "eam.user_id_claim is {:?}: give \"oid\" or \"preferred_username\"",
                e.user_id_claim.get_ref()
            ),
        ));
    }
    if let Some(h) = &e.help {
        help(h, src)?;
    }
    match &e.graph {
        Some(g) => graph(g.get_ref(), src, env),
        None => Ok(()),
    }
}

/// The issuer: a web URL with nothing after its path (it is compared as written).
fn issuer(i: &Spanned<String>, src: &Source) -> Checked {
    let url = web_url(i.get_ref(), "eam.issuer", src, i)?;
    if i.get_ref().ends_with('/') || url.query().is_some() || url.fragment().is_some() {
        return Err(src.at(
            i,
            format!(
                "eam.issuer {:?} must not end with '/' nor have a query or a fragment",
                i.get_ref()
            ),
        ));
    }
    Ok(())
}

/// At least one value, each given once and not empty.
fn listed(v: &Spanned<Vec<String>>, name: &str, what: &str, src: &Source) -> Checked {
    if v.get_ref().is_empty() {
        return Err(src.at(v, format!("{name} is empty: give at least one ({what})")));
    }
    let mut seen = HashSet::new();
    if let Some(x) = v
        .get_ref()
        .iter()
        .find(|x| x.trim().is_empty() || !seen.insert(x.as_str()))
    {
        return Err(src.at(v, format!("{name}: {x:?} is empty or given twice")));
    }
    Ok(())
}

/// A URL to fetch or send a browser to: https, or http on a loopback host (a test's), with
/// a host and no user or password in it.
fn web_url(
    u: &str,
    name: &str,
    src: &Source,
    at: &Spanned<impl Sized>,
) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(u)
        .map_err(|e| src.at(at, format!("{name}: {u:?} is not a URL ({e})")))?;
    let loopback = url
        .host_str()
        .is_some_and(|h| ["127.0.0.1", "[::1]", "localhost"].contains(&h));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || url.host().is_none() {
        return Err(src.at(
            at,
            format!(
                "{name}: {u:?} must be an https URL (http only on 127.0.0.1, ::1 or localhost)"
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(src.at(
            at,
            format!("{name}: {u:?} must not hold a user or password"),
        ));
    }
    Ok(url)
}

/// A number within `range`.
fn in_range(
    v: &Spanned<u64>,
    range: std::ops::RangeInclusive<u64>,
    name: &str,
    src: &Source,
) -> Checked {
    if !range.contains(v.get_ref()) {
        return Err(src.at(
            v,
            format!(
                "{name} is {}: give {} to {}",
                v.get_ref(),
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(())
}

/// The help text: one line of at most 200 characters.
fn help(h: &Spanned<String>, src: &Source) -> Checked {
    let text = h.get_ref();
    if text.trim().is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err(src.at(
            h,
            format!(
                "eam.help must be one line of 1 to 200 characters (it has {})",
                text.chars().count()
            ),
        ));
    }
    Ok(())
}

/// `[eam.graph]`: a client id, its secret's variable set, web URLs.
fn graph(g: &EamGraph, src: &Source, env: &impl Fn(&str) -> Option<String>) -> Checked {
    if g.client_id.get_ref().trim().is_empty() {
        return Err(src.at(
            &g.client_id,
            "eam.graph.client_id is empty: give the Graph application's client id",
        ));
    }
    let var = g.client_secret_env.get_ref();
    if env(var).is_none_or(|v| v.is_empty()) {
        return Err(src.at(
            &g.client_secret_env,
            format!(
                "{var} is not set: [eam.graph] reads the Graph application's client secret from it"
            ),
        ));
    }
    web_url(
        g.login_url.get_ref(),
        "eam.graph.login_url",
        src,
        &g.login_url,
    )?;
    web_url(g.base_url.get_ref(), "eam.graph.base_url", src, &g.base_url)?;
    Ok(())
}

/// Whether `s` is a GUID: 8-4-4-4-12 hex digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The shortest shared secret taken: a RADIUS secret's strength is all that stands between
/// an eavesdropper and the passwords (RFC 2865 §3 asks for 16 octets at least).
pub const MIN_RADIUS_SECRET: usize = 16;

/// `[radius]`: where it listens, its NAS (a name, an address or network, a secret set in
/// the environment and long enough), the user id template, its language and caps, and the
/// upstream.
fn radius(r: &Spanned<Radius>, src: &Source, env: &impl Fn(&str) -> Option<String>) -> Checked {
    let secret = |var: &Spanned<String>, whose: &str| -> Checked {
        match env(var.get_ref()) {
            None => Err(src.at(
                var,
                format!("{whose}: environment variable {} is not set", var.get_ref()),
            )),
            Some(v) if v.len() < MIN_RADIUS_SECRET => Err(src.at(
                var,
                format!(
                    "{whose}: the secret in {} is {} octets; give {MIN_RADIUS_SECRET} at least",
                    var.get_ref(),
                    v.len()
                ),
            )),
            Some(_) => Ok(()),
        }
    };
    let cfg = r.get_ref();
    if cfg.listen.get_ref().port() == 0 {
        return Err(src.at(&cfg.listen, "radius.listen needs a port (1812 is RADIUS's)"));
    }
    if cfg.clients.is_empty() {
        return Err(src.at(
            r,
            "[radius] has no [[radius.client]]: give each NAS's name, address and secret_env",
        ));
    }
    let mut names = HashSet::new();
    for c in &cfg.clients {
        let c = c.get_ref();
        let name = c.name.get_ref();
        if name.trim().is_empty() || name.chars().any(char::is_control) || name.len() > 64 {
            return Err(src.at(&c.name, "radius.client name: 1 to 64 visible characters"));
        }
        if !names.insert(name.as_str()) {
            return Err(src.at(&c.name, format!("radius.client {name:?} is given twice")));
        }
        if radius_network(c.address.get_ref()).is_none() {
            return Err(src.at(
                &c.address,
                format!(
                    "radius.client {name:?}: {:?} is no address nor network (e.g. 192.0.2.10 or 10.1.0.0/16)",
                    c.address.get_ref()
                ),
            ));
        }
        secret(&c.secret_env, &format!("radius.client {name:?}"))?;
    }
    let template = cfg.user_id.get_ref();
    if !template.contains("{user}") && !template.contains("{name}") {
        return Err(src.at(
            &cfg.user_id,
            format!("radius.user_id {template:?} names no user: put {{user}} or {{name}} in it"),
        ));
    }
    if let Some(l) = &cfg.language
        && l.get_ref().parse::<media::Language>().is_err()
    {
        return Err(src.at(
            l,
            format!("radius.language: unknown language {:?}", l.get_ref()),
        ));
    }
    in_range(
        &cfg.max_pending_per_client,
        1..=10_000,
        "radius.max_pending_per_client",
        src,
    )?;
    if let Some(u) = &cfg.upstream {
        let u = u.get_ref();
        let a = u.address.get_ref();
        if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_multicast() {
            return Err(src.at(
                &u.address,
                format!("radius.upstream.address {a} is no server's address"),
            ));
        }
        secret(&u.secret_env, "radius.upstream")?;
        in_range(
            &u.timeout_ms,
            100..=30_000,
            "radius.upstream.timeout_ms",
            src,
        )?;
        in_range(&u.retries, 0..=10, "radius.upstream.retries", src)?;
    }
    Ok(())
}

/// A `[[radius.client]]` address: one address (a network of one) or a network.
pub fn radius_network(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
