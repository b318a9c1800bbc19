//! The verification call's state machine driven with a simulated clock: what it sends, how
//! it paces, which keys count, every outcome and the timings it keeps, and its SRTP.

mod amd;
mod common;
mod confirmation;
mod keys;
mod media;
mod outcomes;
mod srtp;
