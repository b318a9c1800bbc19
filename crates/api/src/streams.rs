//! Caps on the long polls and event streams one credential holds open at once on this node:
//! each holds a connection and a task for up to `max_wait` (long polls) or the challenge's
//! life (event streams), so without a cap one poll token could hold them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use crate::Problem;

/// How many long polls and event streams a credential may hold open at once, and how many
/// each holds now (shared by the clones of one configuration).
#[derive(Clone, Debug)]
pub struct StreamCaps {
    /// Per poll token (one challenge's login page).
    pub per_poll_token: u32,
    /// Per API key (an identity service following many challenges).
    pub per_api_key: u32,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

impl StreamCaps {
    /// Caps of `per_poll_token` and `per_api_key`.
    pub fn new(per_poll_token: u32, per_api_key: u32) -> StreamCaps {
        StreamCaps {
            per_poll_token,
            per_api_key,
            open: Arc::default(),
        }
    }

    /// A slot for one more long poll or stream of the poll token of challenge
    /// `challenge_id` (`api_key_id: None`) or of an API key, or 429 when it holds its cap.
    pub(crate) fn admit(
        &self,
        challenge_id: &store::ChallengeId,
        api_key_id: Option<&str>,
    ) -> Result<Slot, Problem> {
        let (who, cap, what) = match api_key_id {
            Some(k) => (format!("key:{k}"), self.per_api_key, "this API key"),
            None => (
                format!("poll:{challenge_id}"),
                self.per_poll_token,
                "this poll token",
            ),
        };
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(who.clone()).or_insert(0);
        if *n >= cap {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-streams",
                "Too many long polls or event streams",
                format!(
                    "{what} holds {cap} long polls or event streams already (the most at \
                     once): wait for one to end"
                ),
            )
            .with_retry_after(1));
        }
        *n += 1;
        Ok(Slot {
            open: self.open.clone(),
            who,
        })
    }

    /// How many are open now, all credentials together.
    pub fn open(&self) -> u32 {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.values().sum()
    }
}

impl Default for StreamCaps {
    fn default() -> Self {
        StreamCaps::new(4, 1000)
    }
}

/// One long poll or stream admitted; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Slot {
    open: Arc<Mutex<HashMap<String, u32>>>,
    who: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_credential_and_given_back() {
        let caps = StreamCaps::new(2, 3);
        let ch = |s: &str| store::ChallengeId::from_stored(s.into());
        let a = caps.admit(&ch("ch_1"), None).unwrap();
        let _b = caps.admit(&ch("ch_1"), None).unwrap();
        let refused = caps.admit(&ch("ch_1"), None).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            caps.admit(&ch("ch_2"), None).is_ok(),
            "another challenge's token"
        );
        let keyed: Vec<Slot> = (0..3)
            .map(|i| caps.admit(&ch(&format!("ch_{i}")), Some("key_1")).unwrap())
            .collect();
        assert!(caps.admit(&ch("ch_9"), Some("key_1")).is_err());
        assert!(caps.admit(&ch("ch_9"), Some("key_2")).is_ok());
        drop(a);
        assert!(caps.admit(&ch("ch_1"), None).is_ok());
        assert_eq!(caps.open(), 4);
        drop(keyed);
        assert_eq!(caps.open(), 1);
        assert_eq!(caps.open.lock().unwrap().len(), 1, "emptied entries go");
    }
}
