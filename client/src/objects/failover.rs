//! Moving to the next endpoint when a node fails, remembering the last
//! error.

use tresor_proto::v1::objects_client::ObjectsClient;
use tresor_proto::v1::uploads_client::UploadsClient;

use crate::channel::{self, Transport, MAX_MESSAGE_BYTES};

use super::*;

/// The endpoint in use and its channel.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(super) index: usize,
    pub(super) channel: Transport,
}

pub(super) fn objects_client(channel: Transport) -> ObjectsClient<Transport> {
    ObjectsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub(super) fn uploads_client(channel: Transport) -> UploadsClient<Transport> {
    UploadsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The endpoints one call may still try.
pub(super) struct Failover<'a> {
    pub(super) client: &'a Client,
    pub(super) first: Option<Current>,
    pub(super) others: std::collections::VecDeque<usize>,
    pub(super) last_error: Option<ObjectError>,
}

impl Failover<'_> {
    /// A client for the next endpoint to try, connecting to it if it is not
    /// the current one; `None` once every endpoint has had its try.
    pub(super) async fn next(&mut self) -> Option<ObjectsClient<Transport>> {
        self.next_channel().await.map(objects_client)
    }

    /// The channel to the next endpoint to try; see [`Failover::next`].
    pub(super) async fn next_channel(&mut self) -> Option<Transport> {
        if let Some(current) = self.first.take() {
            return Some(current.channel);
        }
        while let Some(index) = self.others.pop_front() {
            let endpoint = self.client.endpoints.get(index)?;
            match channel::connect_with(endpoint, &self.client.credentials).await {
                Ok(channel) => {
                    let channel = channel::transport(channel, &self.client.credentials);
                    self.client.set_current(index, channel.clone());
                    return Some(channel);
                }
                Err(err) => self.failed(err.into()),
            }
        }
        None
    }

    /// Records why an attempt failed. A node's answer says more than a
    /// failure to reach another node, so it is kept over a connect error.
    pub(super) fn failed(&mut self, err: ObjectError) {
        let keep_old = matches!(self.last_error, Some(ObjectError::Rpc(_)))
            && !matches!(err, ObjectError::Rpc(_));
        if !keep_old {
            self.last_error = Some(err);
        }
    }

    pub(super) fn into_error(self) -> ObjectError {
        self.last_error
            .unwrap_or_else(|| ObjectError::InvalidArgument("no endpoint to try".into()))
    }
}
