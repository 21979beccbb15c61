//! Background workers: their state, and passes started by hand.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::AdminService;
use crate::api::auth::Action;

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
            .map(|w| pb::WorkerInfo {
                name: w.name,
                state: w.state,
                progress: w.progress,
                counters: w.counters.into_iter().collect(),
                last_pass_ms: w.last_pass_ms,
                last_error: w.last_error.unwrap_or_default(),
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
