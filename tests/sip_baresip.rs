//! callverify's SIP user agent against baresip (a real softphone) answering automatically.
