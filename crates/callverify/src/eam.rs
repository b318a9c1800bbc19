//! The Entra EAM provider assembled from `[eam]`, and `callverify eam-keys`.

use std::time::Duration;

use anyhow::Context;
use api::eam::{KeyPlace, KeyStore, Provider};
use store::{Store, now_ms};
use tracing::info;

use crate::config::EamSettings;

/// The name of the service key the provider's challenges are made with.
const EAM_KEY: &str = "entra eam";

/// The provider's protocol settings from the configuration's.
pub fn protocol_settings(s: &EamSettings) -> eam::Settings {
    let mut p = eam::Settings::new(&s.issuer);
    p.client_ids.clone_from(&s.client_ids);
    p.tenants.clone_from(&s.tenants);
    p.redirect_uris.clone_from(&s.redirect_uris);
    p.entra_discovery_url.clone_from(&s.entra_discovery_url);
    p.hint_max_age = s.hint_max_age;
    p.key_publish = s.key_publish;
    p.user_id_claim = if s.user_id_claim == "preferred_username" {
        eam::UserIdClaim::PreferredUsername
    } else {
        eam::UserIdClaim::Oid
    };
    p
}

/// Where the keys are kept, opened with the token secret.
pub fn key_store(s: &EamSettings, store: &Store, token_secret: &[u8]) -> KeyStore {
    let place = match &s.key_file {
        Some(f) => KeyPlace::File(f.clone()),
        None => KeyPlace::Store,
    };
    KeyStore::new(place, store.clone(), token_secret)
}

/// The provider: its service key (made at the first start), its keys (the first made now
/// if there is none), Entra's keys and Graph when configured.
pub async fn provider(
    s: &EamSettings,
    store: &Store,
    token_secret: &[u8],
) -> anyhow::Result<Provider> {
    let key = crate::gateway::service_key(store, EAM_KEY).await?;
    let keys = key_store(s, store, token_secret);
    if let Some(kid) = keys
        .ensure(&s.issuer, now_ms())
        .await
        .context("making the EAM provider's first signing key")?
    {
        info!(%kid, "the EAM provider's first signing key is made");
    }
    keys.load()
        .await
        .context("reading the EAM provider's signing keys")?;
    let graph = s.graph.as_ref().map(|g| api::eam::GraphSettings {
        login_url: g.login_url.clone(),
        base_url: g.base_url.clone(),
        client_id: g.client_id.clone(),
        client_secret: g.client_secret.clone(),
    });
    info!(issuer = %s.issuer, "the Entra EAM provider is on");
    Provider::new(protocol_settings(s), keys, key, s.help.clone(), graph)
        .context("the EAM provider's HTTP client")
}

/// `callverify eam-keys rotate [--now]`: the next key, published at once; it signs after
/// `key_publish_hours`, or at once with `now`. What to print.
pub async fn rotate(
    s: &EamSettings,
    store: &Store,
    token_secret: &[u8],
    at_once: bool,
) -> anyhow::Result<String> {
    let keys = key_store(s, store, token_secret);
    let now = now_ms();
    let publish = if at_once {
        Duration::ZERO
    } else {
        s.key_publish
    };
    let r = keys.rotate(&s.issuer, now, publish, at_once).await?;
    Ok(format!(
        "key {} published now; signs from {}{}",
        r.kid,
        api::rfc3339(r.sign_from_ms),
        if at_once { " (at once)" } else { "" }
    ))
}

/// `callverify eam-keys list`: each key, when it signs and whether it is published now.
pub async fn list(s: &EamSettings, store: &Store, token_secret: &[u8]) -> anyhow::Result<String> {
    let ring = key_store(s, store, token_secret).load().await?;
    let now = now_ms();
    let signer = ring.signer(now).map(|r| r.kid.clone());
    let published: Vec<String> = ring
        .published(now, s.key_publish)
        .iter()
        .map(|r| r.kid.clone())
        .collect();
    let mut out = String::new();
    for r in ring.records() {
        let mut what = Vec::new();
        if signer.as_deref() == Some(r.kid.as_str()) {
            what.push("signing");
        }
        if published.contains(&r.kid) {
            what.push("published");
        } else {
            what.push("retired");
        }
        out.push_str(&format!(
            "{}  made {}  signs from {}  {}\n",
            r.kid,
            api::rfc3339(r.created_ms),
            api::rfc3339(r.sign_from_ms),
            what.join(", ")
        ));
    }
    Ok(out)
}
