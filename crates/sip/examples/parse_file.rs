//! Parse SIP messages from files and print what the parser makes of them.
//! `cargo run -p cairn-sip --example parse_file -- FILE...`
fn main() {
    for path in std::env::args().skip(1) {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                println!("{path}: cannot read: {e}");
                continue;
            }
        };
        match cairn_sip::Message::parse(bytes::Bytes::from(data)) {
            Ok(m) => println!(
                "{path}: ok {} (call-id {}, {} headers)",
                String::from_utf8_lossy(m.start_line()),
                String::from_utf8_lossy(m.call_id()),
                m.headers().len()
            ),
            Err(e) => println!("{path}: error {e}"),
        }
    }
}
