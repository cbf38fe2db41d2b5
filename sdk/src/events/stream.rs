//! [`EventStream`]: a long poll in a loop that acknowledges an event only once it was
//! handled; [`MessageInbox`]: messages over events for
//! [`crate::CommunicationPlugin::receive_messages`].

use super::*;

/// Long-polls this plugin's queue in a loop and hands out events one at a time,
/// acknowledging each only when told to ([`EventStream::ack`]) — or, with
/// [`EventStream::run`], when the handler returned `Ok`.
///
/// - An event handed out by [`EventStream::next`] and not acknowledged before the
///   next call comes again (after a backoff), with everything after it.
/// - No answer, a timeout, 5xx: retried with capped exponential backoff and jitter.
/// - Built from a runner's client ([`crate::PluginContext::events`],
///   [`crate::RunnerHandle::events`]): the stream always uses the runner's current
///   token; while the plugin is not registered yet, disabled, or its token is
///   refused, the stream waits and retries (on a refused token it also tells the
///   runner, which re-registers at once).
/// - Built from [`CoreClient::as_plugin`] (a fixed token): those errors are returned.
/// - A cursor the core does not know (a core on the in-memory bus restarted) is
///   dropped with a warning, and the stream continues from the queue's start.
///
/// Dropping a stream (or a `next` future) loses nothing: unacknowledged events stay
/// in the core's queue.
#[derive(Debug)]
pub struct EventStream {
    client: CoreClient,
    wait: Duration,
    limit: usize,
    core_backoff: BackoffState,
    handler_backoff: BackoffState,
    /// Sent as `after`: everything up to it is acknowledged.
    after: Option<String>,
    buffer: VecDeque<Event>,
    /// The cursor of the event (or batch) handed out and not acknowledged yet.
    pending: Option<String>,
    dropped: u64,
}

impl EventStream {
    /// A stream over `client`'s plugin queue: a runner's client, or
    /// [`CoreClient::as_plugin`]. Long polls of [`DEFAULT_EVENT_WAIT`], 100 events at a
    /// time, the default [`Backoff`].
    pub fn new(client: CoreClient) -> Self {
        Self {
            client,
            wait: DEFAULT_EVENT_WAIT,
            limit: 100,
            core_backoff: BackoffState::new(Backoff::default()),
            handler_backoff: BackoffState::new(Backoff::default()),
            after: None,
            buffer: VecDeque::new(),
            pending: None,
            dropped: 0,
        }
    }

    /// How long each long poll waits for a first event (the core caps it).
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Events per pull, 1–1000 (clamped).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, MAX_PULL_LIMIT);
        self
    }

    /// Retry delays after failures (the core down, a handler error).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.core_backoff = BackoffState::new(backoff);
        self.handler_backoff = BackoffState::new(backoff);
        self
    }

    /// The cursor sent as `after` on the next pull (everything up to it is
    /// acknowledged, or will be by that pull).
    pub fn acknowledged(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// Events the core's queue bound dropped before this stream could pull them, in
    /// total (each drop is also logged as a warning).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Acknowledges `event` and every event handed out before it: its cursor goes as
    /// `after` with the next pull.
    pub fn ack(&mut self, event: &Event) {
        if self.pending.as_deref() == Some(event.cursor.as_str()) {
            self.pending = None;
        }
        self.after = Some(event.cursor.clone());
        self.handler_backoff.reset();
    }

    /// The next event, long-polling (and retrying, see the type's docs) as long as
    /// needed. Cancel-safe.
    ///
    /// # Errors
    /// Only for a stream with a fixed token, errors retrying cannot fix
    /// (`Unauthorized`, `Disabled`, `Forbidden`, `NotFound`, `NotRegistered`,
    /// `InvalidRequest`, `Protocol`). A runner's stream never fails.
    pub async fn next(&mut self) -> Result<Event, PullError> {
        if self.pending.take().is_some() {
            // The last event was not acknowledged: it (and what followed it) must come
            // again, so forget the batch and pull from the acknowledged cursor.
            self.buffer.clear();
            tokio::time::sleep(self.handler_backoff.next_delay()).await;
        }
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.pending = Some(event.cursor.clone());
                return Ok(event);
            }
            self.fill(self.limit).await?;
        }
    }

    /// Hands out up to `limit` events with at most one pull (waiting up to the
    /// stream's `wait` for a first event), without retrying, and acknowledges the
    /// events the previous call handed out: a batch counts as handled once the caller
    /// asks for the next one. For [`crate::CommunicationPlugin::receive_messages`]
    /// (see [`MessageInbox`]); do not mix with [`EventStream::next`].
    ///
    /// # Errors
    /// [`PullError`] from the pull (nothing is acknowledged or lost).
    pub async fn receive(&mut self, limit: usize) -> Result<Vec<Event>, PullError> {
        if let Some(cursor) = self.pending.take() {
            self.after = Some(cursor);
        }
        if self.buffer.is_empty() {
            self.pull_once(self.limit.max(limit.min(MAX_PULL_LIMIT)))
                .await?;
        }
        let n = limit.min(self.buffer.len());
        let batch: Vec<Event> = self.buffer.drain(..n).collect();
        self.pending = batch.last().map(|e| e.cursor.clone());
        Ok(batch)
    }

    /// Runs `handler` on every event until `stop` completes: an event is acknowledged
    /// only when the handler returned `Ok`; after an error it comes again after a
    /// backoff. A handler already running when `stop` completes is finished first.
    ///
    /// # Errors
    /// As [`EventStream::next`] (never for a runner's stream).
    pub async fn run<H: EventHandler + ?Sized>(
        mut self,
        handler: &H,
        stop: impl Future<Output = ()>,
    ) -> Result<(), PullError> {
        let mut stop = std::pin::pin!(stop);
        loop {
            let event = tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                r = self.next() => r?,
            };
            let (cursor, event_id, event_type) = (
                event.cursor.clone(),
                event.event_id.clone(),
                event.event_type.clone(),
            );
            match handler.on_event(event).await {
                Ok(()) => {
                    self.pending = None;
                    self.after = Some(cursor);
                    self.handler_backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(
                        plugin_id = %self.plugin_id(),
                        event_id = %event_id,
                        event_type = %event_type,
                        attempt = self.handler_backoff.failures() + 1,
                        error = %e,
                        "event handler failed; the event will be delivered again"
                    );
                }
            }
        }
    }

    fn plugin_id(&self) -> &str {
        self.client.identity().map_or("", |s| s.plugin_id.as_str())
    }

    fn managed(&self) -> bool {
        self.client.identity().is_some_and(|s| s.managed)
    }

    /// One pull into the buffer, retrying as the type's docs say.
    async fn fill(&mut self, limit: usize) -> Result<(), PullError> {
        loop {
            let e = match self.pull_once(limit).await {
                Ok(()) => {
                    self.core_backoff.reset();
                    return Ok(());
                }
                Err(e) => e,
            };
            let managed = self.managed();
            let retry = match &e {
                PullError::InvalidRequest { .. } if self.after.is_some() => {
                    tracing::warn!(plugin_id = %self.plugin_id(), error = %e, "the core does not know this stream's cursor; continuing from the queue's acknowledged start");
                    self.after = None;
                    continue;
                }
                e if e.is_transient() => true,
                PullError::NotRegistered | PullError::Disabled => managed,
                e if e.is_token_refused() => managed,
                _ => managed,
            };
            if !retry {
                return Err(e);
            }
            let delay = self.core_backoff.next_delay();
            tracing::warn!(
                plugin_id = %self.plugin_id(),
                attempt = self.core_backoff.failures(),
                retry_in_ms = delay.as_millis() as u64,
                error = %e,
                "pulling events failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One pull into the buffer (which must be empty).
    async fn pull_once(&mut self, limit: usize) -> Result<(), PullError> {
        let pulled = self
            .client
            .pull(self.after.as_deref(), self.wait, limit)
            .await?;
        if pulled.dropped > 0 {
            self.dropped = self.dropped.saturating_add(pulled.dropped);
            tracing::warn!(plugin_id = %self.plugin_id(), dropped = pulled.dropped, "the core's queue bound dropped events before they were pulled");
        }
        if pulled.events.is_empty() {
            // Acknowledges what `after` did plus the dropped events.
            if pulled.next_cursor.is_some() {
                self.after = pulled.next_cursor;
            }
        } else {
            tracing::debug!(plugin_id = %self.plugin_id(), events = pulled.events.len(), "events pulled");
            self.buffer.extend(pulled.events);
        }
        Ok(())
    }
}

/// [`crate::CommunicationPlugin::receive_messages`] over the core's events: each
/// event's payload is a [`CanonicalMessage`] (as [`OutgoingEvent::message`] publishes
/// it). Messages one call returns are acknowledged by the next call (at-least-once: if
/// the plugin stops in between, they come again).
///
/// ```no_run
/// use vivified_plugin_sdk::{
///     async_trait, CanonicalMessage, CommunicationPlugin, MessageInbox, OutgoingEvent,
///     ReceiveMessagesError, SendMessageError,
/// };
/// # use vivified_plugin_sdk::{InitializeError, Manifest, Plugin, PluginContext};
///
/// struct Mail {
///     inbox: std::sync::OnceLock<MessageInbox>,
///     client: std::sync::OnceLock<vivified_plugin_sdk::CoreClient>,
/// }
/// # #[async_trait]
/// # impl Plugin for Mail {
/// #     fn manifest(&self) -> Manifest {
/// #         Manifest::builder("mail", "Mail", "0.1.0")
/// #             .subscriptions(["message.*"])
/// #             .build()
/// #             .expect("a valid manifest")
/// #     }
/// #     async fn initialize(&self, ctx: PluginContext) -> Result<(), InitializeError> {
/// #         let _ = self.inbox.set(MessageInbox::new(ctx.events()));
/// #         let _ = self.client.set(ctx.client());
/// #         Ok(())
/// #     }
/// # }
///
/// #[async_trait]
/// impl CommunicationPlugin for Mail {
///     async fn send_message(&self, m: CanonicalMessage) -> Result<String, SendMessageError> {
///         let client = self.client.get().ok_or(SendMessageError::Rejected("starting".into()))?;
///         let receipt = client
///             .publish(OutgoingEvent::message("message.sent", &m))
///             .await
///             .map_err(|e| SendMessageError::Unavailable(Box::new(e)))?;
///         Ok(receipt.event_id)
///     }
///
///     async fn receive_messages(&self, limit: usize) -> Result<Vec<CanonicalMessage>, ReceiveMessagesError> {
///         match self.inbox.get() {
///             Some(inbox) => inbox.receive(limit).await,
///             None => Ok(Vec::new()),
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct MessageInbox {
    stream: tokio::sync::Mutex<EventStream>,
}

impl MessageInbox {
    /// An inbox over `stream` (its `wait` is how long a call waits for a first message;
    /// e.g. `ctx.events().wait(Duration::ZERO)` to never wait).
    pub fn new(stream: EventStream) -> Self {
        Self {
            stream: tokio::sync::Mutex::new(stream),
        }
    }

    /// Up to `limit` messages, oldest first. An event whose payload is not a
    /// `CanonicalMessage` is skipped (and acknowledged) with a warning naming its id;
    /// a message without data traits gets the event's.
    ///
    /// # Errors
    /// [`ReceiveMessagesError::Unavailable`] with the [`PullError`] as its source.
    pub async fn receive(
        &self,
        limit: usize,
    ) -> Result<Vec<CanonicalMessage>, ReceiveMessagesError> {
        let mut stream = self.stream.lock().await;
        let events = stream
            .receive(limit)
            .await
            .map_err(|e| ReceiveMessagesError::Unavailable(Box::new(e)))?;
        let plugin_id = stream.plugin_id().to_owned();
        Ok(events
            .into_iter()
            .filter_map(|event| match event.payload_as::<CanonicalMessage>() {
                Ok(mut m) => {
                    if m.data_traits.is_empty() {
                        m.data_traits = event.data_traits;
                    }
                    Some(m)
                }
                Err(e) => {
                    tracing::warn!(plugin_id = %plugin_id, event_id = %event.event_id, event_type = %event.event_type, error = %e, "an event is not a message; skipped");
                    None
                }
            })
            .collect())
    }
}
