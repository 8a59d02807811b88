//! The producer's decisions as plain state machines: no actix, no sockets, no clock (time is an
//! argument). The actors in [`crate::actors`] are shells that feed them messages and timers and
//! carry out the actions they return; `sim` (tests only) drives them with virtual time against
//! a model cluster.

pub(crate) mod accumulator;
pub(crate) mod metadata;
pub(crate) mod sender;

#[cfg(test)]
mod sim;
