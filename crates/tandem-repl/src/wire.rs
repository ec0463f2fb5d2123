//! Framing: each message is a 4-byte big-endian length and that many bytes of JSON. A length
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

/// Decodes one frame's payload. Kept separate from the I/O so a fuzz target can drive it.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(payload).map_err(|error| WireError::Malformed(error.to_string()))
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

pub async fn read_frame<R, T>(reader: &mut R) -> Result<T, WireError>
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
    decode(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_lengths_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &serde_json::json!({"hello": 1})).await.unwrap();
        let got: serde_json::Value = read_frame(&mut b).await.unwrap();
        assert_eq!(got["hello"], 1);

        a.write_all(&(FRAME_BYTES_MAX as u32 + 1).to_be_bytes()).await.unwrap();
        let error = read_frame::<_, serde_json::Value>(&mut b).await.unwrap_err();
        assert!(matches!(error, WireError::TooLarge(_)), "{error}");

        drop(a);
        let closed = read_frame::<_, serde_json::Value>(&mut b).await.unwrap_err();
        assert!(matches!(closed, WireError::Closed), "{closed}");
        assert!(matches!(decode::<serde_json::Value>(b"{"), Err(WireError::Malformed(_))));
    }
}
