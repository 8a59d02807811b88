//! The rules across keys, in the order `build` applies them (Java's
//! `ProducerConfig.postProcessParsedConfig` and its idempotence checks): each may refuse the
//! configuration or, for a key not set explicitly, adjust an implicit value as Java does.

use super::{
    security_keys, Acks, ConfigError, ProducerConfig, SetKeys, JAVA_INT_MAX,
    MAX_IN_FLIGHT_FOR_IDEMPOTENCE,
};
use std::time::Duration;

/// A rule: it may refuse the configuration or adjust a value not set explicitly.
pub(super) type Rule = fn(&mut ProducerConfig, &SetKeys) -> Result<(), ConfigError>;

/// Every rule across keys, in order.
pub(super) static RULES: &[Rule] = &[
    transactions,
    idempotence,
    delivery,
    rack_awareness,
    security,
];

/// `transactional.id` needs `transaction.timeout.ms >= 1` ms and `enable.idempotence`
/// (KIP-98); its idempotence conflicts are errors.
fn transactions(c: &mut ProducerConfig, _: &SetKeys) -> Result<(), ConfigError> {
    if c.transactional_id.is_none() {
        return Ok(());
    }
    if c.transaction_timeout.is_zero() {
        return Err(super::invalid(
            "transaction.timeout.ms",
            "0",
            "must be at least 1 ms",
        ));
    }
    if !c.enable_idempotence {
        return Err(ConfigError::Conflict {
            reason: "transactional.id requires enable.idempotence=true (KIP-98)".into(),
        });
    }
    // A transactional producer is idempotent: the conflicts below are errors, never a silent
    // downgrade.
    c.enable_idempotence_explicit = true;
    Ok(())
}

/// `partitioner.rack.aware` needs a `client.rack` (Java: "client.rack must be provided if
/// partitioner.rack.aware is enabled").
fn rack_awareness(c: &mut ProducerConfig, _: &SetKeys) -> Result<(), ConfigError> {
    if c.partitioner_rack_aware && c.client_rack.trim().is_empty() {
        return Err(ConfigError::Conflict {
            reason: "client.rack must be provided if partitioner.rack.aware is enabled".into(),
        });
    }
    Ok(())
}

/// `enable.idempotence` needs `acks=all`, `retries > 0` and at most 5 in-flight requests
/// (KIP-679, Java 3.2+): set explicitly, a conflict is an error; else idempotence is turned off.
fn idempotence(c: &mut ProducerConfig, _: &SetKeys) -> Result<(), ConfigError> {
    if !c.enable_idempotence {
        return Ok(());
    }
    let mut conflicts = Vec::new();
    if c.acks != Acks::All {
        conflicts.push(format!("acks={} (must be all)", c.acks));
    }
    if c.retries == 0 {
        conflicts.push("retries=0 (must be > 0)".to_string());
    }
    if c.max_in_flight_requests_per_connection > MAX_IN_FLIGHT_FOR_IDEMPOTENCE {
        conflicts.push(format!(
            "max.in.flight.requests.per.connection={} (must be <= {})",
            c.max_in_flight_requests_per_connection, MAX_IN_FLIGHT_FOR_IDEMPOTENCE
        ));
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    if c.enable_idempotence_explicit {
        return Err(ConfigError::Conflict {
            reason: format!(
                "enable.idempotence=true conflicts with {}; fix those keys or set \
                 enable.idempotence=false",
                conflicts.join(", ")
            ),
        });
    }
    c.enable_idempotence = false;
    Ok(())
}

/// `delivery.timeout.ms >= linger.ms + request.timeout.ms` (KIP-91): set explicitly, a smaller
/// value is an error; else the default is raised to the sum.
fn delivery(c: &mut ProducerConfig, set: &SetKeys) -> Result<(), ConfigError> {
    let floor = c.linger.saturating_add(c.request_timeout);
    if c.delivery_timeout >= floor {
        return Ok(());
    }
    if set.contains("delivery.timeout.ms") {
        return Err(ConfigError::Conflict {
            reason: format!(
                "delivery.timeout.ms={} must be >= linger.ms ({}) + request.timeout.ms ({})",
                c.delivery_timeout.as_millis(),
                c.linger.as_millis(),
                c.request_timeout.as_millis()
            ),
        });
    }
    // Java raises the default for backward compatibility (capped at Integer.MAX_VALUE).
    c.delivery_timeout = floor.min(Duration::from_millis(JAVA_INT_MAX));
    Ok(())
}

/// `security.protocol` has what it needs: readable PEM stores for TLS, a supported SASL
/// mechanism with its credentials.
fn security(c: &mut ProducerConfig, _: &SetKeys) -> Result<(), ConfigError> {
    security_keys::check_security(c)
}
