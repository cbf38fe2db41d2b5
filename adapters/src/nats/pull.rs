//! One pull of a subscriber's queue: fetch, acknowledge what the cursor says was
//! handled, hand back the rest in order.

use super::*;

/// One look at a queue.
struct Attempt {
    /// The answer, to return now if it has events, or when the wait is over.
    pulled: Pulled,
    /// An older unacknowledged event is in flight: look again shortly.
    in_flight: bool,
    /// Messages the cursor acknowledges were not fetched (in flight, or their NAK not
    /// yet applied), so not yet acknowledged on the server: look again shortly.
    ack_owed: bool,
}

impl Attempt {
    fn answer(pulled: Pulled) -> Self {
        Self {
            pulled,
            in_flight: false,
            ack_owed: false,
        }
    }
}

impl NatsEventBus {
    /// [`EventBus::pull`]: attempts until there are events, the wait is over, or an
    /// owed acknowledgement was applied; woken by new deliveries in between.
    pub(super) async fn pull_waiting(
        &self,
        target: &PluginId,
        after: Option<&Cursor>,
        limit: usize,
        wait: Duration,
    ) -> Result<Pulled, BusError> {
        let after_pos = after.map(parse_cursor).transpose()?;
        let limit = limit.clamp(1, MAX_PULL);
        let started = Instant::now();
        let deadline = started + wait.min(MAX_WAIT);
        // An acknowledgement is worth waiting a little for even by a pull that does not
        // wait, so that no replica returns the events again.
        let ack_deadline = deadline.max(started + ACK_GRACE);
        let mut wake: Option<async_nats::Subscriber> = None;
        loop {
            let Attempt {
                pulled,
                in_flight,
                ack_owed,
            } = self.attempt(target, after, after_pos, limit).await?;
            let now = Instant::now();
            let ready = !pulled.events.is_empty() || pulled.dropped > 0 || now >= deadline;
            if ready && (!ack_owed || now >= ack_deadline) {
                return Ok(pulled);
            }
            if ack_owed {
                tokio::time::sleep_until(ack_deadline.min(now + GAP_RETRY)).await;
                continue;
            }
            let Some(sub) = wake.as_mut() else {
                // Subscribe, then look again: nothing stored in between is missed.
                wake = Some(
                    self.client
                        .subscribe(self.delivery_subject(target))
                        .await
                        .map_err(|e| unavailable("waiting for deliveries", e))?,
                );
                continue;
            };
            let until = if in_flight {
                deadline.min(Instant::now() + GAP_RETRY)
            } else {
                deadline
            };
            // Woken by a new message, or by the time; either way, look again.
            if let Ok(None) = tokio::time::timeout_at(until, sub.next()).await {
                // The subscription ended (connection lost): poll instead.
                wake = None;
                tokio::time::sleep_until(deadline.min(Instant::now() + GAP_RETRY)).await;
            }
        }
    }

    /// One look at the queue of `target`: acknowledge, fetch, answer.
    async fn attempt(
        &self,
        target: &PluginId,
        after: Option<&Cursor>,
        after_pos: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<Attempt, BusError> {
        let Some(stream) = self.stream(target).await? else {
            return Ok(Attempt::answer(Pulled {
                events: Vec::new(),
                next_cursor: after.cloned(),
                dropped: 0,
            }));
        };
        let info = stream.cached_info();
        let incarnation = u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0);
        let first = info.state.first_sequence;
        let last = info.state.last_sequence;
        let acked = match after_pos {
            Some((inc, seq)) if inc == incarnation => {
                if seq > last {
                    return Err(BusError::InvalidCursor);
                }
                Some(seq)
            }
            _ => None,
        };
        let consumer: consumer::PullConsumer = match stream.get_consumer(CONSUMER).await {
            Ok(c) => c,
            Err(_) => stream
                .get_or_create_consumer(CONSUMER, self.consumer_config())
                .await
                .map_err(|e| unavailable("creating a delivery consumer", e))?,
        };
        let consumer_info = consumer.cached_info();
        let server_floor = consumer_info.ack_floor.stream_sequence;
        // Acknowledged: up to the cursor, and whatever the consumer already knows of.
        let floor = acked.unwrap_or(0).max(server_floor);
        let first = first.max(floor + 1);
        // Drops are counted from the cursor: JetStream may move the consumer's floor past
        // discarded messages, so it is the reference only without a cursor.
        let dropped = first.saturating_sub(acked.unwrap_or(server_floor) + 1);
        let empty = Pulled {
            events: Vec::new(),
            next_cursor: Some(cursor(incarnation, first - 1)),
            dropped,
        };
        if info.state.messages == 0 {
            return Ok(Attempt::answer(empty));
        }
        // The NAKed messages come first; those at or below the floor are fetched to be
        // acknowledged.
        let pending = consumer_info.num_ack_pending.min(self.config.queue_bound);
        let mut batch = consumer
            .fetch()
            .max_messages(limit + pending)
            .expires(FETCH_EXPIRES)
            .messages()
            .await
            .map_err(|e| unavailable("fetching deliveries", e))?;
        let mut fetched = Vec::new();
        loop {
            match tokio::time::timeout(FETCH_GUARD, batch.next()).await {
                Ok(Some(Ok(m))) => fetched.push(m),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    self.nak_all(&fetched).await;
                    return Err(unavailable("fetching deliveries", e));
                }
                Err(_) => {
                    // The server neither sent more nor ended the request it was told to
                    // end: use what came. Anything it sends later goes nowhere and is
                    // redelivered after `ack_wait`.
                    tracing::warn!(plugin_id = %target, "fetch of deliveries stalled");
                    break;
                }
            }
        }
        drop(batch);
        let mut numbered: Vec<(u64, &jetstream::Message)> = fetched
            .iter()
            .filter_map(|m| m.info().ok().map(|i| (i.stream_sequence, m)))
            .collect();
        numbered.sort_by_key(|(seq, _)| *seq);
        // AckAll: the highest fetched message at or below the floor acknowledges every
        // message up to it, and the interest stream deletes them. Waits for the server,
        // so no replica returns them after this pull.
        let (acknowledged, rest): (Vec<_>, Vec<_>) =
            numbered.into_iter().partition(|(seq, _)| *seq <= floor);
        let mut acked_to = server_floor;
        if let Some((seq, m)) = acknowledged.last() {
            if let Err(e) = m.double_ack().await {
                self.nak_all(&fetched).await;
                return Err(unavailable("acknowledging deliveries", e));
            }
            acked_to = acked_to.max(*seq);
        }
        // The stream holds every sequence from its first to its last: is one at or below
        // the floor still there, unacknowledged?
        let ack_owed = acked_to.saturating_add(1).max(info.state.first_sequence) <= floor.min(last);
        let numbered = rest;
        let mut events = Vec::new();
        let mut undecodable = 0u64;
        let mut next = first;
        for (seq, m) in numbered {
            if seq < next {
                continue; // acknowledged meanwhile, or fetched twice
            }
            if seq > next || events.len() + undecodable as usize >= limit {
                break;
            }
            match decode(&m.payload) {
                Some(event) => events.push((cursor(incarnation, seq), event)),
                None => {
                    undecodable += 1;
                    tracing::warn!(
                        plugin_id = %target,
                        sequence = seq,
                        "undecodable delivery skipped and counted as dropped"
                    );
                }
            }
            next += 1;
        }
        // Redeliverable at once, to whichever replica serves the next pull.
        self.nak_above(&fetched, floor).await;
        if next == first {
            // Nothing unacknowledged is kept, or the oldest is in flight elsewhere.
            return Ok(Attempt {
                pulled: empty,
                in_flight: first <= last,
                ack_owed,
            });
        }
        Ok(Attempt {
            pulled: Pulled {
                events,
                next_cursor: Some(cursor(incarnation, next - 1)),
                dropped: dropped + undecodable,
            },
            in_flight: false,
            ack_owed,
        })
    }

    async fn nak_all(&self, messages: &[jetstream::Message]) {
        self.nak_above(messages, 0).await;
    }

    /// NAKs the messages above `floor`, so they are redelivered at once.
    async fn nak_above(&self, messages: &[jetstream::Message], floor: u64) {
        let mut sent = false;
        for m in messages {
            if m.info().map_or(true, |i| i.stream_sequence <= floor) {
                continue;
            }
            sent = true;
            // A lost NAK only delays redelivery to `ack_wait`.
            if let Err(e) = m.ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %e, "nak of a delivery failed");
            }
        }
        if sent && let Err(e) = self.client.flush().await {
            tracing::debug!(error = %e, "flush after nak failed");
        }
    }
}
