//! Group commit for the gateway's per-request writes.
//!
//! Every `/v1/*` call writes its audit row, and every `POST /v1/messages` records which app
//! submitted its key, before it is answered. One statement and one flushed commit per request
//! caps the gateway at what the database's commits allow; concurrent requests would each wait
//! for their own flush. A [`WriteBatch`] hands each request's write to a task that takes every
//! write waiting at that moment (up to `max_batch`), runs them as one statement (one round
//! trip, one commit) and answers each request with its own row of the result. Nothing is
//! delayed on purpose: a write that arrives while no batch is running goes alone; batches form
//! only from requests that would otherwise have waited. Every request still waits for the
//! commit that holds its write, so nothing is answered before it is durable.
//!
//! Up to `in_flight` batches run at once (each on its own pool connection), so one slow batch
//! does not stall the requests behind it.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Why a batched write did not happen: the statement failed (for every write in its batch),
/// or the batch task is gone (the gateway is stopping).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    #[error("the batched statement failed: {0}")]
    Statement(Arc<sqlx::Error>),
    #[error("the batched statement answered {got} rows for {sent} writes")]
    Mismatch { sent: usize, got: usize },
    #[error("the write batch is not running")]
    Stopped,
}

struct Pending<In, Out> {
    item: In,
    reply: oneshot::Sender<Result<Out, BatchError>>,
}

/// A handle to a batch task; cheap to clone.
pub struct WriteBatch<In, Out> {
    queue: mpsc::UnboundedSender<Pending<In, Out>>,
}

impl<In, Out> Clone for WriteBatch<In, Out> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<In, Out> WriteBatch<In, Out>
where
    In: Send + 'static,
    Out: Send + 'static,
{
    /// Starts the batch task. `run` gets the waiting writes in arrival order and must answer
    /// one result per write, in the same order. The task ends when every handle is dropped.
    pub fn spawn<F, Fut>(max_batch: usize, in_flight: usize, run: F) -> Self
    where
        F: Fn(Vec<In>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Out>, sqlx::Error>> + Send + 'static,
    {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(collect(waiting, max_batch.max(1), in_flight.max(1), run));
        Self { queue }
    }

    /// Writes `item` in the next batch and waits for that batch's commit.
    pub async fn write(&self, item: In) -> Result<Out, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { item, reply })
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

async fn collect<In, Out, F, Fut>(
    mut waiting: mpsc::UnboundedReceiver<Pending<In, Out>>,
    max_batch: usize,
    in_flight: usize,
    run: F,
) where
    In: Send + 'static,
    Out: Send + 'static,
    F: Fn(Vec<In>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Out>, sqlx::Error>> + Send + 'static,
{
    let running = Arc::new(Semaphore::new(in_flight));
    loop {
        // A free slot first: while every slot is busy, arriving writes gather into the next batch.
        let Ok(slot) = running.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<In>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.item, pending.reply))
            .unzip();
        let statement = run(items);
        tokio::spawn(async move {
            let outcome = statement.await;
            answer(replies, outcome);
            drop(slot);
        });
    }
}

/// One answer per write of a batch of `writes`, from a statement's rows that each carry the
/// 1-based position of their write (`WITH ORDINALITY`); a write without a row gets `None`.
pub fn by_ordinal<T>(writes: usize, rows: impl IntoIterator<Item = (i64, T)>) -> Vec<Option<T>> {
    let mut answers: Vec<Option<T>> = std::iter::repeat_with(|| None).take(writes).collect();
    for (n, row) in rows {
        if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| answers.get_mut(i)) {
            *slot = Some(row);
        }
    }
    answers
}

fn answer<Out>(
    replies: Vec<oneshot::Sender<Result<Out, BatchError>>>,
    outcome: Result<Vec<Out>, sqlx::Error>,
) {
    let sent = replies.len();
    match outcome {
        Ok(rows) if rows.len() == sent => {
            for (reply, row) in replies.into_iter().zip(rows) {
                // A request whose client went away no longer waits; its write is done anyway.
                let _ = reply.send(Ok(row));
            }
        }
        Ok(rows) => {
            let error = BatchError::Mismatch {
                sent,
                got: rows.len(),
            };
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            let error = BatchError::Statement(Arc::new(error));
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn each_write_gets_its_own_row_and_waiting_writes_share_a_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let gate = Arc::new(tokio::sync::Notify::new());
        let opened = gate.clone();
        let batch = WriteBatch::spawn(16, 1, move |items: Vec<u32>| {
            let seen = seen.clone();
            let opened = opened.clone();
            async move {
                let first_batch = seen.lock().expect("lock").is_empty();
                seen.lock().expect("lock").push(items.len());
                if first_batch {
                    // The first batch holds the only slot until the test lets it go, so the
                    // writes sent meanwhile must wait and gather.
                    opened.notified().await;
                }
                Ok(items.into_iter().map(|item| item * 10).collect())
            }
        });
        let first = tokio::spawn({
            let batch = batch.clone();
            async move { batch.write(1).await }
        });
        while sizes.lock().expect("lock").is_empty() {
            tokio::task::yield_now().await;
        }
        // The first batch holds the only slot: these four are queued (sent synchronously)
        // before it ends, so they must go together in the next one.
        let rest: Vec<_> = (2..=5)
            .map(|item| {
                let (reply, answer) = oneshot::channel();
                batch
                    .queue
                    .send(Pending { item, reply })
                    .expect("the task runs");
                answer
            })
            .collect();
        gate.notify_one();
        assert_eq!(first.await.expect("task").expect("row"), 10);
        for (answer, item) in rest.into_iter().zip(2..=5) {
            assert_eq!(answer.await.expect("answered").expect("row"), item * 10);
        }
        assert_eq!(*sizes.lock().expect("lock"), vec![1, 4]);
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_write_of_its_batch_and_no_other() {
        let batch = WriteBatch::spawn(8, 2, |items: Vec<u32>| async move {
            if items.contains(&13) {
                Err(sqlx::Error::PoolTimedOut)
            } else {
                Ok(items)
            }
        });
        assert!(matches!(
            batch.write(13).await,
            Err(BatchError::Statement(_))
        ));
        assert_eq!(
            batch.write(7).await.expect("a later batch is unaffected"),
            7
        );
    }

    #[test]
    fn rows_go_to_their_writes_by_position_and_a_write_without_a_row_gets_none() {
        let answers = by_ordinal(3, [(3, "c"), (1, "a"), (9, "out of range")]);
        assert_eq!(answers, vec![Some("a"), None, Some("c")]);
    }

    #[tokio::test]
    async fn a_statement_that_answers_the_wrong_number_of_rows_is_an_error() {
        let batch = WriteBatch::spawn(
            8,
            1,
            |_items: Vec<u32>| async move { Ok(Vec::<u32>::new()) },
        );
        assert!(matches!(
            batch.write(1).await,
            Err(BatchError::Mismatch { sent: 1, got: 0 })
        ));
    }
}
