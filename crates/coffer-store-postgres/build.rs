fn main() {
    // `sqlx::migrate!` embeds the SQL files at compile time: rebuild when one changes.
    println!("cargo:rerun-if-changed=migrations");
}
