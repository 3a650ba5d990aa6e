//! Embedding vectors: the BLOB encoding used in SQLite and small numeric helpers.

use crate::error::{Error, Result};

/// Encodes a vector as little-endian f32 bytes, the form stored in SQLite.
pub fn to_blob(vector: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(vector.len() * 4);
    for v in vector {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes a BLOB written by [`to_blob`]; `dims` guards against a foreign or truncated value.
pub fn from_blob(blob: &[u8], dims: usize) -> Result<Vec<f32>> {
    if blob.len() != dims * 4 {
        return Err(Error::DenseIndex(format!(
            "stored embedding has {} bytes, expected {} ({} dimensions)",
            blob.len(),
            dims * 4,
            dims
        )));
    }
    Ok(blob.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales a vector to unit length, rejecting non-finite or all-zero input (cosine is undefined).
pub fn normalized(vector: &[f32]) -> Result<Vec<f32>> {
    if vector.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument("embedding holds a NaN or infinite value".into()));
    }
    let norm = dot(vector, vector).sqrt();
    if norm == 0.0 {
        return Err(Error::InvalidArgument("embedding is all zeros".into()));
    }
    Ok(vector.iter().map(|v| v / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(from_blob(&to_blob(&v), 3).unwrap(), v);
        assert!(from_blob(&to_blob(&v), 4).is_err());
    }

    #[test]
    fn normalized_rejects_degenerate() {
        assert!(normalized(&[0.0, 0.0]).is_err());
        assert!(normalized(&[f32::NAN, 1.0]).is_err());
        let n = normalized(&[3.0, 4.0]).unwrap();
        assert!((n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6);
    }
}
