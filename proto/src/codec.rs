//! The protobuf codec of every tresor service: prost's, except that a
//! message that does not decode (garbage bytes, a string field that is not
//! UTF-8, a wrong wire type) is `INVALID_ARGUMENT` — bad input from the
//! sender, and the call changes nothing — rather than `INTERNAL`, which
//! would send an operator looking for a bug in the node.

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// [`ProstCodec`] with malformed messages reported as `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Default)]
pub struct TresorCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for TresorCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = MalformedIsInvalid<<ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MalformedIsInvalid(self.0.decoder())
    }
}

/// A decoder whose decode failures are `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct MalformedIsInvalid<D>(D);

impl<D: Decoder<Error = Status>> Decoder for MalformedIsInvalid<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(buf).map_err(malformed)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

fn malformed(status: Status) -> Status {
    if status.code() == Code::Internal {
        Status::invalid_argument(format!("malformed protobuf message: {}", status.message()))
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_become_invalid_argument() {
        let status = malformed(Status::internal("invalid wire type"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("invalid wire type"));
        assert_eq!(malformed(Status::cancelled("x")).code(), Code::Cancelled);
    }
}
