//! The demo's verdict: the outage as devices saw it, the check-ins acknowledged, and whether
//! the node that ends Active holds every one of them.

use crate::devices::{Enrolled, Stats, client_version};
use crate::scenario::Scenario;
use serde_json::{Value, json};
use std::collections::HashMap;

/// What a demo run found.
#[derive(Debug)]
pub struct Summary {
    pub scenario: Scenario,
    /// The node that ended Active, where every acknowledged check-in was looked for.
    pub active: String,
    /// Longest time without an acknowledged check-in, in seconds.
    pub outage_s: f64,
    pub acknowledged: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Acknowledged check-ins the Active node does not hold, nor any divergence export.
    pub lost: u64,
    /// Acknowledged check-ins the Active node does not hold but a returning node's divergence
    /// export does (dc-loss: the last instants before the loss, which the DR node's continuous
    /// stream had not received).
    pub exported: u64,
    /// Devices whose last acknowledged check-in the Active node lacks, with what it holds.
    pub lost_detail: Vec<String>,
    pub devices: usize,
    /// Where devices' connections ended: backend → open connections (the controller's count).
    pub connections: Vec<(String, u64)>,
    pub route: Option<String>,
    pub switches: u64,
}

/// The check-in number in `demo-d<device>-<n>`, if it is this device's.
fn number(stored: &str, device: usize) -> Option<u64> {
    stored
        .strip_prefix(&format!("demo-d{device}-"))
        .and_then(|n| n.parse().ok())
}

/// Whether a divergence export (its entries as text) holds the check-in that stored `version`:
/// the row is JSON inside the entry, its quotes escaped once; the closing quote keeps
/// `demo-d1-17` from matching `demo-d1-170`.
fn in_exports(exports: &[String], version: &str) -> bool {
    exports.iter().any(|text| {
        text.contains(&format!("{version}\\\"")) || text.contains(&format!("{version}\""))
    })
}

/// Connections the controller passed to each backend over the run: `(backend, count)`.
fn connections(lb_status: &Value) -> Vec<(String, u64)> {
    lb_status["backends"]
        .as_array()
        .map(|backends| {
            backends
                .iter()
                .map(|backend| {
                    (
                        backend["name"].as_str().unwrap_or("?").to_owned(),
                        backend["connections"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Summary {
    /// Each device's check-ins are answered one at a time and each stores its number, so the
    /// Active node holds every acknowledged check-in of a device exactly when the number it
    /// stores is at least the device's last acknowledged one (replication applies writes in
    /// commit order): any acknowledged number above it is a lost write.
    pub fn new(
        scenario: Scenario,
        active: &str,
        stats: &Stats,
        devices: &[Enrolled],
        stored: &HashMap<String, String>,
        exports: &[String],
        lb_status: &Value,
    ) -> Self {
        let mut lost = 0;
        let mut exported = 0;
        let mut lost_detail = Vec::new();
        for (index, device) in devices.iter().enumerate() {
            let acknowledged = &stats.acknowledged_by_device[index];
            let held = stored
                .get(&device.uuid)
                .and_then(|version| number(version, index))
                .unwrap_or(0);
            let missing: Vec<u64> = acknowledged.iter().copied().filter(|n| *n > held).collect();
            let in_export = missing
                .iter()
                .filter(|n| in_exports(exports, &client_version(index, **n)))
                .count();
            exported += in_export as u64;
            let missing = (missing.len() - in_export) as u64;
            if missing > 0 {
                lost += missing;
                lost_detail.push(format!(
                    "device {} ({}): last acknowledged {}, {active} holds {}",
                    index,
                    device.uuid,
                    client_version(index, acknowledged.iter().copied().max().unwrap_or(0)),
                    stored.get(&device.uuid).map_or("nothing", String::as_str)
                ));
            }
        }
        Self {
            scenario,
            active: active.to_owned(),
            outage_s: stats.longest_gap.as_secs_f64(),
            acknowledged: stats.acknowledged,
            errors: stats.errors,
            last_error: stats.last_error.clone(),
            lost,
            exported,
            lost_detail,
            devices: devices.len(),
            connections: connections(lb_status),
            route: lb_status["active"].as_str().map(str::to_owned),
            switches: lb_status["switches"].as_u64().unwrap_or(0),
        }
    }

    pub fn text(&self) -> String {
        let mut text = format!("\nSummary ({} scenario)\n", self.scenario.name());
        text += &format!(
            "  outage as devices saw it   {:.2} s (longest time without an acknowledged check-in)\n",
            self.outage_s
        );
        text += &format!(
            "  check-ins acknowledged     {} (each a durable write), {} failed or refused and retried\n",
            self.acknowledged, self.errors
        );
        let verdict = if self.lost == 0 {
            format!(
                "every acknowledged check-in is on {}, the Active node",
                self.active
            )
        } else {
            format!(
                "missing on {}: {}",
                self.active,
                self.lost_detail.join("; ")
            )
        };
        text += &format!("  writes lost                {} ({verdict})\n", self.lost);
        if self.exported > 0 {
            text += &format!(
                "  in divergence exports      {} (acknowledged in data center 1's last instants; saved under divergence/ when its nodes synced from {})\n",
                self.exported, self.active
            );
        }
        let connections: Vec<String> = self
            .connections
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        text += &format!(
            "  devices                    {} enrolled; all now routed to {} ({} traffic switch{}; connections made per node: {})",
            self.devices,
            self.route.as_deref().unwrap_or("no node"),
            self.switches,
            if self.switches == 1 { "" } else { "es" },
            connections.join(", ")
        );
        if let Some(error) = self.last_error.as_ref().filter(|_| self.errors > 0) {
            text += &format!("\n  last device error          {error}");
        }
        text
    }

    pub fn json(&self) -> Value {
        json!({
            "scenario": self.scenario.name(),
            "active": self.active,
            "outageSeconds": self.outage_s,
            "acknowledged": self.acknowledged,
            "errors": self.errors,
            "lastError": self.last_error,
            "lost": self.lost,
            "exported": self.exported,
            "lostDetail": self.lost_detail,
            "devices": self.devices,
            "route": self.route,
            "switches": self.switches,
            "connections": self.connections.iter().map(|(name, count)| json!({"backend": name, "connections": count})).collect::<Vec<_>>(),
        })
    }
}
