//! [`ManifestBuilder`]'s methods: each adds to the manifest, keeping items unique;
//! [`ManifestBuilder::build`] runs the checks.

use super::*;

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl ManifestBuilder {
    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.manifest.description = Some(text.into());
        self
    }

    /// Adds a contract.
    pub fn contract(mut self, contract: Contract) -> Self {
        push_unique(&mut self.manifest.contracts, contract);
        self
    }

    /// Adds traits.
    pub fn traits(mut self, traits: impl IntoIterator<Item = PluginTrait>) -> Self {
        for t in traits {
            push_unique(&mut self.manifest.traits, t);
        }
        self
    }

    /// Adds a dependency on another plugin.
    pub fn dependency(mut self, plugin_id: impl Into<String>) -> Self {
        push_unique(&mut self.manifest.dependencies, plugin_id.into());
        self
    }

    /// Adds an allowed domain.
    pub fn allowed_domain(mut self, domain: impl Into<String>) -> Self {
        push_unique(&mut self.manifest.allowed_domains, domain.into());
        self
    }

    /// Adds subscriptions: event types this plugin receives, where a segment `*`
    /// matches exactly one segment (`patient.*`, `*.updated`). The core delivers a
    /// matching event only if its policy allows it for this plugin (see
    /// `docs/policy.md`).
    pub fn subscriptions<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        for p in patterns {
            push_unique(&mut self.manifest.subscriptions, p.into());
        }
        self
    }

    /// Adds a named endpoint (`path` starts with `/`).
    pub fn endpoint(mut self, name: impl Into<String>, path: impl Into<String>) -> Self {
        self.manifest.endpoints.insert(name.into(), path.into());
        self
    }

    /// Whether callers must authenticate.
    pub fn authentication_required(mut self, required: bool) -> Self {
        self.manifest.security.authentication_required = required;
        self
    }

    /// Adds data classifications.
    pub fn data_classification(mut self, classes: impl IntoIterator<Item = DataClass>) -> Self {
        for c in classes {
            push_unique(&mut self.manifest.security.data_classification, c);
        }
        self
    }

    /// Adds HIPAA controls, e.g. `164.312(a)`.
    pub fn hipaa_controls<S: Into<String>>(
        mut self,
        controls: impl IntoIterator<Item = S>,
    ) -> Self {
        for c in controls {
            push_unique(&mut self.manifest.compliance.hipaa_controls, c.into());
        }
        self
    }

    /// Sets the audit level.
    pub fn audit_level(mut self, level: AuditLevel) -> Self {
        self.manifest.compliance.audit_level = level;
        self
    }

    /// The manifest without checking it, for tools that want the core to be the judge.
    pub fn into_unchecked(self) -> Manifest {
        self.manifest
    }

    /// Checks and returns the manifest.
    ///
    /// # Errors
    /// [`ManifestError`] with every violation (see [`Manifest::check`]).
    pub fn build(self) -> Result<Manifest, ManifestError> {
        self.manifest.check()?;
        Ok(self.manifest)
    }
}
