//! The API over real HTTP on loopback, one module for each group of routes: challenges
//! (credentials, bodies, idempotency, poll tokens, long polls, events, a call through sipp
//! approved, cancel, expiry), users' phones and trusted devices, tokens, fraud blocks, the
//! call log, webhooks, the policy and its limits, the pages, and the OpenAPI document.

mod calls;
mod challenges;
mod common;
mod confirmation;
mod dispatch;
mod fraud;
mod keys;
mod limits;
mod openapi;
mod pages;
mod tokens;
mod users;
mod webhooks;
