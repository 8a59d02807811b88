//! Prints every supported config key with its default and meaning as a Markdown table
//! (the README's table; a unit test fails when the README's copy is stale).
fn main() {
    print!("{}", actix_kafka::ProducerConfig::keys_markdown());
}
