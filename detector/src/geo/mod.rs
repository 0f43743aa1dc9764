//! Offline IP geolocation and the geo anomaly detectors' arithmetic.
//!
//! Locations come from MaxMind-format databases on disk (DB-IP City Lite's flat layout:
//! `country_code`, `latitude`, `longitude`; optionally an ASN database with
//! `autonomous_system_number`). Nothing is ever looked up over the network.

pub mod mmdb_writer;

use crate::rule::value::Cidr;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Where an address is.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// ISO country code, e.g. `DE`.
    pub country: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Autonomous system number, when an ASN database is configured.
    pub asn: Option<u32>,
}

/// Something that can place an IP address.
pub trait Locate: Send + Sync + std::fmt::Debug {
    /// The location of `ip`, if known.
    fn locate(&self, ip: IpAddr) -> Option<Location>;
}

/// Geolocation from MaxMind-format database files.
#[derive(Debug)]
pub struct MmdbLocator {
    cities: Vec<maxminddb::Reader<Vec<u8>>>,
    asn: Option<maxminddb::Reader<Vec<u8>>>,
}

/// An error opening a database.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct GeoDbError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct CityRecord<'a> {
    country_code: Option<&'a str>,
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
}

impl MmdbLocator {
    /// Opens city databases (DB-IP ships IPv4 and IPv6 as separate files) and an optional ASN one.
    pub fn open(cities: &[&Path], asn: Option<&Path>) -> Result<Self, GeoDbError> {
        let open = |p: &Path| {
            maxminddb::Reader::open_readfile(p).map_err(|e| GeoDbError {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        Ok(MmdbLocator {
            cities: cities.iter().map(|p| open(p)).collect::<Result<_, _>>()?,
            asn: asn.map(open).transpose()?,
        })
    }
}

impl Locate for MmdbLocator {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        let city = self.cities.iter().find_map(|db| {
            let r: CityRecord = db.lookup(ip).ok()?.decode().ok()??;
            Some(Location {
                country: r.country_code?.to_string(),
                lat: r.latitude?,
                lon: r.longitude?,
                asn: None,
            })
        })?;
        let asn = self.asn.as_ref().and_then(|db| {
            let r: AsnRecord = db.lookup(ip).ok()?.decode().ok()??;
            r.autonomous_system_number
        });
        Some(Location { asn, ..city })
    }
}

/// Fixed locations (rule fixtures, tests).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MapLocator(pub BTreeMap<IpAddr, Location>);

impl Locate for MapLocator {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.0.get(&ip).cloned()
    }
}

/// Addresses a geo rule never places: AWS-internal callers and the ones an operator exempts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exceptions {
    /// Networks (corporate egress, VPNs).
    pub cidrs: Vec<Cidr>,
    /// Autonomous systems.
    pub asns: Vec<u32>,
    /// Country codes.
    pub countries: Vec<String>,
}

impl Exceptions {
    /// The address to place, or `None` when it must not be geolocated: not an IP (an AWS
    /// service name such as `s3.amazonaws.com`, `AWS Internal`), private, loopback or link-local,
    /// or inside an exempt network.
    pub fn address(&self, text: &str) -> Option<IpAddr> {
        let ip: IpAddr = text.trim().parse().ok()?;
        let internal = match ip {
            IpAddr::V4(v4) => {
                v4.is_private()
                    || v4.is_loopback()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
            }
        };
        if internal || self.cidrs.iter().any(|c| c.contains(ip)) {
            return None;
        }
        Some(ip)
    }

    /// Whether a located address is exempt by its country or AS.
    pub fn exempt(&self, loc: &Location) -> bool {
        self.countries
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&loc.country))
            || loc.asn.is_some_and(|a| self.asns.contains(&a))
    }
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const R: f64 = 6371.0088;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        // Columbus, Ohio to Frankfurt: about 6,760 km.
        let d = distance_km(39.96, -83.0, 50.11, 8.68);
        assert!((6700.0..6850.0).contains(&d), "{d}");
        assert_eq!(distance_km(1.0, 2.0, 1.0, 2.0), 0.0);
        let antipodes = distance_km(0.0, 0.0, 0.0, 180.0);
        assert!((antipodes - 20015.0).abs() < 5.0, "{antipodes}");
    }

    #[test]
    fn exceptions() {
        let ex = Exceptions {
            cidrs: vec![Cidr::parse("198.51.100.0/24").unwrap()],
            asns: vec![16509],
            countries: vec!["us".into()],
        };
        assert_eq!(
            ex.address("203.0.113.9"),
            Some("203.0.113.9".parse().unwrap())
        );
        for never in [
            "s3.amazonaws.com",
            "AWS Internal",
            "10.1.2.3",
            "192.168.0.1",
            "127.0.0.1",
            "100.64.0.1",
            "fd00::1",
            "198.51.100.7",
            "",
        ] {
            assert_eq!(ex.address(never), None, "{never}");
        }
        let loc = |c: &str, asn| Location {
            country: c.into(),
            lat: 0.0,
            lon: 0.0,
            asn,
        };
        assert!(ex.exempt(&loc("US", None)));
        assert!(ex.exempt(&loc("DE", Some(16509))));
        assert!(!ex.exempt(&loc("DE", Some(1))));
    }

    #[test]
    fn reads_a_maxmind_database() {
        let dir = tempfile::tempdir().unwrap();
        let city = dir.path().join("city.mmdb");
        let asn = dir.path().join("asn.mmdb");
        mmdb_writer::write_city(
            &city,
            &[
                ("203.0.113.0/24", "DE", 50.11, 8.68),
                ("198.51.100.0/25", "US", 39.96, -83.0),
            ],
        )
        .unwrap();
        mmdb_writer::write_asn(&asn, &[("203.0.113.0/24", 3320)]).unwrap();
        let db = MmdbLocator::open(&[&city], Some(&asn)).unwrap();
        let de = db.locate("203.0.113.77".parse().unwrap()).unwrap();
        assert_eq!((de.country.as_str(), de.asn), ("DE", Some(3320)));
        assert!((de.lat - 50.11).abs() < 1e-6);
        assert_eq!(
            db.locate("198.51.100.1".parse().unwrap()).unwrap().country,
            "US"
        );
        assert_eq!(
            db.locate("198.51.100.200".parse().unwrap()),
            None,
            "outside the /25"
        );
        assert_eq!(db.locate("8.8.8.8".parse().unwrap()), None);
        assert!(MmdbLocator::open(&[&dir.path().join("missing.mmdb")], None).is_err());
    }
}
