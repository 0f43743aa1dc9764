//! Writes small IPv4 MaxMind-format databases: for tests, and for an estate that wants to place
//! its own networks (offices, VPN egress) without a commercial database.
//!
//! Format: a binary search tree over address bits (32-bit records), 16 zero bytes, the data
//! section, then `\xAB\xCD\xEFMaxMind.com` and the metadata map (MaxMind DB spec 2.0).

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

/// A data section value.
enum Value<'a> {
    Str(&'a str),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'a str, Value<'a>)>),
    Array(Vec<Value<'a>>),
}

fn control(out: &mut Vec<u8>, type_id: u8, size: usize) {
    let (first, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if type_id <= 7 {
        out.push((type_id << 5) | first);
    } else {
        out.push(first);
        out.push(type_id - 7);
    }
    out.extend(extra);
}

fn encode(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Double(d) => {
            control(out, 3, 8);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::U16(n) => {
            control(out, 5, 2);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::U32(n) => {
            control(out, 6, 4);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::U64(n) => {
            control(out, 9, 8);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Map(pairs) => {
            control(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(&Value::Str(k), out);
                encode(v, out);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for i in items {
                encode(i, out);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(u32),
    Data(u32),
}

fn network(cidr: &str) -> io::Result<(u32, u8)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{cidr}' is not an IPv4 network"),
        )
    };
    let (a, p) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
    Ok((u32::from(addr), prefix))
}

fn write(path: &Path, database_type: &str, entries: &[(&str, Value<'_>)]) -> io::Result<()> {
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    let mut data = Vec::new();
    for (cidr, value) in entries {
        let (addr, prefix) = network(cidr)?;
        let offset = data.len() as u32;
        encode(value, &mut data);
        let mut node = 0usize;
        for bit in 0..prefix {
            let side = ((addr >> (31 - bit)) & 1) as usize;
            if bit + 1 == prefix {
                nodes[node][side] = Record::Data(offset);
                break;
            }
            node = match nodes[node][side] {
                Record::Node(n) => n as usize,
                _ => {
                    nodes.push([Record::Empty; 2]);
                    let n = nodes.len() - 1;
                    nodes[node][side] = Record::Node(n as u32);
                    n
                }
            };
        }
    }
    let count = nodes.len() as u32;
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                Record::Empty => count,
                Record::Node(i) => i,
                Record::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let meta = Value::Map(vec![
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        ("build_epoch", Value::U64(1_700_000_000)),
        ("database_type", Value::Str(database_type)),
        (
            "description",
            Value::Map(vec![("en", Value::Str("trailwatch test database"))]),
        ),
        ("ip_version", Value::U16(4)),
        ("languages", Value::Array(vec![Value::Str("en")])),
        ("node_count", Value::U32(count)),
        ("record_size", Value::U16(32)),
    ]);
    encode(&meta, &mut out);
    std::fs::write(path, out)
}

/// Writes a city database in DB-IP City Lite's flat layout: (network, country, lat, lon).
pub fn write_city(path: &Path, nets: &[(&str, &str, f64, f64)]) -> io::Result<()> {
    let entries: Vec<(&str, Value<'_>)> = nets
        .iter()
        .map(|(cidr, country, lat, lon)| {
            let v = Value::Map(vec![
                ("country_code", Value::Str(country)),
                ("latitude", Value::Double(*lat)),
                ("longitude", Value::Double(*lon)),
            ]);
            (*cidr, v)
        })
        .collect();
    write(path, "DBIP-City-Lite", &entries)
}

/// Writes an ASN database: (network, autonomous system number).
pub fn write_asn(path: &Path, nets: &[(&str, u32)]) -> io::Result<()> {
    let entries: Vec<(&str, Value<'_>)> = nets
        .iter()
        .map(|(cidr, asn)| {
            (
                *cidr,
                Value::Map(vec![("autonomous_system_number", Value::U32(*asn))]),
            )
        })
        .collect();
    write(path, "GeoLite2-ASN", &entries)
}
