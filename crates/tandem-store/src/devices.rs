//! Devices: registration by an administrator, enrollment with a one-time PIN that yields an
//! identity certificate, check-ins authenticated by that certificate, and queued commands.

use crate::common::{
    Check, Page, PageRequest, is_identifier_char, now, parse_timestamp, timestamp,
};
use crate::error::{InvalidInput, StoreError, StoreResult};
use crate::events::{self, Subject};
use crate::policies::{self, AssignedPolicy, PolicyKind};
use crate::users;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tandem_crypto::DeviceIdentity;
use time::{Duration, OffsetDateTime};

text_enum!(Platform {
    Ios => "iOS",
    Android => "Android",
    Windows => "Windows",
    MacOs => "macOS",
});

text_enum!(DeviceStatus {
    Pending => "PENDING",
    Active => "ACTIVE",
    Lost => "LOST",
    RetirePending => "RETIRE_PENDING",
    Retired => "RETIRED",
    WipePending => "WIPE_PENDING",
    Wiped => "WIPED",
});

text_enum!(Owner {
    Company => "COMPANY",
    Employee => "EMPLOYEE",
});

text_enum!(CommandKind {
    Retire => "RETIRE",
    Wipe => "WIPE",
    Lock => "LOCK",
});

text_enum!(CommandStatus {
    Pending => "PENDING",
    Sent => "SENT",
    Acknowledged => "ACKNOWLEDGED",
    Error => "ERROR",
});

/// How long a registration PIN may be used to enroll: a week covers a device shipped to an
/// employee, and bounds how long a leaked PIN is worth anything.
pub const ENROLLMENT_PIN_VALIDITY: Duration = Duration::days(7);
/// Characters in a registration PIN (from an unambiguous alphabet: about 93 bits).
pub const ENROLLMENT_PIN_CHARS: usize = 16;
/// Completed commands kept; older ones are pruned, open ones never are.
pub const COMMANDS_RETAINED_MAX: i64 = 500_000;
const PRUNE_EVERY_COMMANDS: i64 = 1024;
/// Apps one check-in may report: more than any real device carries, few enough to bound the
/// transaction.
pub const INVENTORY_APPS_MAX: usize = 2000;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub uuid: String,
    pub udid: Option<String>,
    pub serial: Option<String>,
    pub imei: Option<String>,
    pub platform: Platform,
    pub os_version: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub status: DeviceStatus,
    pub compliant: bool,
    pub owner: Owner,
    pub user_principal: String,
    pub labels: Vec<String>,
    pub registered_at: String,
    pub enrolled_at: Option<String>,
    pub last_checkin_at: Option<String>,
    pub ip_address: Option<String>,
    pub client_version: Option<String>,
}

/// A registration: the device plus its one-time enrollment PIN, shown only in this answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredDevice {
    #[serde(flatten)]
    pub device: Device,
    pub enrollment_pin: String,
    pub enrollment_pin_expires_at: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewDevice {
    pub platform: Option<Platform>,
    pub user_principal: Option<String>,
    pub serial: Option<String>,
    pub udid: Option<String>,
    pub imei: Option<String>,
    pub owner: Option<Owner>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub os_version: Option<String>,
}

/// Fields an administrator may change; absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceUpdate {
    pub owner: Option<Owner>,
    pub user_principal: Option<String>,
    pub compliant: Option<bool>,
}

/// What a device says about itself when it enrolls.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Enrollment {
    pub pin: String,
    pub udid: Option<String>,
    pub imei: Option<String>,
    pub os_version: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub client_version: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstalledApp {
    pub bundle_id: String,
    pub name: String,
    pub version: String,
}

/// What a device reports at check-in; everything optional, so an idle device sends `{}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckIn {
    pub os_version: Option<String>,
    pub client_version: Option<String>,
    pub compliant: Option<bool>,
    /// The full inventory, sent when it changed; absent means unchanged.
    pub apps: Option<Vec<InstalledApp>>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInReply {
    pub device_uuid: String,
    pub status: DeviceStatus,
    pub commands: Vec<DeviceCommand>,
    pub policies: Vec<AssignedPolicy>,
    pub configurations: Vec<AssignedPolicy>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCommand {
    pub id: i64,
    pub device_uuid: String,
    pub command: CommandKind,
    pub status: CommandStatus,
    pub queued_by: String,
    pub queued_at: String,
    pub sent_at: Option<String>,
    pub completed_at: Option<String>,
    pub result: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandResult {
    pub status: CommandStatus,
    pub result: Option<String>,
}

/// A device authenticated by its identity certificate.
#[derive(Clone, Debug)]
pub struct AuthenticatedDevice {
    pub id: i64,
    pub uuid: String,
    pub status: DeviceStatus,
}

const SELECT: &str = "SELECT d.uuid, d.udid, d.serial, d.imei, d.platform, d.os_version, d.model,
        d.manufacturer, d.status, d.compliant, d.owner, u.principal,
        (SELECT json_group_array(l.name) FROM device_labels dl JOIN labels l ON l.id = dl.label_id
         WHERE dl.device_id = d.id),
        d.registered_at, d.enrolled_at, d.last_checkin_at, d.ip_address, d.client_version
    FROM devices d JOIN users u ON u.id = d.user_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    let labels: String = row.get(12)?;
    Ok(Device {
        uuid: row.get(0)?,
        udid: row.get(1)?,
        serial: row.get(2)?,
        imei: row.get(3)?,
        platform: row.get(4)?,
        os_version: row.get(5)?,
        model: row.get(6)?,
        manufacturer: row.get(7)?,
        status: row.get(8)?,
        compliant: row.get(9)?,
        owner: row.get(10)?,
        user_principal: row.get(11)?,
        labels: serde_json::from_str(&labels).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(12, rusqlite::types::Type::Text, error.into())
        })?,
        registered_at: row.get(13)?,
        enrolled_at: row.get(14)?,
        last_checkin_at: row.get(15)?,
        ip_address: row.get(16)?,
        client_version: row.get(17)?,
    })
}

/// An IMEI is 15 digits whose last is a Luhn check digit; checking it catches typos and
/// swapped digits before they reach the fleet database.
fn imei_is_valid(imei: &str) -> bool {
    if imei.len() != 15 || !imei.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = imei
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                doubled / 10 + doubled % 10
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn check_hardware_ids(
    check: &mut Check,
    serial: Option<&str>,
    udid: Option<&str>,
    imei: Option<&str>,
) {
    if let Some(serial) = serial {
        check.token(
            "serial",
            serial,
            64,
            |c| c.is_ascii_alphanumeric() || c == '-',
            "letters, digits and -",
        );
    }
    if let Some(udid) = udid {
        check.token(
            "udid",
            udid,
            128,
            |c| c.is_ascii_alphanumeric() || c == '-',
            "letters, digits and -",
        );
    }
    if let Some(imei) = imei
        && !imei_is_valid(imei)
    {
        check.fail(
            "imei",
            imei,
            "must be 15 digits ending in a valid Luhn check digit",
        );
    }
}

fn check_descriptions(
    check: &mut Check,
    model: Option<&str>,
    manufacturer: Option<&str>,
    os_version: Option<&str>,
) {
    check.optional_text("model", model, 128);
    check.optional_text("manufacturer", manufacturer, 128);
    check.optional_text("osVersion", os_version, 64);
}

fn validate_new(input: &NewDevice) -> StoreResult<()> {
    let mut check = Check::new();
    if input.platform.is_none() {
        check.fail(
            "platform",
            "",
            format!("is required: one of {}", Platform::expected()),
        );
    }
    match &input.user_principal {
        None => check.fail(
            "userPrincipal",
            "",
            "is required: the principal of an existing user",
        ),
        Some(principal) => check.token(
            "userPrincipal",
            principal,
            128,
            is_identifier_char,
            "letters, digits and - _ . @ :",
        ),
    }
    let (serial, udid, imei) = (
        input.serial.as_deref(),
        input.udid.as_deref(),
        input.imei.as_deref(),
    );
    if serial.is_none() && udid.is_none() && imei.is_none() {
        check.fail(
            "serial",
            "",
            "a device needs at least one of serial, udid or imei",
        );
    }
    check_hardware_ids(&mut check, serial, udid, imei);
    check_descriptions(
        &mut check,
        input.model.as_deref(),
        input.manufacturer.as_deref(),
        input.os_version.as_deref(),
    );
    check.finish()
}

fn user_id(conn: &Connection, principal: &str) -> StoreResult<i64> {
    users::id_by_principal(conn, principal)?.ok_or_else(|| {
        StoreError::Invalid(InvalidInput::single(
            "userPrincipal",
            principal,
            "no user has this principal; create the user first (POST /api/v2/users)",
        ))
    })
}

fn pin_digest(pin: &str) -> String {
    hex::encode(Sha256::digest(pin.as_bytes()))
}

fn device_subject(uuid: &str) -> Subject<'_> {
    Subject {
        kind: "device",
        id: uuid,
    }
}

/// Registers a device for a user; it stays `PENDING` until it enrolls with the returned PIN.
pub fn register(
    conn: &Connection,
    actor: &str,
    input: &NewDevice,
    now_at: OffsetDateTime,
) -> StoreResult<RegisteredDevice> {
    validate_new(input)?;
    let (Some(platform), Some(principal)) = (input.platform, input.user_principal.as_deref())
    else {
        unreachable!("validate_new requires platform and userPrincipal");
    };
    let user_id = user_id(conn, principal)?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let pin = tandem_crypto::random_secret(ENROLLMENT_PIN_CHARS);
    let expires_at = timestamp(now_at + ENROLLMENT_PIN_VALIDITY);
    conn.prepare_cached(
        "INSERT INTO devices (uuid, udid, serial, imei, platform, os_version, model, manufacturer,
            status, compliant, owner, user_id, registered_at, enrollment_pin_sha256,
            enrollment_pin_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'PENDING', 1, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        uuid,
        input.udid,
        input.serial,
        input.imei,
        platform,
        input.os_version,
        input.model,
        input.manufacturer,
        input.owner.unwrap_or(Owner::Company),
        user_id,
        timestamp(now_at),
        pin_digest(&pin),
        expires_at,
    ])
    .map_err(StoreError::from_sqlite)?;
    events::append(
        conn,
        actor,
        "DEVICE_REGISTERED",
        device_subject(&uuid),
        &format!("{platform} device registered for {principal}"),
    )?;
    Ok(RegisteredDevice {
        device: get(conn, &uuid)?,
        enrollment_pin: pin,
        enrollment_pin_expires_at: expires_at,
    })
}

pub fn get(conn: &Connection, uuid: &str) -> StoreResult<Device> {
    conn.prepare_cached(&format!("{SELECT} WHERE d.uuid = ?1"))?
        .query_row([uuid], from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("device", uuid))
}

const FILTER: &str = "d.uuid LIKE ?1 ESCAPE '\\' OR d.serial LIKE ?1 ESCAPE '\\'
    OR d.udid LIKE ?1 ESCAPE '\\' OR d.imei LIKE ?1 ESCAPE '\\' OR d.model LIKE ?1 ESCAPE '\\'
    OR u.principal LIKE ?1 ESCAPE '\\'";

/// Narrows a device list beyond its text query (the Admin portal's filters); `None` matches
/// every device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub platform: Option<Platform>,
    pub status: Option<DeviceStatus>,
    /// A label's name: only devices that carry it.
    pub label: Option<String>,
}

/// [`FILTER`] and the [`DeviceFilter`] (parameters 4, 5 and 6; NULL matches everything), so
/// the statement stays one cached text whatever is chosen. Parameters 2 and 3 are the page's
/// limit and offset (bound as NULL and unused when counting).
const FILTERED: &str = "(d.uuid LIKE ?1 ESCAPE '\\' OR d.serial LIKE ?1 ESCAPE '\\'
    OR d.udid LIKE ?1 ESCAPE '\\' OR d.imei LIKE ?1 ESCAPE '\\' OR d.model LIKE ?1 ESCAPE '\\'
    OR u.principal LIKE ?1 ESCAPE '\\')
    AND (?4 IS NULL OR d.platform = ?4) AND (?5 IS NULL OR d.status = ?5)
    AND (?6 IS NULL OR EXISTS (SELECT 1 FROM device_labels dl JOIN labels l ON l.id = dl.label_id
         WHERE dl.device_id = d.id AND l.name = ?6))";

pub fn count(conn: &Connection, query: Option<&str>) -> StoreResult<i64> {
    match query.filter(|query| !query.is_empty()) {
        None => Ok(conn.query_row("SELECT count(*) FROM devices", [], |row| row.get(0))?),
        Some(query) => {
            let request = PageRequest {
                query: Some(query.to_owned()),
                ..PageRequest::default()
            };
            let (pattern, _, _) = request.validated()?;
            Ok(conn.query_row(
                &format!(
                    "SELECT count(*) FROM devices d JOIN users u ON u.id = d.user_id
                     WHERE {FILTER}"
                ),
                [pattern],
                |row| row.get(0),
            )?)
        }
    }
}

/// Devices matching `query` and `filter`.
pub fn count_filtered(
    conn: &Connection,
    query: Option<&str>,
    filter: &DeviceFilter,
) -> StoreResult<i64> {
    if *filter == DeviceFilter::default() {
        return count(conn, query);
    }
    let request = PageRequest {
        query: query.map(str::to_owned),
        ..PageRequest::default()
    };
    let (pattern, _, _) = request.validated()?;
    Ok(conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM devices d JOIN users u ON u.id = d.user_id
             WHERE {FILTERED}"
        ))?
        .query_row(
            params![
                pattern,
                None::<i64>,
                None::<i64>,
                filter.platform,
                filter.status,
                filter.label
            ],
            |row| row.get(0),
        )?)
}

pub fn list(conn: &Connection, request: &PageRequest) -> StoreResult<Page<Device>> {
    list_filtered(conn, request, &DeviceFilter::default())
}

/// A page of the devices matching the request's query and `filter`, oldest registration
/// first.
pub fn list_filtered(
    conn: &Connection,
    request: &PageRequest,
    filter: &DeviceFilter,
) -> StoreResult<Page<Device>> {
    let total = count_filtered(conn, request.query.as_deref(), filter)?;
    let (pattern, limit, offset) = request.validated()?;
    let results = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE {FILTERED} ORDER BY d.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(
            params![
                pattern,
                limit,
                offset,
                filter.platform,
                filter.status,
                filter.label
            ],
            from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(total, offset, results))
}

/// How many devices there are, in all and by platform and by status (the Admin portal's
/// dashboard). Only platforms and statuses some device has are listed.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTally {
    pub total: i64,
    pub by_platform: Vec<(Platform, i64)>,
    pub by_status: Vec<(DeviceStatus, i64)>,
}

pub fn tally(conn: &Connection) -> StoreResult<DeviceTally> {
    let by_platform = conn
        .prepare_cached("SELECT platform, count(*) FROM devices GROUP BY platform ORDER BY 1")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let by_status = conn
        .prepare_cached("SELECT status, count(*) FROM devices GROUP BY status ORDER BY 1")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeviceTally {
        total: by_platform.iter().map(|(_, count)| count).sum(),
        by_platform,
        by_status,
    })
}

pub fn update(
    conn: &Connection,
    actor: &str,
    uuid: &str,
    input: &DeviceUpdate,
) -> StoreResult<Device> {
    let mut check = Check::new();
    if let Some(principal) = &input.user_principal {
        check.token(
            "userPrincipal",
            principal,
            128,
            is_identifier_char,
            "letters, digits and - _ . @ :",
        );
    }
    check.finish()?;
    let device = get(conn, uuid)?;
    let user_id = match &input.user_principal {
        Some(principal) => Some(user_id(conn, principal)?),
        None => None,
    };
    conn.execute(
        "UPDATE devices SET owner = coalesce(?2, owner), user_id = coalesce(?3, user_id),
            compliant = coalesce(?4, compliant)
         WHERE uuid = ?1",
        params![uuid, input.owner, user_id, input.compliant],
    )?;
    events::append(
        conn,
        actor,
        "DEVICE_UPDATED",
        device_subject(uuid),
        &format!("device {} updated", device.uuid),
    )?;
    get(conn, uuid)
}

/// Deletes a device record. Only registrations that never enrolled and devices already retired
/// or wiped may go: deleting a live device would strand it with a working identity.
pub fn delete(conn: &Connection, actor: &str, uuid: &str) -> StoreResult<()> {
    let device = get(conn, uuid)?;
    if !matches!(
        device.status,
        DeviceStatus::Pending | DeviceStatus::Retired | DeviceStatus::Wiped
    ) {
        return Err(StoreError::Refused(format!(
            "device {uuid} is {}; retire or wipe it first, then delete it",
            device.status
        )));
    }
    conn.execute("DELETE FROM devices WHERE uuid = ?1", [uuid])?;
    events::append(
        conn,
        actor,
        "DEVICE_DELETED",
        device_subject(uuid),
        &format!("device {uuid} deleted"),
    )?;
    Ok(())
}

fn internal_id(conn: &Connection, uuid: &str) -> StoreResult<(i64, DeviceStatus)> {
    conn.prepare_cached("SELECT id, status FROM devices WHERE uuid = ?1")?
        .query_row([uuid], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::not_found("device", uuid))
}

/// Queues a command for a device and moves it to the matching pending state.
pub fn queue_action(
    conn: &Connection,
    actor: &str,
    uuid: &str,
    command: CommandKind,
) -> StoreResult<DeviceCommand> {
    let (device_id, status) = internal_id(conn, uuid)?;
    // A retire or wipe the device answered with ERROR leaves it pending with no open command;
    // the administrator may then send it again.
    let open_same: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM device_commands
             WHERE device_id = ?1 AND command = ?2 AND status IN ('PENDING', 'SENT')",
        )?
        .query_row(params![device_id, command], |row| row.get(0))?;
    let next_status = match (command, status) {
        (_, DeviceStatus::Pending) => {
            Err("it has not enrolled yet; delete the registration instead")
        }
        (_, DeviceStatus::Retired | DeviceStatus::Wiped) => Err("it is no longer managed"),
        (CommandKind::Retire | CommandKind::Wipe, _) if open_same > 0 => {
            Err("the same command is already waiting for the device")
        }
        (CommandKind::Retire, DeviceStatus::WipePending) => {
            Err("a wipe is pending, which ends management anyway")
        }
        (CommandKind::Retire, _) => Ok(Some(DeviceStatus::RetirePending)),
        (CommandKind::Wipe, _) => Ok(Some(DeviceStatus::WipePending)),
        (CommandKind::Lock, _) => Ok(None),
    }
    .map_err(|reason| {
        StoreError::Refused(format!(
            "cannot {} device {uuid} ({status}): {reason}",
            command.as_str().to_lowercase()
        ))
    })?;
    if let Some(next) = next_status {
        conn.execute(
            "UPDATE devices SET status = ?2 WHERE id = ?1",
            params![device_id, next],
        )?;
    }
    conn.prepare_cached(
        "INSERT INTO device_commands (device_id, command, status, queued_by, queued_at)
         VALUES (?1, ?2, 'PENDING', ?3, ?4)",
    )?
    .execute(params![device_id, command, actor, now()])?;
    let command_id = conn.last_insert_rowid();
    if command_id % PRUNE_EVERY_COMMANDS == 0 {
        conn.execute(
            "DELETE FROM device_commands WHERE id <= ?1 AND status IN ('ACKNOWLEDGED', 'ERROR')",
            [command_id - COMMANDS_RETAINED_MAX],
        )?;
    }
    events::append(
        conn,
        actor,
        &format!("DEVICE_{command}_QUEUED"),
        device_subject(uuid),
        &format!("{command} queued for device {uuid}"),
    )?;
    command_by_id(conn, command_id)
}

const SELECT_COMMAND: &str = "SELECT c.id, d.uuid, c.command, c.status, c.queued_by, c.queued_at,
        c.sent_at, c.completed_at, c.result
    FROM device_commands c JOIN devices d ON d.id = c.device_id";

fn command_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceCommand> {
    Ok(DeviceCommand {
        id: row.get(0)?,
        device_uuid: row.get(1)?,
        command: row.get(2)?,
        status: row.get(3)?,
        queued_by: row.get(4)?,
        queued_at: row.get(5)?,
        sent_at: row.get(6)?,
        completed_at: row.get(7)?,
        result: row.get(8)?,
    })
}

fn command_by_id(conn: &Connection, id: i64) -> StoreResult<DeviceCommand> {
    conn.prepare_cached(&format!("{SELECT_COMMAND} WHERE c.id = ?1"))?
        .query_row([id], command_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("command", id))
}

/// A device's commands, newest first.
pub fn commands(conn: &Connection, uuid: &str) -> StoreResult<Vec<DeviceCommand>> {
    let (device_id, _) = internal_id(conn, uuid)?;
    /// Commands shown per device; older ones remain in the database until retention prunes them.
    const COMMANDS_SHOWN_MAX: i64 = 200;
    Ok(conn
        .prepare_cached(&format!(
            "{SELECT_COMMAND} WHERE c.device_id = ?1 ORDER BY c.id DESC LIMIT ?2"
        ))?
        .query_map(params![device_id, COMMANDS_SHOWN_MAX], command_from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// The device a registration PIN belongs to, if the PIN is still usable at `now_at`.
pub fn pending_enrollment(
    conn: &Connection,
    pin: &str,
    now_at: OffsetDateTime,
) -> StoreResult<String> {
    let found: Option<(String, DeviceStatus, Option<String>)> = conn
        .prepare_cached(
            "SELECT uuid, status, enrollment_pin_expires_at FROM devices
             WHERE enrollment_pin_sha256 = ?1",
        )?
        .query_row([pin_digest(pin)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let denied = |reason: &str| StoreError::Denied(format!("enrollment refused: {reason}"));
    match found {
        None => Err(denied(
            "the PIN is not valid or was already used; ask your administrator for a new registration",
        )),
        Some((_, status, _)) if status != DeviceStatus::Pending => {
            Err(denied("this registration was already used"))
        }
        Some((uuid, _, Some(expires_at))) if parse_timestamp(&expires_at)? > now_at => Ok(uuid),
        Some(_) => Err(denied(
            "the PIN has expired; ask your administrator to register the device again",
        )),
    }
}

pub fn validate_enrollment(input: &Enrollment) -> StoreResult<()> {
    let mut check = Check::new();
    check.text("pin", &input.pin, 64);
    check_hardware_ids(
        &mut check,
        None,
        input.udid.as_deref(),
        input.imei.as_deref(),
    );
    check_descriptions(
        &mut check,
        input.model.as_deref(),
        input.manufacturer.as_deref(),
        input.os_version.as_deref(),
    );
    check.optional_text("clientVersion", input.client_version.as_deref(), 64);
    check.finish()
}

/// Completes an enrollment: the device becomes `ACTIVE` with `identity` as its credential. The
/// PIN is re-checked here, inside the write, so two racing enrollments cannot both succeed.
pub fn complete_enrollment(
    conn: &Connection,
    input: &Enrollment,
    identity: &DeviceIdentity,
    ip_address: &str,
    now_at: OffsetDateTime,
) -> StoreResult<Device> {
    validate_enrollment(input)?;
    let uuid = pending_enrollment(conn, &input.pin, now_at)?;
    let (device_id, _) = internal_id(conn, &uuid)?;
    let at = timestamp(now_at);
    conn.prepare_cached(
        "UPDATE devices SET status = 'ACTIVE', enrolled_at = ?2, last_checkin_at = ?2,
            ip_address = ?3, udid = coalesce(?4, udid), imei = coalesce(?5, imei),
            os_version = coalesce(?6, os_version), model = coalesce(?7, model),
            manufacturer = coalesce(?8, manufacturer), client_version = ?9,
            enrollment_pin_sha256 = NULL, enrollment_pin_expires_at = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        device_id,
        at,
        ip_address,
        input.udid,
        input.imei,
        input.os_version,
        input.model,
        input.manufacturer,
        input.client_version,
    ])
    .map_err(StoreError::from_sqlite)?;
    conn.prepare_cached(
        "INSERT INTO device_certificates (device_id, serial_hex, sha256_fingerprint,
            certificate_pem, not_before, not_after, issued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        device_id,
        identity.serial_hex,
        identity.issued.sha256_fingerprint,
        identity.issued.certificate_pem,
        timestamp(identity.not_before),
        timestamp(identity.not_after),
        at,
    ])?;
    events::append(
        conn,
        &format!("device:{uuid}"),
        "DEVICE_ENROLLED",
        device_subject(&uuid),
        &format!("device {uuid} enrolled from {ip_address}"),
    )?;
    get(conn, &uuid)
}

/// The device whose unrevoked identity certificate has this SHA-256 fingerprint.
pub fn authenticate(conn: &Connection, fingerprint: &str) -> StoreResult<AuthenticatedDevice> {
    conn.prepare_cached(
        "SELECT d.id, d.uuid, d.status FROM device_certificates c
         JOIN devices d ON d.id = c.device_id
         WHERE c.sha256_fingerprint = ?1 AND c.revoked_at IS NULL",
    )?
    .query_row([fingerprint], |row| {
        Ok(AuthenticatedDevice {
            id: row.get(0)?,
            uuid: row.get(1)?,
            status: row.get(2)?,
        })
    })
    .optional()?
    .ok_or_else(|| {
        StoreError::Denied(
            "this device identity is unknown or revoked; enroll the device again".into(),
        )
    })
}

pub fn validate_checkin(input: &CheckIn) -> StoreResult<()> {
    let mut check = Check::new();
    check.optional_text("osVersion", input.os_version.as_deref(), 64);
    check.optional_text("clientVersion", input.client_version.as_deref(), 64);
    if let Some(apps) = &input.apps {
        if apps.len() > INVENTORY_APPS_MAX {
            check.fail(
                "apps",
                &apps.len().to_string(),
                format!("may list at most {INVENTORY_APPS_MAX} apps"),
            );
        }
        for (index, app) in apps.iter().enumerate().take(INVENTORY_APPS_MAX) {
            check.text(&format!("apps[{index}].bundleId"), &app.bundle_id, 255);
            check.text(&format!("apps[{index}].name"), &app.name, 255);
            check.text(&format!("apps[{index}].version"), &app.version, 64);
        }
    }
    check.finish()
}

/// Records a check-in and returns what the device must do: its open commands (now marked
/// `SENT`) and the policies and configurations assigned to it through its labels.
pub fn check_in(
    conn: &Connection,
    fingerprint: &str,
    input: &CheckIn,
    ip_address: &str,
) -> StoreResult<CheckInReply> {
    validate_checkin(input)?;
    let device = authenticate(conn, fingerprint)?;
    let at = now();
    conn.prepare_cached(
        "UPDATE devices SET last_checkin_at = ?2, ip_address = ?3,
            os_version = coalesce(?4, os_version), client_version = coalesce(?5, client_version),
            compliant = coalesce(?6, compliant)
         WHERE id = ?1",
    )?
    .execute(params![
        device.id,
        at,
        ip_address,
        input.os_version,
        input.client_version,
        input.compliant,
    ])?;
    if let Some(apps) = &input.apps {
        conn.prepare_cached("DELETE FROM device_apps WHERE device_id = ?1")?
            .execute([device.id])?;
        let mut insert = conn.prepare_cached(
            "INSERT OR REPLACE INTO device_apps (device_id, bundle_id, name, version)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for app in apps {
            insert.execute(params![device.id, app.bundle_id, app.name, app.version])?;
        }
    }
    conn.prepare_cached(
        "UPDATE device_commands SET status = 'SENT', sent_at = ?2
         WHERE device_id = ?1 AND status = 'PENDING'",
    )?
    .execute(params![device.id, at])?;
    let commands = conn
        .prepare_cached(&format!(
            "{SELECT_COMMAND} WHERE c.device_id = ?1 AND c.status IN ('PENDING', 'SENT')
             ORDER BY c.id"
        ))?
        .query_map([device.id], command_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CheckInReply {
        device_uuid: device.uuid,
        status: device.status,
        commands,
        policies: policies::assigned_to_device(conn, device.id, PolicyKind::Policy)?,
        configurations: policies::assigned_to_device(conn, device.id, PolicyKind::Configuration)?,
    })
}

/// A device's answer to a command. An acknowledged retire or wipe ends management: the device
/// moves to `RETIRED` or `WIPED` and its identity is revoked.
pub fn record_command_result(
    conn: &Connection,
    fingerprint: &str,
    command_id: i64,
    input: &CommandResult,
) -> StoreResult<DeviceCommand> {
    let mut check = Check::new();
    if matches!(input.status, CommandStatus::Pending | CommandStatus::Sent) {
        check.fail(
            "status",
            input.status.as_str(),
            "must be ACKNOWLEDGED or ERROR",
        );
    }
    check.optional_text("result", input.result.as_deref(), 4096);
    check.finish()?;
    let device = authenticate(conn, fingerprint)?;
    let command = command_by_id(conn, command_id)?;
    if command.device_uuid != device.uuid {
        return Err(StoreError::not_found("command", command_id));
    }
    if !matches!(command.status, CommandStatus::Pending | CommandStatus::Sent) {
        return Err(StoreError::Refused(format!(
            "command {command_id} is already {}",
            command.status
        )));
    }
    let at = now();
    conn.execute(
        "UPDATE device_commands SET status = ?2, completed_at = ?3, result = ?4 WHERE id = ?1",
        params![command_id, input.status, at, input.result],
    )?;
    let final_status = match (command.command, input.status) {
        (CommandKind::Retire, CommandStatus::Acknowledged) => Some(DeviceStatus::Retired),
        (CommandKind::Wipe, CommandStatus::Acknowledged) => Some(DeviceStatus::Wiped),
        _ => None,
    };
    if let Some(final_status) = final_status {
        conn.execute(
            "UPDATE devices SET status = ?2 WHERE id = ?1",
            params![device.id, final_status],
        )?;
        conn.execute(
            "UPDATE device_certificates SET revoked_at = ?2
             WHERE device_id = ?1 AND revoked_at IS NULL",
            params![device.id, at],
        )?;
    }
    events::append(
        conn,
        &format!("device:{}", device.uuid),
        &format!("DEVICE_{}_{}", command.command, input.status),
        device_subject(&device.uuid),
        &format!(
            "device {} answered {} with {}",
            device.uuid, command.command, input.status
        ),
    )?;
    command_by_id(conn, command_id)
}

#[cfg(test)]
mod tests {
    use super::imei_is_valid;

    #[test]
    fn imei_check_digit() {
        assert!(imei_is_valid("490154203237518"));
        assert!(!imei_is_valid("490154203237519"));
        assert!(!imei_is_valid("49015420323751"));
        assert!(!imei_is_valid("49015420323751x"));
    }

    #[test]
    fn filters_narrow_lists_and_counts_and_the_tally_adds_up() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_replicated(&dir.path().join("r.db"), crate::OpenMode::Create).unwrap();
        db.write_blocking(|conn| {
            let user = crate::users::UserInput {
                principal: Some("jdoe@example.com".into()),
                email: None,
                first_name: None,
                last_name: None,
            };
            crate::users::create(conn, "test", &user)?;
            let mut uuids = Vec::new();
            for (platform, serial) in [
                (Platform::Ios, "IOS1"),
                (Platform::Android, "AND1"),
                (Platform::Android, "AND2"),
            ] {
                let input = NewDevice {
                    platform: Some(platform),
                    user_principal: Some("jdoe@example.com".into()),
                    serial: Some(serial.into()),
                    ..NewDevice::default()
                };
                uuids.push(
                    register(conn, "test", &input, OffsetDateTime::now_utc())?
                        .device
                        .uuid,
                );
            }
            let label = crate::labels::LabelInput {
                name: Some("Sales".into()),
                description: None,
            };
            let label = crate::labels::create(conn, "test", &label)?;
            crate::labels::apply(conn, "test", label.id, &uuids[2..])?;
            Ok(())
        })
        .unwrap();
        db.read_blocking(|conn| {
            let android = DeviceFilter {
                platform: Some(Platform::Android),
                ..DeviceFilter::default()
            };
            assert_eq!(count_filtered(conn, None, &android)?, 2);
            assert_eq!(count_filtered(conn, Some("AND2"), &android)?, 1);
            assert_eq!(count_filtered(conn, Some("IOS"), &android)?, 0);
            let sales = DeviceFilter {
                label: Some("Sales".into()),
                status: Some(DeviceStatus::Pending),
                ..DeviceFilter::default()
            };
            let page = list_filtered(conn, &PageRequest::default(), &sales)?;
            assert_eq!(page.total_count, 1);
            assert_eq!(page.results[0].serial.as_deref(), Some("AND2"));
            let paged = PageRequest {
                limit: Some(1),
                offset: Some(1),
                ..PageRequest::default()
            };
            let second = list_filtered(conn, &paged, &android)?;
            assert_eq!(second.results[0].serial.as_deref(), Some("AND2"));
            assert!(!second.has_more);
            assert_eq!(count_filtered(conn, None, &DeviceFilter::default())?, 3);
            let tally = tally(conn)?;
            assert_eq!(tally.total, 3);
            assert_eq!(
                tally.by_platform,
                vec![(Platform::Android, 2), (Platform::Ios, 1)]
            );
            assert_eq!(tally.by_status, vec![(DeviceStatus::Pending, 3)]);
            let registered = crate::events::list_of_kind(
                conn,
                &PageRequest::default(),
                Some("DEVICE_REGISTERED"),
            )?;
            assert_eq!(registered.total_count, 3);
            assert!(registered.results[0].id > registered.results[2].id);
            let kinds = crate::events::kinds(conn)?;
            assert!(kinds.contains(&"LABEL_APPLIED".to_owned()), "{kinds:?}");
            Ok(())
        })
        .unwrap();
    }
}
