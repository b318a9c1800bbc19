//! Media for callverify: G.711 μ-law and A-law, WAV loading into 8 kHz mono, and prompts
//! pre-encoded once into 20 ms frames that every call shares.
//!
//! With [`rtp`]: RTP packets, RTCP sender reports and reception statistics for one call, with
//! only the negotiated peer accepted; [`srtp`] protects them (RFC 3711). With [`vad`]: voice activity for answering-machine
//! detection.
//!
//! No sockets, no clocks and no tokio: sending every 20 ms is the engine's.

pub mod g711;
pub mod prompt;
pub mod resample;
pub mod rtp;
pub mod srtp;
pub mod vad;
pub mod wav;

pub use g711::Codec;
pub use prompt::{FRAME_SAMPLES, Language, Prompt, PromptError, PromptKind, PromptLibrary};
pub use vad::Vad;
pub use wav::{WavError, load_wav, load_wav_file};
