//! Starting and stopping the producer: its arbiters (the accumulators' and the one that hosts
//! the actors), the actix system thread started for a producer created outside actix, and
//! `close`.

use super::*;

impl Producer {
    /// Starts the producer's actors with the default partitioner.
    ///
    /// Inside an actix `System` the actors run on new arbiters of that system; from plain tokio
    /// (or any thread) a background actix system thread is started for them.
    ///
    /// # Errors
    /// [`ProduceError::Config`] for a configuration without bootstrap servers.
    pub async fn start(config: ProducerConfig) -> Result<Producer, ProduceError> {
        Self::builder(config).start().await
    }

    /// A builder for a producer with a custom [`Partitioner`] and/or interceptors.
    pub fn builder(config: ProducerConfig) -> ProducerBuilder {
        ProducerBuilder {
            config,
            partitioner: None,
            interceptors: Vec::new(),
            options: Options::default(),
        }
    }

    /// Starts the producer with a custom [`Partitioner`].
    ///
    /// # Errors
    /// As [`Producer::start`].
    pub async fn start_with_partitioner(
        config: ProducerConfig,
        partitioner: Arc<dyn Partitioner>,
    ) -> Result<Producer, ProduceError> {
        Self::builder(config).partitioner(partitioner).start().await
    }

    /// `partitioner`: the user's, else (`None`) the [`DefaultPartitioner`] the configuration
    /// describes (built once the cluster view exists: `partitioner.rack.aware` reads it).
    pub(super) async fn start_parts(
        config: ProducerConfig,
        partitioner: Option<Arc<dyn Partitioner>>,
        interceptors: Interceptors,
        options: Options,
    ) -> Result<Producer, ProduceError> {
        if config.bootstrap_servers.is_empty() {
            return Err(ProduceError::Config(crate::config::ConfigError::Missing {
                key: "bootstrap.servers".into(),
            }));
        }
        if System::try_current().is_some() {
            return Ok(Self::start_in_system(
                config,
                partitioner,
                interceptors,
                options,
            ));
        }
        // Plain tokio: run an actix system on a thread of its own (stopped and joined by
        // `close`, stopped when the last handle is dropped).
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("actix-kafka-system".into())
            .spawn(move || {
                let sys = System::new();
                let producer = sys.block_on(async move {
                    Self::start_in_system(config, partitioner, interceptors, options)
                });
                let _ = tx.send((producer, System::current()));
                sys.run().ok();
            })
            .map_err(|e| ProduceError::closed(format!("cannot start system thread: {e}")))?;
        let (producer, system) = rx
            .await
            .map_err(|_| ProduceError::closed("producer system thread failed to start"))?;
        if let Ok(mut own) = producer.inner.own_system.lock() {
            *own = Some((system, thread));
        }
        Ok(producer)
    }

    pub(super) fn start_in_system(
        config: ProducerConfig,
        partitioner: Option<Arc<dyn Partitioner>>,
        interceptors: Interceptors,
        options: Options,
    ) -> Producer {
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            interceptors,
            txn: crate::transaction::TxnShared::new(config.transactional_id.is_some()),
            ..Default::default()
        });
        shared
            .pending
            .set_limit(config.queue_buffering_max_messages as u64);
        let network = Arbiter::new();
        let accumulator_arbiter = Arbiter::new();
        let cluster = Arc::new(Cluster::default());
        let partitioner = partitioner.unwrap_or_else(|| {
            let default =
                DefaultPartitioner::new(config.batch_size, config.partitioner_ignore_keys);
            Arc::new(if config.partitioner_rack_aware {
                default.rack_aware(config.client_rack.as_str().into(), cluster.clone())
            } else {
                default
            })
        });
        let settings = ConnectionSettings {
            client_id: config.client_id.as_str().into(),
            connect_timeout: config.socket_connection_setup_timeout,
            reconnect_backoff: config.reconnect_backoff,
            reconnect_backoff_max: config.reconnect_backoff_max,
            request_timeout: config.request_timeout,
            max_idle: config.connections_max_idle,
            security: Arc::new(config.security.clone()),
            tls: config.tls_client_config.clone(),
            shared: shared.clone(),
        };
        let bootstrap = config
            .bootstrap_servers
            .iter()
            .map(|s| Arc::<str>::from(s.as_str()))
            .collect();
        let pool = Arc::new(ConnectionPool::new(settings, network.handle(), bootstrap));
        let metadata = {
            let (config, cluster, pool) = (config.clone(), cluster.clone(), pool.clone());
            let forget = {
                let partitioner = partitioner.clone();
                Arc::new(move |topic: &str| partitioner.forget_topic(topic))
            };
            MetadataManager::start_in_arbiter(&network.handle(), move |_| {
                MetadataManager::new(config, cluster, pool).on_forget(forget)
            })
        };
        let sender = {
            let (config, cluster, pool, metadata, shared) = (
                config.clone(),
                cluster.clone(),
                pool.clone(),
                metadata.clone(),
                shared.clone(),
            );
            Sender::start_in_arbiter(&network.handle(), move |_| {
                Sender::new(config, cluster, pool, metadata, shared)
            })
        };
        let accumulator_arbiters = vec![accumulator_arbiter.handle()];
        #[cfg(feature = "metrics")]
        let exporter = Arc::new(Mutex::new(crate::metrics::export::Exporter::new(
            &config.client_id,
        )));
        #[cfg(feature = "metrics")]
        let export_on = network.handle();
        let producer = Producer {
            inner: Arc::new(Inner {
                config,
                cluster,
                metadata,
                sender,
                partitioner,
                accumulators: Arc::new(Directory::default()),
                fetch_asked: crate::FastMap::default(),
                accumulator_arbiters,
                next_arbiter: AtomicUsize::new(0),
                // Last: the arbiter `actor()` starts KafkaProducer actors on.
                arbiters: Mutex::new(vec![network, accumulator_arbiter]),
                shared,
                closed: AtomicBool::new(false),
                own_system: Mutex::new(None),
                #[cfg(feature = "metrics")]
                exporter,
                options,
            }),
        };
        #[cfg(feature = "metrics")]
        producer.export_metrics_every(crate::metrics::export::EXPORT_INTERVAL, &export_on);
        producer
    }

    /// Feature `metrics`: copies the metrics into the `metrics` facade every `interval` on
    /// `arbiter` (the network's: the task ends when `close` stops it, or when the last handle
    /// is gone).
    #[cfg(feature = "metrics")]
    fn export_metrics_every(&self, interval: Duration, arbiter: &ArbiterHandle) {
        let weak = Arc::downgrade(&self.inner);
        arbiter.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { break };
                Producer { inner }.export_metrics();
            }
        });
    }

    /// Feature `metrics`: copies the metrics into the `metrics` facade now.
    #[cfg(feature = "metrics")]
    pub(crate) fn export_metrics(&self) {
        let snapshot = self.metrics();
        if let Ok(mut e) = self.inner.exporter.lock() {
            e.export(&snapshot);
        }
    }

    /// [`Producer::close`]; `from_actor`: called by the [`KafkaProducer`] actor, which runs on
    /// the producer's last arbiter. That arbiter (and the system thread of a plain-tokio
    /// producer) is then stopped last, with nothing awaited after it, so the actor's reply is
    /// sent before its arbiter goes (a `Close` message is never cut short by a
    /// `MailboxError`).
    pub(crate) async fn close_from(&self, timeout: Duration, from_actor: bool) {
        // A user's duration: saturated (`close(Duration::MAX)` must not overflow `Instant`).
        let now = tokio::time::Instant::now();
        let deadline = crate::time::tokio_deadline_after(now, timeout);
        let deliver_until = crate::time::tokio_deadline_after(now, timeout.mul_f64(0.8));
        let txn = &self.inner.shared.txn;
        if txn.enabled
            && matches!(
                txn.state(),
                crate::transaction::TxnState::InTransaction
                    | crate::transaction::TxnState::AbortableError
                    | crate::transaction::TxnState::Aborting
            )
        {
            // As Java's close: an open transaction is aborted, not left to time out.
            if let Ok(Err(e)) =
                tokio::time::timeout_at(deliver_until, self.abort_transaction()).await
            {
                tracing::warn!(error = %e, "abort of the open transaction at close failed");
            }
        }
        self.inner.closed.store(true, Ordering::Release);
        if tokio::time::timeout_at(deliver_until, self.flush())
            .await
            .is_err()
        {
            let err = ProduceError::closed(format!(
                "producer closed before delivery (close timeout {} ms)",
                timeout.as_millis()
            ));
            for slot in self.inner.accumulators.iter() {
                slot.addr.do_send(AbortAccumulator(err.clone()));
            }
            self.inner.sender.do_send(AbortAll(err));
            // Queued batches fail at once; batches in flight fail when their actors stop.
            let _ = tokio::time::timeout_at(deadline, self.inner.shared.pending.wait_zero()).await;
        }
        // The last values, with every record's outcome counted (feature `metrics`).
        #[cfg(feature = "metrics")]
        self.export_metrics();
        let mut arbiters: Vec<Arbiter> = match self.inner.arbiters.lock() {
            Ok(mut a) => a.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        // The KafkaProducer actor's arbiter (the last) waits when the actor is the caller.
        let last = if from_actor { arbiters.pop() } else { None };
        for a in arbiters {
            a.stop();
        }
        // Stopping the arbiters drops every actor and fails their records; wait for that while
        // the timeout lasts.
        let _ = tokio::time::timeout_at(deadline, self.inner.shared.pending.wait_zero()).await;
        // From plain tokio: stop the system thread started for us and join it (within the
        // timeout), so no thread outlives `close`.
        let own = self.inner.own_system.lock().ok().and_then(|mut o| o.take());
        if let Some((system, thread)) = own {
            // Called on one of the producer's own threads (the `Close` message to its actor):
            // the thread ends by itself once the actor has replied; a thread cannot join
            // itself.
            let inside = System::try_current().is_some_and(|s| s.id() == system.id());
            if inside {
                if let Some(a) = last {
                    a.stop();
                }
                // Asynchronous: the system stops after this poll, once the reply is sent.
                system.stop();
                return;
            }
            system.stop();
            let join = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout_at(deadline, join).await;
        }
        // Asynchronous too: the arbiter stops after the actor's reply is sent.
        if let Some(a) = last {
            a.stop();
        }
    }
}

/// Builds a [`Producer`] with a custom partitioner and interceptors.
pub struct ProducerBuilder {
    config: ProducerConfig,
    partitioner: Option<Arc<dyn Partitioner>>,
    interceptors: Vec<Arc<dyn ProducerInterceptor>>,
    options: Options,
}

/// What a [`ProducerBuilder`] sets beside the configuration keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Feature `opentelemetry`: inject each record's trace context into its headers.
    #[cfg(feature = "opentelemetry")]
    pub(crate) inject_trace_context: bool,
}

// Not derived: with the feature, the injection is on by default.
#[allow(clippy::derivable_impls)]
impl Default for Options {
    fn default() -> Self {
        Options {
            #[cfg(feature = "opentelemetry")]
            inject_trace_context: true,
        }
    }
}

impl ProducerBuilder {
    /// Uses `partitioner` instead of the [`DefaultPartitioner`].
    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> Self {
        self.partitioner = Some(partitioner);
        self
    }

    /// Adds an interceptor; interceptors run in the order they are added.
    pub fn interceptor(mut self, interceptor: impl ProducerInterceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Feature `opentelemetry`: whether each record's span context is injected into its
    /// headers by the global text-map propagator (W3C `traceparent`/`tracestate` with
    /// OpenTelemetry's `TraceContextPropagator`). Default `true`; the spans are made either way
    /// (see [`crate::otel`]).
    #[cfg(feature = "opentelemetry")]
    pub fn inject_trace_context(mut self, inject: bool) -> Self {
        self.options.inject_trace_context = inject;
        self
    }

    /// Starts the producer.
    ///
    /// # Errors
    /// As [`Producer::start`].
    pub async fn start(self) -> Result<Producer, ProduceError> {
        Producer::start_parts(
            self.config,
            self.partitioner,
            Interceptors::new(self.interceptors),
            self.options,
        )
        .await
    }
}
