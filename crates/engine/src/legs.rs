//! The phones one challenge calls, in order: its own number, then, for a user's sign-in whose
//! primary phone does not answer or is busy, the user's verified fallback phone. Every phone
//! after the one the challenge was made for is checked against the policy and counted before
//! it is called (see the runner).

use store::{Challenge, PhoneNumber, PhoneRole, Purpose, Store, StoreError};

use crate::call::Outcome;

/// One phone a challenge calls.
#[derive(Clone, Debug)]
pub(crate) struct Leg {
    /// The number.
    pub phone: PhoneNumber,
    /// Admitted with the challenge (its own number); the others are admitted before their call.
    pub admitted: bool,
    /// Whether, after this call ends so, the next phone is called (instead of the outcome
    /// deciding the challenge).
    pub goes_on: fn(&Outcome) -> bool,
}

fn never(_: &Outcome) -> bool {
    false
}

fn unanswered(o: &Outcome) -> bool {
    matches!(o, Outcome::NoAnswer | Outcome::Busy)
}

/// The phones `c` calls (`fallback`: a sign-in's fallback phone is called).
pub(crate) async fn plan(
    store: &Store,
    fallback: bool,
    c: &Challenge,
) -> Result<Vec<Leg>, StoreError> {
    let own = Leg {
        phone: c.phone.clone(),
        admitted: true,
        goes_on: never,
    };
    let Some(user) = &c.user_id else {
        return Ok(vec![own]);
    };
    match c.purpose {
        Purpose::SignIn if fallback => {
            match store.verified_phone(user, PhoneRole::Fallback).await? {
                Some(f) if f.phone != c.phone => Ok(vec![
                    Leg {
                        goes_on: unanswered,
                        ..own
                    },
                    Leg {
                        phone: f.phone,
                        admitted: false,
                        goes_on: never,
                    },
                ]),
                _ => Ok(vec![own]),
            }
        }
        _ => Ok(vec![own]),
    }
}
