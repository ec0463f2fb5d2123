//! Tandem's HTTPS listeners.
//!
//! - **Service** (guide: 443): device endpoints (`/device/v1`), the admin REST API (`/api/v2`)
//!   and the load-balancer probes (`/status/status.html`, `/hastatus.html`).
//! - **System Manager** (guide: 8443): node administration.
//!
//! [`Server::bind`] binds both listeners (tests pass `127.0.0.1:0`), [`Server::run`] serves until
//! a shutdown future completes, then drains connections and closes the databases so every
//! acknowledged write is on disk.

pub mod accounts;
mod api;
mod auth;
mod backoff;
pub mod console;
pub mod control;
mod csrf;
mod device;
pub mod error;
mod extract;
pub mod ha;
mod listener;
pub mod metrics;
pub mod notify;
mod password_checks;
mod probes;
pub mod security_log;
pub mod state;
mod sysmgr;
pub mod tls;
pub mod witness;

use axum::Router;
use axum::http::Uri;
use error::ApiError;
use listener::HttpsListener;
use state::{AppState, DeviceGate, Shared};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tandem_ha::NodeStatus;
use tandem_node::Node;
use tandem_repl::Replication;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use listener::{CONNECTIONS_MAX, DRAIN_TIMEOUT};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen on {addr} for the {listener} listener: {source}; stop the process using \
         it, or change {config_key} in {config_path}"
    )]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        config_key: &'static str,
        config_path: String,
        source: std::io::Error,
    },
    #[error("cannot open the control socket {path}: {source}")]
    Control {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] tandem_store::StoreError),
    #[error(
        "the HA state in the node-local store cannot be read: {0}; fix or remove the \
         `ha.durable` setting, or reconfigure with `tandem ha configure`"
    )]
    HaState(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(
        "[system_manager] client_ca in {config_path}: {reason}; write the path of a PEM file of \
         the CA certificates that sign the administrators' client certificates, or remove the \
         line to ask for none"
    )]
    ClientCa { config_path: String, reason: String },
}

/// Listener addresses to use instead of the configured ones (tests bind port 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeOptions {
    pub service_addr: Option<SocketAddr>,
    pub system_manager_addr: Option<SocketAddr>,
    pub replication_addr: Option<SocketAddr>,
}

pub struct Server {
    state: AppState,
    ha: ha::HaRuntime,
    ha_handle: ha::HaHandle,
    status: watch::Sender<NodeStatus>,
    service: HttpsListener,
    system_manager: HttpsListener,
    replication: Replication,
    replication_tcp: TcpListener,
    control: tokio::net::UnixListener,
    control_path: std::path::PathBuf,
    /// The operator's commands, shared by the control socket and the System Manager console.
    executor: Arc<control::NodeExecutor>,
    /// The data directory's lock, held until the databases are closed.
    lock: Arc<tandem_node::DataDirLock>,
}

impl Server {
    pub async fn bind(node: Node, options: ServeOptions) -> Result<Self, ServerError> {
        let db = node.replicated.clone();
        let config_path = node.data_dir.join(tandem_node::CONFIG_FILE);
        let client_roots = match &node.system_manager_access.client_ca {
            None => None,
            Some(path) => Some(Arc::new(
                witness::load_ca_file(&path.display().to_string())
                    .await
                    .map_err(|reason| ServerError::ClientCa {
                        config_path: config_path.display().to_string(),
                        reason,
                    })?,
            )),
        };
        let identity = Arc::new(state::Identity::load(&db, client_roots).await?);
        let limits = Arc::new(node.limits.clone());
        let service_addr = options.service_addr.unwrap_or(node.listeners.service);
        let system_manager_addr = options
            .system_manager_addr
            .unwrap_or(node.listeners.system_manager);
        let bind = |listener, addr, config_key| {
            let config_path = config_path.display().to_string();
            async move {
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind {
                        listener,
                        addr,
                        config_key,
                        config_path,
                        source,
                    })
            }
        };
        let replication_addr = options
            .replication_addr
            .unwrap_or(node.listeners.replication);
        let service_tcp = bind("service", service_addr, "[listeners] service").await?;
        let replication_tcp = bind(
            "replication (SSH)",
            replication_addr,
            "[listeners] replication",
        )
        .await?;
        let system_manager_tcp = bind(
            "System Manager",
            system_manager_addr,
            "[listeners] system_manager",
        )
        .await?;

        let control_path = node.data_dir.join(tandem_repl::ops::CONTROL_SOCKET);
        let control = tandem_repl::ops::bind_control(&node.data_dir).map_err(|source| {
            ServerError::Control {
                path: control_path.display().to_string(),
                source,
            }
        })?;
        let replication = Replication::new(&node);
        let log_epoch = db.read(tandem_store::changes::latest_epoch).await?;
        let durable = ha::load_durable(&node.local, log_epoch)
            .await
            .map_err(|error| ServerError::HaState(error.to_string()))?;
        // Nothing is served until the HA controller has decided what this node is.
        let not_yet = NodeStatus {
            ha_enabled: durable.config.enabled,
            mode: durable.config.mode,
            state: tandem_ha::State::NotAvailable,
        };
        let (status, status_receiver) = watch::channel(not_yet);
        let device_gate = Arc::new(DeviceGate::default());
        let state = AppState(Arc::new(Shared {
            node_name: node.config.node.name.clone(),
            db,
            files: node.files.clone(),
            local: node.local.clone(),
            identity: identity.clone(),
            status: status_receiver,
            elsewhere: std::sync::RwLock::new(Some("the node is starting".into())),
            device_gate: device_gate.clone(),
            auth_cache: auth::AuthCache::default(),
            consoles: console::Consoles::default(),
            ballot_header: std::sync::RwLock::new(axum::http::HeaderValue::from_static(
                "state=not-available",
            )),
            metrics: Arc::default(),
        }));
        // A complete header from the first probe on: Not Available in the stored epoch until
        // the controller decides.
        state.set_ballot(&tandem_ha::ballot::ProbeBallot {
            own: tandem_ha::ballot::Ballot::new(durable.epoch, node.config.node.id.clone()),
            state: tandem_ha::State::NotAvailable,
            ha_enabled: durable.config.enabled,
            newest: None,
        });
        let (mut ha, ha_handle) = ha::HaRuntime::new(
            durable,
            node.config.node.id.clone(),
            state.clone(),
            replication.clone(),
            status.clone(),
        );
        ha.start().await;
        let executor = Arc::new(control::NodeExecutor {
            replication: replication.clone(),
            ha: ha_handle.clone(),
            device_gate: state.device_gate.clone(),
            node_name: state.node_name.clone(),
        });
        Ok(Self {
            service: HttpsListener {
                name: "service",
                tcp: service_tcp,
                acceptor: state::Identity::service_acceptor,
                identity: identity.clone(),
                router: service_router(state.clone(), ha_handle.clone()),
                device_gate: Some(device_gate),
                limits: limits.clone(),
                allowed_networks: None,
                metrics: state.metrics.clone(),
                metrics_listener: metrics::Listener::Service,
            },
            system_manager: HttpsListener {
                name: "System Manager",
                tcp: system_manager_tcp,
                acceptor: state::Identity::system_manager_acceptor,
                identity,
                router: sysmgr::router(state.clone(), ha_handle.clone(), executor.clone()),
                device_gate: None,
                limits,
                allowed_networks: node.system_manager_access.allow.clone(),
                metrics: state.metrics.clone(),
                metrics_listener: metrics::Listener::SystemManager,
            },
            state,
            ha,
            ha_handle,
            status,
            replication,
            replication_tcp,
            control,
            control_path,
            executor,
            lock: node.lock.clone(),
        })
    }

    pub fn replication_addr(&self) -> SocketAddr {
        self.replication_tcp
            .local_addr()
            .unwrap_or(([0, 0, 0, 0], 0).into())
    }

    /// This node's replication side (sync, Test Connection), as the HA runtime and the control
    /// socket use it.
    pub fn replication(&self) -> Replication {
        self.replication.clone()
    }

    pub fn service_addr(&self) -> SocketAddr {
        self.service
            .tcp
            .local_addr()
            .unwrap_or(([0, 0, 0, 0], 0).into())
    }

    pub fn system_manager_addr(&self) -> SocketAddr {
        self.system_manager
            .tcp
            .local_addr()
            .unwrap_or(([0, 0, 0, 0], 0).into())
    }

    /// Publishes a status to the listeners directly, bypassing the HA controller (the listener
    /// tests use it to put a node in a state without a peer; the store's write gate is not
    /// changed).
    pub fn status_sender(&self) -> watch::Sender<NodeStatus> {
        self.status.clone()
    }

    /// The HA controller's handle (status, configure, operator commands).
    pub fn ha(&self) -> ha::HaHandle {
        self.ha_handle.clone()
    }

    pub fn device_gate(&self) -> Arc<DeviceGate> {
        self.state.device_gate.clone()
    }

    /// Serves until `shutdown` completes, drains connections for at most [`DRAIN_TIMEOUT`], then
    /// commits what is queued and closes the databases.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let (stop, stopped) = watch::channel(false);
        let service = tokio::spawn(self.service.serve(stopped.clone()));
        let system_manager = tokio::spawn(self.system_manager.serve(stopped.clone()));
        let ha_runtime = tokio::spawn(self.ha.run(stopped.clone()));
        let mut control_stop = stopped.clone();
        let control = tokio::spawn(tandem_repl::ops::serve_control(
            self.executor,
            self.control,
            async move {
                let _ = control_stop.wait_for(|stop| *stop).await;
            },
        ));
        let replication = tokio::spawn(tandem_repl::ssh::serve(
            self.replication,
            self.replication_tcp,
            stopped,
        ));
        tracing::info!(node = %self.state.node_name, "serving");
        shutdown.await;
        tracing::info!("shutting down: draining connections");
        let _ = stop.send(true);
        let _ = tokio::join!(service, system_manager, replication, control, ha_runtime);
        let _ = std::fs::remove_file(&self.control_path);
        self.state.db.close().await;
        self.state.local.database().close().await;
        drop(self.lock);
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

fn service_router(state: AppState, ha: ha::HaHandle) -> Router {
    Router::new()
        .route("/status/status.html", axum::routing::get(probes::status))
        .route("/hastatus.html", axum::routing::get(probes::ha_status))
        .route(
            "/status/replication.html",
            axum::routing::get(probes::replication).layer(axum::Extension(ha.clone())),
        )
        .nest("/api/v2", api::router(state.clone()))
        .nest("/device/v1", device::router(state.clone()))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .merge(console::admin::router(state, ha))
        .fallback(not_found)
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such resource: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not supported on {}", uri.path()),
    )
}
