//! The replication frame decoder on arbitrary bytes: whatever a broken or hostile peer sends,
//! decoding ends in a message, a data chunk or an error, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_repl::protocol::{Request, Response};
use tandem_repl::wire::{decode_frame, read_any};

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame::<Request>(data.to_vec());
    let _ = decode_frame::<Response>(data.to_vec());
    // The framing itself: length prefixes, limits and truncation, through the real reader.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime needs no resources that can fail");
    runtime.block_on(async {
        let mut input = data;
        for _ in 0..16 {
            if read_any::<_, Request>(&mut input).await.is_err() {
                break;
            }
        }
    });
});
