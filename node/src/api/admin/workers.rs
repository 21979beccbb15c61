//! Background workers: their state, and passes started by hand.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::AdminService;
use crate::api::auth::Action;
use crate::workers::WorkerState;

impl AdminService {
    pub(super) async fn workers(
        &self,
        request: Request<pb::WorkersRequest>,
    ) -> Result<Response<pb::WorkersResponse>, Status> {
        self.auth.check(&request, Action::Workers, None, "").await?;
        let workers = self
            .workers
            .list()
            .into_iter()
            .map(|w| {
                let mut counters: std::collections::HashMap<String, u64> = w
                    .counters
                    .pairs()
                    .into_iter()
                    .map(|(name, n)| (name.to_string(), n))
                    .collect();
                counters.insert("last_pass_ms_taken".into(), w.last_pass_took_ms);
                let last_error = match &w.state {
                    WorkerState::Error { error, .. } => error.clone(),
                    _ => String::new(),
                };
                pb::WorkerInfo {
                    name: w.name.to_string(),
                    state: w.state.as_str().to_string(),
                    progress: w.progress,
                    counters,
                    last_pass_ms: w.last_pass_ms,
                    last_error,
                }
            })
            .collect();
        Ok(Response::new(pb::WorkersResponse {
            node_id: self.cluster.config().node_id,
            workers,
        }))
    }

    pub(super) async fn run_worker(
        &self,
        request: Request<pb::RunWorkerRequest>,
    ) -> Result<Response<pb::RunWorkerResponse>, Status> {
        self.auth
            .check(&request, Action::RunWorker, None, "")
            .await?;
        let name = request.into_inner().name;
        if !self.workers.trigger(&name) {
            return Err(Status::not_found(format!("no worker named {name:?}")));
        }
        Ok(Response::new(pb::RunWorkerResponse {}))
    }
}
