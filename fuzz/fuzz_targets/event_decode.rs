//! Any payload of any kind decodes to an event or an error, never a panic;
//! a decoded event encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timeglass_wire::Event;

fuzz_target!(|data: &[u8]| {
    let Some((kind, payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let kind = u16::from_le_bytes(*kind);
    if let Ok(event) = Event::decode(kind, payload) {
        let mut again = Vec::new();
        let kind = event.encode(&mut again);
        let round = Event::decode(kind, &again).expect("an encoded event decodes");
        assert_eq!(round, event);
    }
});
