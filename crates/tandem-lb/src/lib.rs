//! Tandem's traffic controller (`tandem lb`): the third party of the guide's two-node design.
//!
//! - [`policy`]: the load-balancer rule as a pure state machine (probe results and operator
//!   commands in, routing commands out, time passed in).
//! - [`config`]: the TOML configuration, defaults and validation.
//! - [`probe`]: HTTPS probes of `/status/status.html` and `/hastatus.html`.
//! - [`runtime`]: device listeners (TCP pass-through), the probe loop, the admin listener.
//! - [`state_file`]: the memory kept across restarts (newest claims, active backend, hold).
//! - [`metrics`]: Prometheus exposition.
//! - [`client`]: the admin listener's client, for `tandem lb status`, `resume`, `hold` and `release`.

pub mod client;
pub mod config;
pub mod metrics;
pub mod policy;
pub mod probe;
pub mod runtime;
pub mod state_file;

pub use config::LbConfig;
pub use runtime::{Lb, LbError};
