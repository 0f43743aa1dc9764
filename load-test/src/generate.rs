//! A seeded generator of realistic CloudTrail management events.
//!
//! The mix follows what a busy AWS estate logs: mostly read-only calls by assumed roles and
//! AWS services, a minority of writes by IAM users and federated identities, some root
//! activity, access-denied errors, and console sign-ins that sometimes fail or lack MFA.
//! The same seed always yields the same events (ChaCha8, independent of platform).

use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// (service, event name, read-only, weight)
const CALLS: &[(&str, &str, bool, u32)] = &[
    ("ec2", "DescribeInstances", true, 120),
    ("ec2", "DescribeSecurityGroups", true, 40),
    ("ec2", "DescribeVolumes", true, 30),
    ("ec2", "RunInstances", false, 6),
    ("ec2", "TerminateInstances", false, 4),
    ("ec2", "AuthorizeSecurityGroupIngress", false, 3),
    ("ec2", "RevokeSecurityGroupIngress", false, 2),
    ("ec2", "CreateRoute", false, 1),
    ("ec2", "CreateNetworkAclEntry", false, 1),
    ("ec2", "ModifyInstanceAttribute", false, 2),
    ("ec2", "CreateSnapshot", false, 2),
    ("ec2", "ModifySnapshotAttribute", false, 1),
    ("s3", "ListBuckets", true, 30),
    ("s3", "GetBucketAcl", true, 40),
    ("s3", "GetBucketPolicy", true, 25),
    ("s3", "GetBucketLocation", true, 25),
    ("s3", "PutBucketPolicy", false, 2),
    ("s3", "PutBucketAcl", false, 1),
    ("s3", "PutBucketVersioning", false, 1),
    ("s3", "CreateBucket", false, 2),
    ("s3", "DeleteBucket", false, 1),
    ("s3", "PutBucketLogging", false, 1),
    ("iam", "ListUsers", true, 15),
    ("iam", "GetRole", true, 30),
    ("iam", "ListRoles", true, 15),
    ("iam", "GetPolicyVersion", true, 15),
    ("iam", "CreateUser", false, 1),
    ("iam", "CreateAccessKey", false, 1),
    ("iam", "AttachRolePolicy", false, 2),
    ("iam", "PutUserPolicy", false, 1),
    ("iam", "UpdateLoginProfile", false, 1),
    ("iam", "DeactivateMFADevice", false, 1),
    ("sts", "AssumeRole", true, 120),
    ("sts", "GetCallerIdentity", true, 40),
    ("sts", "GetSessionToken", true, 5),
    ("kms", "Decrypt", true, 90),
    ("kms", "GenerateDataKey", true, 60),
    ("kms", "DescribeKey", true, 20),
    ("kms", "ScheduleKeyDeletion", false, 1),
    ("kms", "DisableKey", false, 1),
    ("lambda", "ListFunctions20150331", true, 15),
    ("lambda", "GetFunction20150331v2", true, 10),
    ("lambda", "UpdateFunctionCode20150331v2", false, 3),
    ("lambda", "UpdateFunctionConfiguration20150331v2", false, 2),
    ("cloudtrail", "LookupEvents", true, 8),
    ("cloudtrail", "DescribeTrails", true, 6),
    ("cloudtrail", "StopLogging", false, 1),
    ("cloudtrail", "UpdateTrail", false, 1),
    ("logs", "CreateLogStream", false, 40),
    ("logs", "DescribeLogGroups", true, 20),
    ("dynamodb", "DescribeTable", true, 25),
    ("rds", "DescribeDBInstances", true, 15),
    ("rds", "ModifyDBInstance", false, 1),
    ("ssm", "GetParameter", true, 40),
    ("ssm", "SendCommand", false, 2),
    ("guardduty", "ListDetectors", true, 5),
    ("guardduty", "CreateIPSet", false, 1),
    ("config", "DescribeConfigRules", true, 5),
    ("config", "StopConfigurationRecorder", false, 1),
    ("elasticloadbalancing", "DescribeLoadBalancers", true, 15),
    ("secretsmanager", "GetSecretValue", true, 25),
    ("ecs", "DescribeTaskDefinition", true, 8),
    ("eks", "DescribeCluster", true, 8),
];

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
];
const AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.0 exe/x86_64.amzn.2023 prompt/off command/ec2.describe-instances",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.152.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "terraform-provider-aws/5.43.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.0",
    "AWS Internal",
];
const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];
const ROLES: &[&str] = &[
    "ci-deploy",
    "app-backend",
    "data-pipeline",
    "AWSReservedSSO_Admin_0a1b2c",
    "ReadOnlyAudit",
    "lambda-exec",
];

/// Generator state; one instance yields an endless, reproducible stream.
pub struct Generator {
    rng: ChaCha8Rng,
    accounts: Vec<String>,
    time: i64,
    cumulative: Vec<u32>,
    /// Events produced so far.
    pub produced: u64,
}

impl Generator {
    /// A generator for `seed`, starting at `start` (Unix seconds).
    pub fn new(seed: u64, start: i64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let accounts = (0..20)
            .map(|_| {
                format!(
                    "{:012}",
                    rng.random_range(100_000_000_000u64..999_999_999_999)
                )
            })
            .collect();
        let mut total = 0;
        let cumulative = CALLS
            .iter()
            .map(|c| {
                total += c.3;
                total
            })
            .collect();
        Generator {
            rng,
            accounts,
            time: start,
            cumulative,
            produced: 0,
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.random_range(0..16), 16).unwrap_or('0'))
            .collect()
    }

    fn upper_id(&mut self, prefix: &str, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let body: String = (0..n)
            .map(|_| A[self.rng.random_range(0..A.len())] as char)
            .collect();
        format!("{prefix}{body}")
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }

    fn ip(&mut self) -> String {
        // Never the documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24): scenarios use them.
        let first = *self.pick(&[3u8, 18, 34, 52, 54, 81, 91, 102, 185, 13]);
        format!(
            "{first}.{}.{}.{}",
            self.rng.random_range(0..256),
            self.rng.random_range(0..256),
            self.rng.random_range(1..255)
        )
    }

    fn time_text(&mut self) -> String {
        self.time += self.rng.random_range(0..2);
        format_time(self.time)
    }

    /// The event time (Unix seconds) the generator has reached.
    pub fn time(&self) -> i64 {
        self.time
    }

    /// The next event.
    pub fn next_event(&mut self) -> Value {
        self.produced += 1;
        if self.rng.random_ratio(1, 40) {
            return self.console_login();
        }
        let r = self
            .rng
            .random_range(0..*self.cumulative.last().unwrap_or(&1));
        let i = self.cumulative.partition_point(|&c| c <= r);
        let (svc, name, read_only, _) = CALLS[i.min(CALLS.len() - 1)];
        self.api_call(svc, name, read_only)
    }

    fn identity(&mut self, account: &str) -> Value {
        let roll = self.rng.random_range(0..100);
        let key = self.upper_id("ASIA", 16);
        if roll < 55 {
            let role = *self.pick(ROLES);
            let session = if self.rng.random_bool(0.5) {
                format!("{}", self.rng.random_range(1_700_000_000u64..1_800_000_000))
            } else {
                self.pick(USERS).to_string()
            };
            let role_id = self.upper_id("AROA", 17);
            json!({
                "type": "AssumedRole",
                "principalId": format!("{role_id}:{session}"),
                "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
                "accountId": account,
                "accessKeyId": key,
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": role_id, "arn": format!("arn:aws:iam::{account}:role/{role}"), "accountId": account, "userName": role},
                    "webIdFederationData": {},
                    "attributes": {"creationDate": format_time(self.time - 600), "mfaAuthenticated": "false"}
                }
            })
        } else if roll < 80 {
            let user = *self.pick(USERS);
            json!({
                "type": "IAMUser",
                "principalId": self.upper_id("AIDA", 17),
                "arn": format!("arn:aws:iam::{account}:user/{user}"),
                "accountId": account,
                "accessKeyId": self.upper_id("AKIA", 16),
                "userName": user
            })
        } else if roll < 92 {
            json!({"type": "AWSService", "invokedBy": format!("{}.amazonaws.com", self.pick(&["ec2", "lambda", "cloudformation", "autoscaling", "config"]))})
        } else if roll < 97 {
            let user = *self.pick(USERS);
            json!({
                "type": "FederatedUser",
                "principalId": format!("{account}:{user}"),
                "arn": format!("arn:aws:sts::{account}:federated-user/{user}"),
                "accountId": account,
                "accessKeyId": key,
                "sessionContext": {"sessionIssuer": {"type": "IAMUser", "principalId": self.upper_id("AIDA", 17), "arn": format!("arn:aws:iam::{account}:user/{user}"), "accountId": account, "userName": user}, "attributes": {"creationDate": format_time(self.time - 300), "mfaAuthenticated": "false"}}
            })
        } else {
            json!({"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"), "accountId": account, "accessKeyId": key})
        }
    }

    fn api_call(&mut self, svc: &str, name: &str, read_only: bool) -> Value {
        let account = self.pick(&self.accounts.clone()).clone();
        let region = *self.pick(REGIONS);
        let identity = self.identity(&account);
        let service_call = identity["type"] == "AWSService";
        let source_ip = if service_call {
            format!("{svc}.amazonaws.com")
        } else {
            self.ip()
        };
        let agent = if service_call {
            format!("{svc}.amazonaws.com")
        } else {
            self.pick(AGENTS).to_string()
        };
        let mut ev = Map::new();
        ev.insert("eventVersion".into(), json!("1.09"));
        ev.insert("userIdentity".into(), identity);
        ev.insert("eventTime".into(), json!(self.time_text()));
        ev.insert("eventSource".into(), json!(format!("{svc}.amazonaws.com")));
        ev.insert("eventName".into(), json!(name));
        ev.insert("awsRegion".into(), json!(region));
        ev.insert("sourceIPAddress".into(), json!(source_ip));
        ev.insert("userAgent".into(), json!(agent));
        if self.rng.random_ratio(1, 20) {
            let (code, msg) = if svc == "ec2" {
                (
                    "Client.UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                )
            } else {
                ("AccessDenied", "User is not authorized to perform this action because no identity-based policy allows it")
            };
            ev.insert("errorCode".into(), json!(code));
            ev.insert("errorMessage".into(), json!(msg));
            ev.insert("requestParameters".into(), Value::Null);
            ev.insert("responseElements".into(), Value::Null);
        } else {
            ev.insert(
                "requestParameters".into(),
                self.request_parameters(svc, name, &account, region),
            );
            ev.insert(
                "responseElements".into(),
                if read_only {
                    Value::Null
                } else {
                    json!({"requestId": self.uuid(), "_return": true})
                },
            );
        }
        ev.insert("requestID".into(), json!(self.uuid()));
        ev.insert("eventID".into(), json!(self.uuid()));
        ev.insert("readOnly".into(), json!(read_only));
        ev.insert(
            "eventType".into(),
            json!(if service_call && self.rng.random_ratio(1, 4) {
                "AwsServiceEvent"
            } else {
                "AwsApiCall"
            }),
        );
        ev.insert("managementEvent".into(), json!(true));
        ev.insert("recipientAccountId".into(), json!(account));
        ev.insert("eventCategory".into(), json!("Management"));
        ev.insert("tlsDetails".into(), json!({"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": format!("{svc}.{region}.amazonaws.com")}));
        Value::Object(ev)
    }

    fn request_parameters(&mut self, svc: &str, name: &str, account: &str, region: &str) -> Value {
        match (svc, name) {
            ("ec2", "DescribeInstances") => {
                json!({"instancesSet": {}, "filterSet": {"items": [{"name": "instance-state-name", "valueSet": {"items": [{"value": "running"}]}}]}})
            }
            ("ec2", n) if n.contains("SecurityGroup") => {
                json!({"groupId": format!("sg-{}", self.hex(17)), "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "ipRanges": {"items": [{"cidrIp": "10.0.0.0/16"}]}}]}})
            }
            ("ec2", "RunInstances") => {
                json!({"instancesSet": {"items": [{"imageId": format!("ami-{}", self.hex(17)), "minCount": 1, "maxCount": 1}]}, "instanceType": "m6i.large", "subnetId": format!("subnet-{}", self.hex(17))})
            }
            ("ec2", "ModifyInstanceAttribute") => {
                json!({"instanceId": format!("i-{}", self.hex(17)), "attribute": *self.pick(&["instanceType", "userData", "disableApiTermination"])})
            }
            ("s3", _) => {
                json!({"bucketName": format!("phi-records-{}-{}", self.hex(6), region), "Host": format!("s3.{region}.amazonaws.com")})
            }
            ("iam", _) => {
                json!({"userName": *self.pick(USERS), "policyArn": format!("arn:aws:iam::{account}:policy/app-policy")})
            }
            ("sts", "AssumeRole") => {
                json!({"roleArn": format!("arn:aws:iam::{account}:role/{}", self.pick(ROLES)), "roleSessionName": format!("session-{}", self.hex(8)), "durationSeconds": 3600})
            }
            ("kms", _) => {
                json!({"keyId": format!("arn:aws:kms:{region}:{account}:key/{}", self.uuid()), "encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": {"aws:lambda:FunctionArn": format!("arn:aws:lambda:{region}:{account}:function:ingest")}})
            }
            ("logs", _) => {
                json!({"logGroupName": "/aws/lambda/ingest", "logStreamName": format!("2024/01/01/[$LATEST]{}", self.hex(32))})
            }
            ("ssm", _) => json!({"name": "/app/prod/db-endpoint", "withDecryption": false}),
            ("secretsmanager", _) => {
                json!({"secretId": format!("arn:aws:secretsmanager:{region}:{account}:secret:prod/db-{}", self.hex(6))})
            }
            _ => json!({"maxResults": 100}),
        }
    }

    fn console_login(&mut self) -> Value {
        let account = self.pick(&self.accounts.clone()).clone();
        let root = self.rng.random_ratio(1, 30);
        let success = self.rng.random_ratio(4, 5);
        let mfa = self.rng.random_ratio(3, 4);
        let user = *self.pick(USERS);
        let identity = if root {
            json!({"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"), "accountId": account})
        } else {
            json!({"type": "IAMUser", "principalId": self.upper_id("AIDA", 17), "arn": format!("arn:aws:iam::{account}:user/{user}"), "accountId": account, "userName": user})
        };
        let mut ev = Map::new();
        ev.insert("eventVersion".into(), json!("1.09"));
        ev.insert("userIdentity".into(), identity);
        ev.insert("eventTime".into(), json!(self.time_text()));
        ev.insert("eventSource".into(), json!("signin.amazonaws.com"));
        ev.insert("eventName".into(), json!("ConsoleLogin"));
        ev.insert("awsRegion".into(), json!("us-east-1"));
        ev.insert("sourceIPAddress".into(), json!(self.ip()));
        ev.insert("userAgent".into(), json!(AGENTS[3]));
        if !success {
            ev.insert("errorMessage".into(), json!("Failed authentication"));
        }
        ev.insert("requestParameters".into(), Value::Null);
        ev.insert(
            "responseElements".into(),
            json!({"ConsoleLogin": if success { "Success" } else { "Failure" }}),
        );
        ev.insert("additionalEventData".into(), json!({
            "LoginTo": "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true",
            "MobileVersion": "No",
            "MFAIdentifier": if mfa { format!("arn:aws:iam::{account}:mfa/{user}") } else { String::new() },
            "MFAUsed": if mfa { "Yes" } else { "No" }
        }));
        ev.insert("eventID".into(), json!(self.uuid()));
        ev.insert("readOnly".into(), json!(false));
        ev.insert("eventType".into(), json!("AwsConsoleSignIn"));
        ev.insert("managementEvent".into(), json!(true));
        ev.insert("recipientAccountId".into(), json!(account));
        ev.insert("eventCategory".into(), json!("Management"));
        ev.insert("tlsDetails".into(), json!({"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "signin.aws.amazon.com"}));
        Value::Object(ev)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (UTC), without a date library.
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let mut a = Generator::new(7, 1_700_000_000);
        let mut b = Generator::new(7, 1_700_000_000);
        for _ in 0..100 {
            assert_eq!(a.next_event(), b.next_event());
        }
        let mut c = Generator::new(8, 1_700_000_000);
        assert_ne!(
            Generator::new(7, 1_700_000_000).next_event(),
            c.next_event()
        );
    }

    #[test]
    fn realistic_size_and_mix() {
        let mut g = Generator::new(1, 1_700_000_000);
        let events: Vec<Value> = (0..5000).map(|_| g.next_event()).collect();
        let bytes: usize = events.iter().map(|e| e.to_string().len()).sum();
        let avg = bytes / events.len();
        assert!((900..1600).contains(&avg), "average event size {avg}");
        let count = |f: &dyn Fn(&Value) -> bool| events.iter().filter(|e| f(e)).count();
        assert!(count(&|e| e["eventName"] == "ConsoleLogin") > 50);
        assert!(count(&|e| e["errorCode"].is_string()) > 100);
        assert!(count(&|e| e["userIdentity"]["type"] == "Root") > 10);
        assert!(count(&|e| e["userIdentity"]["type"] == "AWSService") > 200);
    }

    #[test]
    fn time_formatting() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
    }
}
