//! The integration-test harness: a real node (real SQLite files in a temporary directory) served
//! over real HTTPS on loopback, and clients that speak to it as an administrator, a device, a
//! load balancer or an operator of the System Manager.
//!
//! Every test starts its own [`TestNode`], so tests share nothing and run in parallel.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Certificate, Client, ClientBuilder, Identity, Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tandem_ha::{Mode, NodeStatus, State};
use tandem_node::{InitOptions, Node};
use tandem_server::state::DeviceGate;
use tandem_server::{ServeOptions, Server};
use tokio::sync::{oneshot, watch};

pub const NODE_NAME: &str = "node-a";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct-horse-1";
/// An IMEI whose last digit is a valid Luhn check digit.
pub const VALID_IMEI: &str = "490154203237518";

/// A node serving on `127.0.0.1:0`, stopped when dropped.
pub struct TestNode {
    pub service_addr: SocketAddr,
    pub system_manager_addr: SocketAddr,
    status: watch::Sender<NodeStatus>,
    device_gate: Arc<DeviceGate>,
    server_certificate: Certificate,
    admin: Api,
    /// Dropping the sender completes the server's shutdown future.
    _shutdown: oneshot::Sender<()>,
    /// Declared last so the directory outlives everything that uses it.
    _data_dir: tempfile::TempDir,
}

impl TestNode {
    pub async fn start() -> Self {
        tandem_crypto::install_crypto_provider();
        let data_dir = tempfile::tempdir().expect("create a temporary directory");
        let node_dir = data_dir.path().join("node");
        // init and open use the stores' blocking calls, which must not run on the runtime.
        let (node, server_tls) = tokio::task::spawn_blocking(move || {
            tandem_node::init(&InitOptions {
                data_dir: node_dir.clone(),
                name: NODE_NAME.into(),
                service_addr: "127.0.0.1:4443".into(),
                system_manager_addr: "127.0.0.1:8443".into(),
                replication_addr: "127.0.0.1:2222".into(),
                admin_user: ADMIN_USER.into(),
                admin_password: Some(ADMIN_PASSWORD.into()),
                tls_names: Vec::new(),
            })
            .expect("init a node");
            let node = Node::open(&node_dir).expect("open the node");
            let server_tls = node
                .replicated
                .read_blocking(tandem_store::pki::server_tls)
                .expect("read the server certificate");
            (node, server_tls)
        })
        .await
        .expect("node setup task");
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
        let server = Server::bind(
            node,
            ServeOptions {
                service_addr: Some(loopback),
                system_manager_addr: Some(loopback),
                replication_addr: Some(loopback),
            },
        )
        .await
        .expect("bind the listeners");
        let service_addr = server.service_addr();
        let system_manager_addr = server.system_manager_addr();
        let status = server.status_sender();
        let device_gate = server.device_gate();
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = shutdown_requested.await;
        }));
        let server_certificate = Certificate::from_pem(server_tls.certificate_pem.as_bytes())
            .expect("the server certificate is PEM");
        let admin = Api::new(
            client(trusting(&server_certificate)),
            format!("https://127.0.0.1:{}/api/v2", service_addr.port()),
            Some((ADMIN_USER, ADMIN_PASSWORD)),
        );
        Self {
            service_addr,
            system_manager_addr,
            status,
            device_gate,
            server_certificate,
            admin,
            _shutdown: shutdown,
            _data_dir: data_dir,
        }
    }

    /// A client builder that trusts exactly this node's self-signed certificate.
    pub fn client_builder(&self) -> ClientBuilder {
        trusting(&self.server_certificate)
    }

    fn service_url(&self, prefix: &str) -> String {
        format!("https://127.0.0.1:{}{prefix}", self.service_addr.port())
    }

    /// The admin REST API (`/api/v2`) as `admin:correct-horse-1`.
    pub fn admin(&self) -> &Api {
        &self.admin
    }

    /// The admin REST API with other credentials, or none.
    pub fn api_as(&self, credentials: Option<(&str, &str)>) -> Api {
        Api::new(
            client(self.client_builder()),
            self.service_url("/api/v2"),
            credentials,
        )
    }

    /// The service listener's root, without credentials: probes and unknown routes.
    pub fn service_root(&self) -> Api {
        Api::new(client(self.client_builder()), self.service_url(""), None)
    }

    /// The device endpoints (`/device/v1`) without a client certificate.
    pub fn device_anonymous(&self) -> Api {
        Api::new(
            client(self.client_builder()),
            self.service_url("/device/v1"),
            None,
        )
    }

    /// The device endpoints with the identity issued at enrollment as TLS client certificate.
    pub fn device(&self, enrolled: &Enrolled) -> Api {
        self.device_with(self.client_builder().identity(enrolled.identity()))
    }

    /// The device endpoints through a client built by the caller.
    pub fn device_with(&self, builder: ClientBuilder) -> Api {
        Api::new(client(builder), self.service_url("/device/v1"), None)
    }

    /// The System Manager listener with `credentials`.
    pub fn system_manager(&self, credentials: Option<(&str, &str)>) -> Api {
        Api::new(
            client(self.client_builder()),
            format!("https://127.0.0.1:{}", self.system_manager_addr.port()),
            credentials,
        )
    }

    /// Publishes a new HA state to the listeners, as the HA runtime would.
    pub fn set_state(&self, state: State) {
        let mode = match state {
            State::Active => Mode::Primary,
            State::Standby | State::NotAvailable => Mode::Secondary,
        };
        self.status.send_replace(NodeStatus {
            ha_enabled: state != State::Active,
            mode,
            state,
        });
    }

    pub fn device_gate(&self) -> &DeviceGate {
        &self.device_gate
    }

    /// Enrolls with a registration PIN; the enrollment must succeed.
    pub async fn enroll(&self, pin: &str) -> Enrolled {
        let (status, body) = self
            .device_anonymous()
            .post("/enroll", json!({ "pin": pin }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "enrollment failed: {body}");
        Enrolled::from_answer(&body)
    }

    /// Creates the user if needed, registers an iOS device with `serial` and enrolls it.
    pub async fn enrolled_device(&self, principal: &str, serial: &str) -> Enrolled {
        self.admin.ensure_user(principal).await;
        let registered = self.admin.register_ios(principal, serial).await;
        self.enroll(text(&registered, "enrollmentPin")).await
    }
}

fn trusting(server_certificate: &Certificate) -> ClientBuilder {
    Client::builder().tls_certs_only([server_certificate.clone()])
}

fn client(builder: ClientBuilder) -> Client {
    builder.build().expect("build an HTTPS client")
}

/// What a device received at enrollment.
#[derive(Clone, Debug)]
pub struct Enrolled {
    pub uuid: String,
    pub device: Value,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub ca_certificate_pem: String,
}

impl Enrolled {
    fn from_answer(body: &Value) -> Self {
        let identity = &body["identity"];
        Self {
            uuid: text(&body["device"], "uuid").to_owned(),
            device: body["device"].clone(),
            certificate_pem: text(identity, "certificatePem").to_owned(),
            private_key_pem: text(identity, "privateKeyPem").to_owned(),
            ca_certificate_pem: text(identity, "caCertificatePem").to_owned(),
        }
    }

    /// The identity as a TLS client certificate.
    pub fn identity(&self) -> Identity {
        let pem = format!("{}\n{}", self.certificate_pem, self.private_key_pem);
        Identity::from_pem(pem.as_bytes()).expect("the issued identity is PEM")
    }
}

/// An answer read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The body as JSON; `null` when empty, a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        if self.bytes.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.bytes).into_owned()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A client for one URL prefix, optionally with HTTP Basic credentials.
#[derive(Clone)]
pub struct Api {
    client: Client,
    base_url: String,
    credentials: Option<(String, String)>,
}

impl Api {
    fn new(client: Client, base_url: String, credentials: Option<(&str, &str)>) -> Self {
        Self {
            client,
            base_url,
            credentials: credentials.map(|(user, password)| (user.into(), password.into())),
        }
    }

    /// A request to `path` under the prefix, with the credentials; the caller adds the body.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        // As a script does: it marks its writes so the cross-site guard lets them through.
        let builder = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .header("x-tandem-client", "tests");
        match &self.credentials {
            Some((user, password)) => builder.basic_auth(user, Some(password)),
            None => builder,
        }
    }

    /// Sends the request and reads the whole answer; a transport error fails the test.
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        self.try_send(builder).await.expect("the request failed")
    }

    pub async fn try_send(&self, builder: reqwest::RequestBuilder) -> reqwest::Result<Reply> {
        let response = builder.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            bytes,
        })
    }

    async fn call(&self, builder: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let reply = self.send(builder).await;
        (reply.status, reply.json())
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(self.request(Method::PUT, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(self.request(Method::DELETE, path)).await
    }

    /// Sends `body` verbatim with `content_type`, for malformed JSON and wrong content types.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let builder = self
            .request(method, path)
            .header(CONTENT_TYPE, content_type)
            .body(body.into());
        self.call(builder).await
    }

    /// `POST path` that must answer 201 Created; returns the created resource.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, created) = self.post(path, body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {created}");
        created
    }

    /// `GET path` that must answer 200 OK.
    pub async fn fetch(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// The `totalCount` of a list route.
    pub async fn total_count(&self, path: &str) -> i64 {
        integer(&self.fetch(path).await, "totalCount")
    }

    pub async fn device_count(&self) -> i64 {
        integer(&self.fetch("/devices/count").await, "count")
    }

    pub async fn create_user(&self, principal: &str) -> Value {
        self.create("/users", json!({ "principal": principal }))
            .await
    }

    /// Creates the user unless one with this principal exists.
    pub async fn ensure_user(&self, principal: &str) {
        let (status, body) = self.post("/users", json!({ "principal": principal })).await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "creating user {principal}: {status} {body}"
        );
    }

    /// Registers a device; the registration must succeed. The answer carries the PIN.
    pub async fn register_device(&self, device: Value) -> Value {
        self.create("/devices", device).await
    }

    pub async fn register_ios(&self, principal: &str, serial: &str) -> Value {
        self.register_device(json!({
            "platform": "iOS",
            "userPrincipal": principal,
            "serial": serial,
        }))
        .await
    }

    pub async fn create_label(&self, name: &str) -> Value {
        self.create("/labels", json!({ "name": name })).await
    }

    pub async fn apply_label(&self, label: &Value, device_uuids: &[&str]) {
        let path = format!("/labels/{}/devices", id(label));
        let (status, body) = self
            .post(&path, json!({ "deviceUuids": device_uuids }))
            .await;
        assert_eq!(status, StatusCode::OK, "POST {path}: {body}");
    }
}

/// A string field that must be present.
pub fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

/// An integer field that must be present.
pub fn integer(value: &Value, field: &str) -> i64 {
    value[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} is not an integer in {value}"))
}

/// A resource's integer `id`.
pub fn id(value: &Value) -> i64 {
    integer(value, "id")
}

/// The `results` of a list answer.
pub fn results(page: &Value) -> &Vec<Value> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results array in {page}"))
}

/// Asserts the answer is the API's error shape, `{"error": {"status", "code", "message"}}`, with
/// this status and code. Returns the message.
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) -> String {
    let (actual_status, body) = answer;
    assert_eq!(*actual_status, status, "expected {status} {code}: {body}");
    let error = &body["error"];
    assert_eq!(
        error["status"].as_u64(),
        Some(u64::from(status.as_u16())),
        "error.status in {body}"
    );
    assert_eq!(error["code"], code, "error.code in {body}");
    let message = text(error, "message");
    assert!(!message.is_empty(), "empty error.message in {body}");
    message.to_owned()
}

/// The `field` names in an error's `fields`.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|field| text(field, "field").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts a 422 `invalid_input` whose `fields` name `field`.
pub fn assert_invalid(answer: &(StatusCode, Value), field: &str) {
    assert_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let fields = error_fields(&answer.1);
    assert!(
        fields.iter().any(|named| named == field),
        "expected field {field:?} in {fields:?}: {}",
        answer.1
    );
    for entry in answer.1["error"]["fields"].as_array().into_iter().flatten() {
        assert!(
            !text(entry, "problem").is_empty(),
            "a field error without a problem: {entry}"
        );
    }
}

/// The SHA-256 of `bytes` in lower-case hex, as the API reports file hashes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
