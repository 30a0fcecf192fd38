//! The node's PUBLISHes, written to Redis in the order they were asked
//! for, as many per round trip as have queued up.
//!
//! A broadcast is only reported sent once Redis has accepted its PUBLISH,
//! so a sender that waited for each would be held to one message per round
//! trip. Instead every `group_send` queues its PUBLISH at once (at its
//! first poll, in call order) and waits for the answer, while one task
//! writes whatever is queued as a single pipeline on one connection:
//! Redis runs a pipeline's commands in order, so broadcasts keep the order
//! they were started in, across connections of the node and within each.
//! The busier the node, the longer the pipelines.

use deadpool_redis::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{COMMAND_TIMEOUT, Failure, bounded, wire, within};
use crate::{LayerError, Payload};

/// Most PUBLISHes in one pipeline.
const MAX_PIPELINE: usize = 512;

/// One queued PUBLISH and who waits for its answer.
struct Publish {
    channel: String,
    payload: Payload,
    /// One failed pipeline fails every PUBLISH in it: each waiter gets a
    /// clone of the same error.
    answer: oneshot::Sender<Result<(), LayerError>>,
}

/// The queue in front of the publishing task; dropping it stops the task
/// once the queue is drained.
pub(super) struct Publisher {
    queue: mpsc::UnboundedSender<Publish>,
}

impl Publisher {
    /// Starts the publishing task on the current tokio runtime.
    pub(super) fn start(pool: Pool) -> Publisher {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(publish_queued(pool, requests));
        Publisher { queue }
    }

    /// Queues a PUBLISH now and waits, at most [`COMMAND_TIMEOUT`], for
    /// Redis to accept it.
    pub(super) async fn publish(
        &self,
        channel: String,
        payload: Payload,
    ) -> Result<(), LayerError> {
        let (answer, answered) = oneshot::channel();
        let queued = self.queue.send(Publish {
            channel,
            payload,
            answer,
        });
        if queued.is_err() {
            return Err(publisher_gone());
        }
        within("PUBLISH", COMMAND_TIMEOUT, answered)
            .await?
            .map_err(|_| publisher_gone())?
    }
}

/// The publishing task: takes everything queued, writes it as one
/// pipeline, answers every waiter, and again, until the layer is dropped.
async fn publish_queued(pool: Pool, mut requests: mpsc::UnboundedReceiver<Publish>) {
    let mut batch = Vec::new();
    while requests.recv_many(&mut batch, MAX_PIPELINE).await > 0 {
        let mut pipeline = redis::pipe();
        for publish in &batch {
            pipeline
                .cmd("PUBLISH")
                .arg(&publish.channel)
                .arg(wire::encode(&publish.payload).as_ref())
                .ignore();
        }
        let written = bounded("PUBLISH", COMMAND_TIMEOUT, async {
            let mut connection = pool.get().await?;
            Ok::<(), Failure>(pipeline.query_async(&mut connection).await?)
        })
        .await;
        for publish in batch.drain(..) {
            // The waiter may have given up (timed out); nothing to tell.
            let _ = publish.answer.send(written.clone());
        }
    }
}

fn publisher_gone() -> LayerError {
    LayerError::Stopped("Redis publishing")
}
