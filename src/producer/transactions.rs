//! The transactional API of the handle (KIP-98, KIP-447): each call is a `Transactional`
//! message to the sender, awaited under `max.block.ms`; the sender's transaction core decides.

use super::*;

impl Producer {
    /// Transactions (KIP-98): registers the `transactional.id` with its transaction coordinator
    /// and gets the producer id and epoch. Fences every older producer with the same id (their
    /// next send or commit fails with [`TransactionError::Fenced`]) and completes or aborts the
    /// transaction one of them left open. Call once, before the first transaction. Waits at
    /// most `max.block.ms`.
    ///
    /// # Errors
    /// [`TransactionError::NotTransactional`] without `transactional.id`;
    /// [`TransactionError::Timeout`] after `max.block.ms` (the call goes on: call it again);
    /// [`TransactionError::Fenced`] / [`TransactionError::Fatal`] (e.g.
    /// `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`, `INVALID_TRANSACTION_TIMEOUT`): close the producer.
    pub async fn init_transactions(&self) -> Result<(), TransactionError> {
        self.txn_call(TxnRequest::Init, "init_transactions", None)
            .await
    }

    /// Starts a transaction: records sent until `commit_transaction` / `abort_transaction` are
    /// part of it. Local: no broker call.
    ///
    /// # Errors
    /// [`TransactionError::InvalidState`] unless `init_transactions` succeeded and no
    /// transaction is open; the fatal error once the producer is fenced.
    pub async fn begin_transaction(&self) -> Result<(), TransactionError> {
        self.txn_call(TxnRequest::Begin, "begin_transaction", None)
            .await
    }

    /// Adds consumer offsets to the open transaction (consume-transform-produce, KIP-98 and
    /// KIP-447): `offsets` are the *next* offsets to read (last processed + 1) per partition of
    /// the input topics; they are committed for `group` if and only if the transaction commits.
    /// AddOffsetsToTxn to the transaction coordinator, then TxnOffsetCommit to the group
    /// coordinator. Waits at most `max.block.ms`.
    ///
    /// # Errors
    /// [`TransactionError::Abortable`] (group authorization, `UNKNOWN_MEMBER_ID`,
    /// `ILLEGAL_GENERATION`, `FENCED_INSTANCE_ID`: a rebalance fenced this consumer), and the
    /// errors of [`Producer::commit_transaction`].
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), TransactionError> {
        let req = TxnRequest::SendOffsets {
            offsets: offsets.into_iter().collect(),
            group: group.clone(),
        };
        self.txn_call(req, "send_offsets_to_transaction", None)
            .await
    }

    /// Commits the open transaction: flushes (every record sent in it gets its result), then
    /// EndTxn(commit). Waits at most `max.block.ms` in all.
    ///
    /// # Errors
    /// [`TransactionError::Abortable`] if a record of the transaction failed (call
    /// [`Producer::abort_transaction`]); [`TransactionError::Timeout`] (call it again: the
    /// commit goes on and a second call waits for it or returns its result);
    /// [`TransactionError::Fenced`] (another producer took the id over, or the coordinator
    /// aborted the transaction after `transaction.timeout.ms`) and [`TransactionError::Fatal`]:
    /// close the producer; [`TransactionError::InvalidState`] with no transaction open.
    pub async fn commit_transaction(&self) -> Result<(), TransactionError> {
        self.end_transaction(true).await
    }

    /// Aborts the open transaction: its records not sent yet fail with
    /// [`TransactionError::Aborted`], those sent are completed, then EndTxn(abort) makes them
    /// invisible to `read_committed` consumers. After an error of the transaction this is the
    /// way back to a usable producer. Waits at most `max.block.ms`.
    ///
    /// # Errors
    /// As [`Producer::commit_transaction`], except `Abortable`.
    pub async fn abort_transaction(&self) -> Result<(), TransactionError> {
        self.end_transaction(false).await
    }

    pub(super) async fn end_transaction(&self, commit: bool) -> Result<(), TransactionError> {
        let (operation, prepare, end) = if commit {
            (
                "commit_transaction",
                TxnRequest::PrepareCommit,
                TxnRequest::Commit,
            )
        } else {
            (
                "abort_transaction",
                TxnRequest::PrepareAbort,
                TxnRequest::Abort,
            )
        };
        let start = Instant::now();
        let deadline = start + self.inner.config.max_block;
        self.txn_call(prepare, operation, Some(deadline)).await?;
        if tokio::time::timeout_at(deadline.into(), self.flush())
            .await
            .is_err()
        {
            return Err(TransactionError::Timeout {
                operation,
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        self.txn_call(end, operation, Some(deadline)).await
    }

    /// One call to the sender's transaction, bounded by `deadline` (else `max.block.ms`).
    pub(super) async fn txn_call(
        &self,
        req: TxnRequest,
        operation: &'static str,
        deadline: Option<Instant>,
    ) -> Result<(), TransactionError> {
        let start = Instant::now();
        let deadline = deadline.unwrap_or(start + self.inner.config.max_block);
        let (tx, rx) = oneshot::channel();
        let receipt = Receipt::default();
        self.inner.sender.do_send(Transactional {
            request: req,
            reply: Reply {
                tx,
                receipt: receipt.clone(),
            },
        });
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(res)) => {
                // The answer reached its caller: a repeated call is judged by the state now.
                receipt.take();
                res
            }
            Ok(Err(_)) => Err(TransactionError::Fatal {
                reason: "producer closed".into(),
            }),
            Err(_) => Err(TransactionError::Timeout {
                operation,
                waited_ms: start.elapsed().as_millis() as u64,
            }),
        }
    }
}
