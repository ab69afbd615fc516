//! Rebuild when the embedded Python tree changes (include_dir does not tell cargo on stable).
fn main() {
    println!("cargo:rerun-if-changed=../../python/cog");
    println!("cargo:rerun-if-changed=../../python/cogvisor_worker");
}
