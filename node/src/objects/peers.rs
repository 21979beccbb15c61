//! Cached Shards clients, one per node.

use std::collections::HashMap;
use std::sync::Mutex;

use tonic::transport::Channel;
use tresor_client::channel::MAX_MESSAGE_BYTES;
use tresor_proto::internal::v1::shards_client::ShardsClient;

use super::ObjectError;
use crate::meta::NodeRecord;

/// Shards clients by node id; rebuilt when a node's address changes.
#[derive(Default)]
pub struct Peers {
    clients: Mutex<HashMap<u64, (String, ShardsClient<Channel>)>>,
}

impl Peers {
    /// A client for `node` (connects lazily).
    pub fn client(&self, node: &NodeRecord) -> Result<ShardsClient<Channel>, ObjectError> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| ObjectError::Internal("peer table poisoned".into()))?;
        if let Some((addr, client)) = clients.get(&node.id) {
            if *addr == node.addr {
                return Ok(client.clone());
            }
        }
        let channel = tresor_client::connect_lazy(&node.addr)
            .map_err(|e| ObjectError::Unavailable(format!("node {}: {e}", node.id)))?;
        let client = ShardsClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(node.id, (node.addr.clone(), client.clone()));
        Ok(client)
    }
}
