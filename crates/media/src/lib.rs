//! Media for callverify: G.711 μ-law and A-law, WAV loading into 8 kHz mono, and prompts
//! pre-encoded once into 20 ms frames that every call shares.
//!
//! No sockets, no clocks and no tokio: RTP sessions and their pacing live in the engine.

pub mod g711;
pub mod prompt;
pub mod resample;
pub mod wav;

pub use g711::Codec;
pub use prompt::{FRAME_SAMPLES, Language, Prompt, PromptError, PromptKind, PromptLibrary};
pub use wav::{WavError, load_wav, load_wav_file};
