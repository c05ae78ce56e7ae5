//! The private JSON shapes Dikidi answers with. Required fields are required on purpose: a
//! missing one is drift.

use super::*;

// ---------------------------------------------------------------------------------------------
// Wire types (private). Required fields are required on purpose: a missing one is drift.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct WireServicesData {
    /// An array of categories with `array=1`, otherwise an object keyed by category id.
    pub(super) list: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireCategory {
    #[serde(default)]
    pub(super) name: Value,
    pub(super) services: Vec<WireService>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireService {
    pub(super) id: Value,
    pub(super) name: String,
    #[serde(default)]
    pub(super) cost: Value,
    #[serde(default)]
    pub(super) price: Value,
    /// Minutes.
    #[serde(default)]
    pub(super) time: Value,
    #[serde(default)]
    pub(super) masters: Vec<WireServiceMaster>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireServiceMaster {
    pub(super) id: Value,
    #[serde(default)]
    pub(super) username: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireDatesTrue {
    pub(super) dates_true: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireDatetimes {
    #[serde(default)]
    pub(super) masters: Value,
    /// `{"<master_id>": ["YYYY-MM-DD HH:MM:SS", …]}` or `[]` when nothing is free.
    pub(super) times: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireMasterEntry {
    #[serde(default)]
    pub(super) id: Value,
    #[serde(default)]
    pub(super) username: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireReservation {
    pub(super) record_id: Value,
    #[serde(default)]
    pub(super) master_id: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireRecordAnswer {
    pub(super) bookings: Vec<WireBooking>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireBooking {
    pub(super) id: Value,
    pub(super) time: String,
    #[serde(default)]
    pub(super) time_to: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireRecordInfo {
    pub(super) record: WireRecordBody,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireRecordBody {
    #[serde(default)]
    pub(super) id: Value,
    pub(super) time: String,
    #[serde(default)]
    pub(super) time_to: Option<String>,
    #[serde(default)]
    pub(super) service_id: Value,
    #[serde(default)]
    pub(super) master_id: Value,
    /// No public client shows how a cancelled record looks in `records_info`; these are the
    /// only markers we act on (docs/dikidi.md, "Change detection").
    #[serde(default)]
    pub(super) deleted: Value,
    #[serde(default)]
    pub(super) is_deleted: Value,
    #[serde(default)]
    pub(super) status: Value,
}

impl WireRecordBody {
    /// A positive "this record is cancelled" in the answer itself.
    pub(super) fn reported_cancelled(&self) -> bool {
        let truthy = |v: &Value| match v {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
            Value::String(s) => matches!(s.trim(), "1" | "true"),
            _ => false,
        };
        let status = match &self.status {
            Value::String(s) => s.trim().to_lowercase(),
            _ => String::new(),
        };
        truthy(&self.deleted)
            || truthy(&self.is_deleted)
            || matches!(
                status.as_str(),
                "deleted" | "removed" | "cancelled" | "canceled"
            )
    }
}

/// Catalogue: services and, per service, its masters.
#[derive(Debug, Clone, Default)]
pub(super) struct Catalog {
    pub(super) services: Vec<Service>,
    pub(super) masters: BTreeMap<String, Vec<Master>>,
}

pub(super) fn parse_catalog(payload: Value) -> Result<Catalog, String> {
    let data: WireServicesData = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    let categories: Vec<Value> = match data.list {
        Value::Array(items) => items,
        Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
        _ => return Err("`list` is neither an array nor an object".into()),
    };
    let mut catalog = Catalog::default();
    for c in categories {
        let c: WireCategory = serde_json::from_value(c).map_err(|e| e.to_string())?;
        let category = str_of(&c.name);
        for s in c.services {
            let id = id_of(&s.id).ok_or("a service without an id")?;
            let cost = if s.cost.is_null() { &s.price } else { &s.cost };
            catalog.services.push(Service {
                id: id.clone(),
                name: s.name,
                category: category.clone(),
                duration_min: minutes_of(&s.time).unwrap_or(DEFAULT_SERVICE_MIN),
                price_min: money_of(cost),
                price_max: money_of(cost),
                // Dikidi's service lists carry no description.
                description: None,
            });
            let masters = s
                .masters
                .iter()
                .filter_map(|m| {
                    Some(Master {
                        id: id_of(&m.id)?,
                        name: str_of(&m.username),
                        specialization: String::new(),
                    })
                })
                .collect();
            catalog.masters.insert(id, masters);
        }
    }
    Ok(catalog)
}

pub(super) fn parse_days(payload: Value) -> Result<Vec<NaiveDate>, String> {
    let wire: WireDatesTrue = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    wire.dates_true
        .iter()
        .map(|d| {
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| format!("`dates_true` item {d:?} is not YYYY-MM-DD"))
        })
        .collect()
}

/// Free times per master id, and the masters named in the answer.
pub(super) type Datetimes = (BTreeMap<String, Vec<DateTime<Utc>>>, Vec<Master>);

pub(super) fn parse_datetimes(payload: Value, tz: Tz) -> Result<Datetimes, String> {
    let wire: WireDatetimes = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    let mut times = BTreeMap::new();
    match wire.times {
        Value::Array(a) if a.is_empty() => {}
        Value::Object(map) => {
            for (master, list) in map {
                let Value::Array(list) = list else {
                    return Err(format!("`times.{master}` is not an array"));
                };
                let mut parsed = Vec::with_capacity(list.len());
                for t in list {
                    let s = t.as_str().ok_or("a time that is not a string")?;
                    parsed.push(
                        parse_local(s, tz)
                            .ok_or_else(|| format!("time {s:?} is not YYYY-MM-DD HH:MM:SS"))?,
                    );
                }
                times.insert(master, parsed);
            }
        }
        _ => return Err("`times` is neither an object nor an empty array".into()),
    }
    let mut masters = Vec::new();
    if let Value::Object(map) = wire.masters {
        for (key, m) in map {
            let m: WireMasterEntry = serde_json::from_value(m).map_err(|e| e.to_string())?;
            masters.push(Master {
                id: id_of(&m.id).unwrap_or(key),
                name: str_of(&m.username),
                specialization: String::new(),
            });
        }
    }
    Ok((times, masters))
}

/// Record id → start, end and the rest of the record.
pub(super) type RecordsInfo =
    BTreeMap<String, (DateTime<Utc>, Option<DateTime<Utc>>, WireRecordBody)>;

/// `records_info`: object keyed by record id (`[]` when none is known).
pub(super) fn parse_records_info(payload: Value, tz: Tz) -> Result<RecordsInfo, String> {
    let mut out = BTreeMap::new();
    match payload {
        Value::Array(a) if a.is_empty() => {}
        Value::Object(map) => {
            for (key, v) in map {
                let info: WireRecordInfo =
                    serde_json::from_value(v).map_err(|e| format!("record {key}: {e}"))?;
                let start = parse_local(&info.record.time, tz)
                    .ok_or_else(|| format!("record {key}: `time` is not YYYY-MM-DD HH:MM:SS"))?;
                let end = match &info.record.time_to {
                    Some(t) => Some(parse_local(t, tz).ok_or_else(|| {
                        format!("record {key}: `time_to` is not YYYY-MM-DD HH:MM:SS")
                    })?),
                    None => None,
                };
                let id = id_of(&info.record.id).unwrap_or(key);
                out.insert(id, (start, end, info.record));
            }
        }
        _ => return Err("the answer is neither an object keyed by record id nor `[]`".into()),
    }
    Ok(out)
}

pub(super) fn duration_between(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Option<u32> {
    let end = end?;
    u32::try_from((end - start).num_minutes())
        .ok()
        .filter(|m| *m > 0)
}
