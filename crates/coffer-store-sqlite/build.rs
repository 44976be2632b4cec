fn main() {
    // Re-embed the schema whenever a migration changes.
    println!("cargo:rerun-if-changed=migrations");
}
