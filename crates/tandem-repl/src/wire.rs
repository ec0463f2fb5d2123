//! Framing: each frame is a 4-byte big-endian length and that many bytes of payload. The
//! payload's first byte says what it is: `{` starts a JSON message, [`DATA_TAG`] a chunk of raw
//! bytes (snapshot pages, file contents) that would cost a third more as base64 in JSON. A length
//! over [`FRAME_BYTES_MAX`] is refused before anything is allocated, so a broken or hostile peer
//! cannot make this node reserve gigabytes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted: room for a batch of change-log entries or a snapshot chunk.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the peer closed the replication channel")]
    Closed,
    #[error("replication channel I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer sent a {0}-byte frame; the limit is {FRAME_BYTES_MAX} bytes")]
    TooLarge(usize),
    #[error("the peer sent a frame that is not a valid message: {0}")]
    Malformed(String),
}

/// The first byte of a raw data frame.
pub const DATA_TAG: u8 = 0;

/// One frame: a message, or raw bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<T> {
    Message(T),
    Data(Vec<u8>),
}

/// Decodes one frame's payload. Kept separate from the I/O so a fuzz target can drive it.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    match decode_frame(payload.to_vec())? {
        Frame::Message(message) => Ok(message),
        Frame::Data(_) => Err(WireError::Malformed(
            "expected a message, got a data chunk".into(),
        )),
    }
}

/// Decodes a payload that may be a message or raw data.
pub fn decode_frame<T: DeserializeOwned>(mut payload: Vec<u8>) -> Result<Frame<T>, WireError> {
    if payload.first() == Some(&DATA_TAG) {
        payload.remove(0);
        return Ok(Frame::Data(payload));
    }
    serde_json::from_slice(&payload)
        .map(Frame::Message)
        .map_err(|error| WireError::Malformed(error.to_string()))
}

/// Writes a chunk of raw bytes as one data frame.
pub async fn write_data<W: AsyncWrite + Unpin>(
    writer: &mut W,
    data: &[u8],
) -> Result<(), WireError> {
    let length = data.len() + 1;
    if length > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge(length));
    }
    writer.write_all(&(length as u32).to_be_bytes()).await?;
    writer.write_all(&[DATA_TAG]).await?;
    writer.write_all(data).await?;
    Ok(())
}

pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    let payload =
        serde_json::to_vec(message).map_err(|error| WireError::Malformed(error.to_string()))?;
    if payload.len() > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge(payload.len()));
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    writer.write_all(&encode(message)?).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame that must be a message.
pub async fn read_frame<R, T>(reader: &mut R) -> Result<T, WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    match read_any(reader).await? {
        Frame::Message(message) => Ok(message),
        Frame::Data(_) => Err(WireError::Malformed(
            "expected a message, got a data chunk".into(),
        )),
    }
}

/// Reads one frame: a message or a data chunk.
pub async fn read_any<R, T>(reader: &mut R) -> Result<Frame<T>, WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(WireError::Closed);
        }
        Err(error) => return Err(error.into()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge(length));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    decode_frame(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_lengths_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &serde_json::json!({"hello": 1}))
            .await
            .unwrap();
        let got: serde_json::Value = read_frame(&mut b).await.unwrap();
        assert_eq!(got["hello"], 1);

        a.write_all(&(FRAME_BYTES_MAX as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        let error = read_frame::<_, serde_json::Value>(&mut b)
            .await
            .unwrap_err();
        assert!(matches!(error, WireError::TooLarge(_)), "{error}");

        drop(a);
        let closed = read_frame::<_, serde_json::Value>(&mut b)
            .await
            .unwrap_err();
        assert!(matches!(closed, WireError::Closed), "{closed}");
        assert!(matches!(
            decode::<serde_json::Value>(b"{"),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode::<serde_json::Value>(b"\0raw"),
            Err(WireError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn data_frames_carry_raw_bytes_between_messages() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_data(&mut a, &[0, 1, 2, 255]).await.unwrap();
        write_frame(&mut a, &serde_json::json!({"end": true}))
            .await
            .unwrap();
        let data: Frame<serde_json::Value> = read_any(&mut b).await.unwrap();
        assert_eq!(data, Frame::Data(vec![0, 1, 2, 255]));
        let end: Frame<serde_json::Value> = read_any(&mut b).await.unwrap();
        assert_eq!(end, Frame::Message(serde_json::json!({"end": true})));
    }

    /// The fuzz target's property in the ordinary suite: mutated valid frames and random bytes
    /// decode to a message, data or an error, never a panic. (`cargo +nightly fuzz run
    /// frame_decoder` explores far more.)
    #[tokio::test]
    async fn arbitrary_bytes_never_panic_the_decoder() {
        use crate::protocol::{Request, Response};
        let valid = [
            encode(&Request::Changes {
                after_seq: 7,
                after_checksum: "ab".into(),
                wait_ms: 0,
            })
            .unwrap(),
            encode(&Request::File {
                sha256: "00".repeat(32),
            })
            .unwrap(),
            encode(&Response::NotInHistory {
                base_seq: 1,
                position_seq: 2,
            })
            .unwrap(),
        ];
        let mut state = 0x5eed_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for round in 0..5_000 {
            let mut bytes = valid[round % valid.len()].clone();
            for _ in 0..(next() % 8) {
                let at = next() % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
                if bytes.is_empty() {
                    bytes.push(0);
                }
            }
            let payload = bytes.get(4..).unwrap_or_default().to_vec();
            let _ = decode_frame::<Request>(payload.clone());
            let _ = decode_frame::<Response>(payload);
            let mut input = bytes.as_slice();
            while read_any::<_, Request>(&mut input).await.is_ok() {}
        }
    }
}
