//! Each subscriber's delivery queue: a JetStream stream and its durable pull consumer,
//! created on first use and remembered as ready.

use super::*;

impl NatsEventBus {
    pub(super) fn is_ready(&self, target: &PluginId) -> bool {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(target)
    }

    pub(super) fn set_ready(&self, target: &PluginId, ready: bool) {
        let mut set = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        if ready {
            set.insert(target.clone());
        } else {
            set.remove(target);
        }
    }

    pub(super) fn consumer_config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            description: Some("vivified core: deliveries to the plugin".to_owned()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::All,
            ack_wait: self.config.ack_wait,
            max_deliver: -1,
            // Every kept event may be pending at once (fetched, NAKed, not yet acknowledged).
            max_ack_pending: i64::try_from(self.config.queue_bound)
                .unwrap_or(i64::MAX)
                .saturating_add(MAX_PULL as i64),
            ..Default::default()
        }
    }

    pub(super) fn stream_config(&self, target: &PluginId, subject: String) -> stream::Config {
        stream::Config {
            name: self.stream_name(target),
            description: Some(format!("vivified core: deliveries to {target}")),
            subjects: vec![subject],
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            max_messages: i64::try_from(self.config.queue_bound).unwrap_or(i64::MAX),
            discard: stream::DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(120),
            num_replicas: self.config.replicas.max(1),
            ..Default::default()
        }
    }

    /// Creates the stream and consumer of `target` if they do not exist. An interest
    /// stream without a consumer would accept and at once discard a publication, so a
    /// new stream captures a placeholder subject until its consumer exists, and only
    /// then the delivery subject.
    pub(super) async fn ensure_queue(&self, target: &PluginId) -> Result<(), BusError> {
        let subject = self.delivery_subject(target);
        let stream = match self.stream(target).await? {
            Some(s) => s,
            None => {
                let placeholder = format!("{}.unready.{target}", self.config.subject_prefix);
                match self
                    .js
                    .create_stream(self.stream_config(target, placeholder))
                    .await
                {
                    Ok(s) => s,
                    // Created meanwhile by another replica.
                    Err(e) => self
                        .stream(target)
                        .await?
                        .ok_or_else(|| unavailable("creating a delivery stream", e))?,
                }
            }
        };
        stream
            .get_or_create_consumer(CONSUMER, self.consumer_config())
            .await
            .map_err(|e| unavailable("creating a delivery consumer", e))?;
        if !stream.cached_info().config.subjects.contains(&subject) {
            self.js
                .update_stream(self.stream_config(target, subject))
                .await
                .map_err(|e| unavailable("opening a delivery stream", e))?;
        }
        self.set_ready(target, true);
        Ok(())
    }

    /// The stream of `target`, or `None` if it has no queue.
    pub(super) async fn stream(
        &self,
        target: &PluginId,
    ) -> Result<Option<stream::Stream>, BusError> {
        match self.js.get_stream(self.stream_name(target)).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(err)
                    if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(unavailable("reading a delivery stream", e)),
            },
        }
    }
}
