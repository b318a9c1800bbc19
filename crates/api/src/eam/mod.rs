// The EAM endpoints use these; until they land, nothing in the crate does.
#[allow(dead_code)]
pub(crate) mod entra;
#[allow(dead_code)]
pub(crate) mod graph;
