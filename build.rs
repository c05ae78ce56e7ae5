// `sqlx::migrate!` embeds the migrations at compile time but cannot tell cargo to watch the
// folder on stable Rust: without this a new migration file left the binary without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
