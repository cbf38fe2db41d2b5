//! The runner's loop: register (retrying with backoff while the core is down),
//! heartbeat at the interval the core returned, refresh the token before it expires,
//! re-register when the token stops working, back off while the plugin is disabled.

use super::*;

impl<P: Plugin> Runner<P> {
    /// Waits `delay` unless told to stop first; `true` when told to stop.
    pub(super) async fn pause(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
        let stopped = tokio::select! {
            () = tokio::time::sleep(delay) => false,
            r = stop.wait_for(|s| *s) => r.is_ok(),
        };
        stopped || *stop.borrow()
    }

    pub(super) async fn drive(&self, stop: &mut watch::Receiver<bool>) -> Result<(), RunError> {
        let id = self.manifest.id.as_str();
        let mut backoff = BackoffState::new(self.config.backoff);
        let mut refresh_backoff = BackoffState::new(self.config.backoff);
        let mut phase = Phase::Register;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            match &mut phase {
                Phase::Register => {
                    let (kind, bearer) = self.bearer();
                    let instance = self.instance();
                    match self
                        .client
                        .register_instance(&self.manifest, instance.as_deref(), bearer.as_ref())
                        .await
                    {
                        Ok(reg) => {
                            if kind == Bearer::Enrollment {
                                // One use: a later registration needs another credential.
                                self.enrollment_spent.store(true, Ordering::Release);
                            }
                            tracing::info!(
                                plugin_id = %id,
                                credential = kind.as_str(),
                                expires_at = %reg.expires_at,
                                heartbeat_interval_ms = reg.heartbeat_interval.as_millis() as u64,
                                after_failures = backoff.failures(),
                                "registered with the core"
                            );
                            backoff.reset();
                            refresh_backoff.reset();
                            phase = Phase::Active(self.adopt(&reg, Instant::now()));
                        }
                        Err(CoreError::InvalidManifest { violations }) => {
                            for v in &violations {
                                tracing::error!(plugin_id = %id, path = %v.path, code = %v.code, message = %v.message, "the core refused the manifest");
                            }
                            return Err(RunError::Manifest(ManifestError { violations }));
                        }
                        Err(CoreError::Unauthorized { reason }) if kind == Bearer::Token => {
                            // The kept token is dead (another JWT secret, an emptied store,
                            // expired past the grace, replaced): register as new.
                            tracing::warn!(plugin_id = %id, reason = %reason, "the core refused the kept token; registering as a new plugin");
                            self.forget_token();
                        }
                        Err(e) => {
                            let delay = backoff.next_delay();
                            let status = match &e {
                                CoreError::AlreadyRegistered => {
                                    PluginStatus::Refused(Refusal::AlreadyRegistered)
                                }
                                CoreError::Unauthorized { reason }
                                    if reason == "registration_secret_required" =>
                                {
                                    PluginStatus::Refused(Refusal::RegistrationSecretRequired)
                                }
                                CoreError::Unauthorized { reason }
                                | CoreError::Forbidden { reason } => {
                                    PluginStatus::Refused(Refusal::Unauthorized(reason.clone()))
                                }
                                CoreError::PluginDisabled => PluginStatus::Disabled,
                                _ => PluginStatus::Connecting {
                                    attempt: backoff.failures(),
                                },
                            };
                            let message = match &e {
                                CoreError::AlreadyRegistered => {
                                    "the id is held by another registration and this plugin has no valid token for it; an operator can free it with DELETE /plugins/{id}; retrying"
                                }
                                CoreError::Unauthorized { .. } | CoreError::Forbidden { .. } => {
                                    "the core refused the registration credential; retrying"
                                }
                                CoreError::PluginDisabled => {
                                    "the plugin is disabled by an operator; retrying"
                                }
                                e if e.is_transient() => {
                                    "core not reachable; retrying registration"
                                }
                                _ => "registration failed; retrying",
                            };
                            tracing::warn!(
                                plugin_id = %id,
                                attempt = backoff.failures(),
                                retry_in_ms = delay.as_millis() as u64,
                                credential = kind.as_str(),
                                error = %e,
                                "{message}"
                            );
                            self.status.send_replace(status);
                            if Self::pause(stop, delay).await {
                                return Ok(());
                            }
                        }
                    }
                }
                Phase::Active(active) => {
                    let wake_at = active.next_beat.min(active.refresh_at);
                    tokio::select! {
                        () = sleep_until(wake_at) => {}
                        r = stop.wait_for(|s| *s) => {
                            if r.is_ok() {
                                return Ok(());
                            }
                        }
                        () = self.shared.token_refused.notified() => {
                            active.next_beat = Instant::now();
                        }
                    }
                    let now = Instant::now();
                    if now >= active.refresh_at
                        && let Some(next) = self.refresh(active, &mut refresh_backoff).await
                    {
                        phase = next;
                        continue;
                    }
                    if now >= active.next_beat
                        && let Some(next) = self.heartbeat(active, &mut backoff).await
                    {
                        phase = next;
                    }
                }
            }
        }
    }

    /// Refreshes the token; `Some(phase)` when the runner must change phase.
    pub(super) async fn refresh(
        &self,
        active: &mut Active,
        backoff: &mut BackoffState,
    ) -> Option<Phase> {
        let id = self.manifest.id.as_str();
        let token = self.shared.token()?;
        match self.client.refresh(id, &token).await {
            Ok(reg) => {
                tracing::info!(plugin_id = %id, expires_at = %reg.expires_at, "token refreshed");
                backoff.reset();
                let next_beat = active.next_beat;
                Some(Phase::Active(self.adopt(&reg, next_beat)))
            }
            Err(
                e @ (CoreError::Unauthorized { .. }
                | CoreError::NotFound
                | CoreError::Forbidden { .. }),
            ) => {
                tracing::info!(plugin_id = %id, error = %e, "token refresh refused; re-registering");
                Some(Phase::Register)
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(plugin_id = %id, attempt = backoff.failures(), retry_in_ms = delay.as_millis() as u64, expires_at = %active.expires_at, error = %e, "token refresh failed; retrying");
                active.refresh_at = Instant::now() + delay;
                None
            }
        }
    }

    /// Sends one heartbeat; `Some(phase)` when the runner must change phase.
    pub(super) async fn heartbeat(
        &self,
        active: &mut Active,
        backoff: &mut BackoffState,
    ) -> Option<Phase> {
        let id = self.manifest.id.as_str();
        let Some(token) = self.shared.token() else {
            return Some(Phase::Register);
        };
        let report = match tokio::time::timeout(
            self.config.request_timeout,
            self.plugin.health_check(),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(plugin_id = %id, timeout_ms = self.config.request_timeout.as_millis() as u64, "health check timed out; reporting unhealthy");
                HealthReport::unhealthy().with_detail("reason", "health_check_timeout")
            }
        };
        match self.client.heartbeat(id, &token, &report).await {
            Ok(()) => {
                let was = self.status.borrow().clone();
                if !was.is_registered() {
                    tracing::info!(plugin_id = %id, after_failures = backoff.failures(), "heartbeats accepted");
                }
                backoff.reset();
                self.status.send_replace(PluginStatus::Registered {
                    expires_at: active.expires_at,
                    heartbeat_interval: active.interval,
                });
                active.next_beat = Instant::now() + active.interval;
                None
            }
            Err(
                e @ (CoreError::Unauthorized { .. }
                | CoreError::NotFound
                | CoreError::Forbidden { .. }),
            ) => {
                // The token is no longer accepted (expired, replaced, the plugin was
                // deregistered, the core lost its store): register again with it — the
                // core accepts it within the grace — or as new.
                tracing::info!(plugin_id = %id, error = %e, "heartbeat refused; re-registering");
                Some(Phase::Register)
            }
            Err(e) => {
                let delay = backoff.next_delay();
                let (status, message) = match &e {
                    CoreError::PluginDisabled => (
                        PluginStatus::Disabled,
                        "the plugin is disabled by an operator; heartbeating with backoff",
                    ),
                    e if e.is_transient() => (
                        PluginStatus::CoreUnavailable {
                            failures: backoff.failures(),
                        },
                        "heartbeat failed; core unavailable, retrying",
                    ),
                    _ => (
                        PluginStatus::CoreUnavailable {
                            failures: backoff.failures(),
                        },
                        "heartbeat rejected; retrying",
                    ),
                };
                tracing::warn!(plugin_id = %id, attempt = backoff.failures(), retry_in_ms = delay.as_millis() as u64, error = %e, "{message}");
                self.status.send_replace(status);
                active.next_beat = Instant::now() + delay;
                None
            }
        }
    }
}
