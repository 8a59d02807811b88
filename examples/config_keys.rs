//! Prints every supported config key with its default and meaning as a Markdown table
//! (the README's table is generated with it).
fn main() {
    println!("| key | default | meaning |\n|---|---|---|");
    for (key, default, meaning) in actix_kafka::ProducerConfig::documented_keys() {
        let default = if default.is_empty() {
            "(required)"
        } else {
            default
        };
        println!(
            "| `{key}` | `{default}` | {} |",
            meaning.replace('|', "\\|")
        );
    }
}
