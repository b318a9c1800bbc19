//! The phones one challenge calls, in order: its own number, then, for a user's sign-in whose
//! primary phone does not answer or is busy, the user's verified fallback phone; for an
//! enrolment that must be approved on the user's current primary phone, that phone first and
//! the new one only if it approves. Every phone after the one the challenge was made for is
//! checked against the policy and counted before it is called (see the runner).

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
    /// Which phone, in a reason ("the current primary phone did not approve: busy"), when it
    /// is one of two an enrolment calls.
    pub label: Option<&'static str>,
}

fn never(_: &Outcome) -> bool {
    false
}

fn unanswered(o: &Outcome) -> bool {
    matches!(o, Outcome::NoAnswer | Outcome::Busy)
}

fn approved(o: &Outcome) -> bool {
    matches!(o, Outcome::Approved)
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
        label: None,
    };
    let Some(user) = &c.user_id else {
        return Ok(vec![own]);
    };
    match c.purpose {
        Purpose::Enroll if c.confirm_primary => {
            match store.verified_phone(user, PhoneRole::Primary).await? {
                Some(p) if p.phone != c.phone => Ok(vec![
                    Leg {
                        phone: p.phone,
                        admitted: false,
                        goes_on: approved,
                        label: Some("the current primary phone"),
                    },
                    Leg {
                        label: Some("the new phone"),
                        ..own
                    },
                ]),
                // Re-registering the primary phone itself: its own approval is the one.
                _ => Ok(vec![own]),
            }
        }
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
                        label: None,
                    },
                ]),
                _ => Ok(vec![own]),
            }
        }
        _ => Ok(vec![own]),
    }
}
