//! Links spandsp (Debian package libspandsp-dev), the reference DTMF receiver.
fn main() {
    println!("cargo:rustc-link-lib=spandsp");
}
