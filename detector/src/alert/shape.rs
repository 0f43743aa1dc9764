//! The shapes the fields alerts copy must have.
//!
//! An attacker who writes a CloudTrail field (or a broken upstream) must not carry arbitrary
//! content into alerts, OCSF findings and SNS through a field that is supposed to hold an
//! account id or an address: a copied value that does not have its field's shape (an object,
//! an array, a long or odd string) is replaced by [`INVALID`].

/// What replaces a copied value that does not have its field's shape.
pub const INVALID: &str = "<invalid>";

/// `text` if it has the shape of the summary field `name` (one of
/// [`super::SUMMARY_FIELDS`]), else [`INVALID`]. Other fields are kept as they are.
pub fn checked(name: &str, text: &str) -> String {
    if valid(name, text) {
        text.to_string()
    } else {
        INVALID.to_string()
    }
}

/// Whether `text` has the shape of the field `name`.
pub fn valid(name: &str, text: &str) -> bool {
    let all = |max: usize, ok: fn(char) -> bool| {
        !text.is_empty() && text.len() <= max && text.chars().all(ok)
    };
    match name {
        "eventID" => all(64, |c| c.is_ascii_alphanumeric() || c == '-'),
        "eventTime" => text.len() <= 40 && crate::window::event_time(text).is_some(),
        "eventSource" => all(128, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')
        }),
        "eventName" => all(128, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')
        }),
        "recipientAccountId" | "userIdentity.accountId" => {
            (text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()))
                || all(32, |c| c.is_ascii_uppercase() || c == '_')
        }
        "awsRegion" => all(32, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        }),
        "userIdentity.type" => all(32, |c| c.is_ascii_alphabetic()),
        "userIdentity.arn" => {
            text.starts_with("arn:")
                && all(2048, |c| {
                    c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '{' | '}' | '[' | ']')
                })
        }
        // An address, or the service or host name CloudTrail writes for calls made by AWS.
        "sourceIPAddress" => {
            text.parse::<std::net::IpAddr>().is_ok()
                || all(253, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ')
                })
        }
        // `AccessDenied`, `Client.UnauthorizedOperation`, `ThrottlingException`, ...
        "errorCode" => {
            text.starts_with(|c: char| c.is_ascii_alphabetic())
                && all(128, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
                })
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_values_keep_their_shape() {
        for (name, value) in [
            ("eventID", "3038ebd2-c98a-4c65-9b6e-e22506292313"),
            ("eventTime", "2026-11-01T10:00:00Z"),
            ("eventSource", "s3.amazonaws.com"),
            ("eventName", "ConsoleLogin"),
            ("recipientAccountId", "111122223333"),
            ("userIdentity.accountId", "ANONYMOUS_PRINCIPAL"),
            ("awsRegion", "ap-southeast-2"),
            ("userIdentity.type", "AssumedRole"),
            (
                "userIdentity.arn",
                "arn:aws:sts::111122223333:assumed-role/app/i-0abc+x=y,z@q",
            ),
            ("sourceIPAddress", "2001:db8::1"),
            ("sourceIPAddress", "203.0.113.9"),
            ("sourceIPAddress", "AWS Internal"),
            ("sourceIPAddress", "cloudformation.amazonaws.com"),
            ("errorCode", "Client.UnauthorizedOperation"),
        ] {
            assert_eq!(checked(name, value), value, "{name}");
        }
    }

    #[test]
    fn objects_arrays_and_odd_text_are_replaced() {
        for (name, value) in [
            ("sourceIPAddress", r#"{"patient":"Jane Doe","mrn":"12345"}"#),
            ("eventID", r#"["a","b"]"#),
            ("awsRegion", "us-east-1\u{1b}[2J"),
            ("recipientAccountId", "1111222233334"),
            ("errorCode", "AccessDenied\nforged: line"),
            ("userIdentity.arn", r#"arn:aws:iam::1:user/{"x":1}"#),
            ("eventTime", "yesterday"),
            ("sourceIPAddress", ""),
        ] {
            assert_eq!(checked(name, value), INVALID, "{name}: {value}");
        }
        assert_eq!(checked("requestParameters.bucketName", "{x}"), "{x}");
    }
}
