//! Cloud registry credentials end to end: the registry is the real `docker-registry` with the
//! htpasswd user each cloud expects (`AWS`, `oauth2accesstoken`, `buildkite`), reached through
//! `--registry-map` from the cloud host name an image is written with; only the cloud's token
//! endpoints (STS, the ECR API, OAuth token_uri, metadata server) are local fakes, and they
//! check what they receive (a valid SigV4 signature, a signed JWT, the subject token, the
//! `Metadata-Flavor` header). Credentials are chosen by the name the image was written with,
//! fetched once per build, and never printed.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use crate::support::base::{busybox_layout, copy_to_registry};
use crate::support::fake_cloud::{FakeCloud, Reply, Request};
use crate::support::proxy::{Action, Proxy};
use crate::support::token_server::TokenServer;
use crate::support::tools::{config_of, exists};
use crate::support::{Kiln, Project, Registry, sigv4};

const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const REPOSITORY: &str = "team/busybox";

/// A registry that only `user`/`password` may read, holding `repository:latest`, and an open
/// registry to push results to.
struct World {
    private: Registry,
    target: Registry,
    repository: String,
}

impl World {
    fn new(user: &str, password: &str, repository: &str) -> World {
        let private = Registry::start_with_auth(user, password);
        copy_to_registry(
            &busybox_layout(private.scratch()),
            "latest",
            &private.image(&format!("{repository}:latest")),
            false,
            Some(&format!("{user}:{password}")),
        );
        World {
            private,
            target: Registry::start(),
            repository: repository.to_owned(),
        }
    }

    /// A build `FROM host/<repository>` with `host` mapped to the private registry, pushing to
    /// the open one; no cloud variables inherited from the test's environment.
    fn build_from(&self, host: &str) -> (Kiln, Project, String) {
        self.build_through(host, self.private.addr())
    }

    /// [`World::build_from`] with `host` mapped to `mirror` (a proxy in front of the registry).
    fn build_through(&self, host: &str, mirror: &str) -> (Kiln, Project, String) {
        let project = Project::new().dockerfile(&format!(
            "FROM {host}/{}\nENV FROM_CLOUD=1\n",
            self.repository
        ));
        let destination = self.target.image("cloud/app:1");
        let mut kiln = Kiln::build(project.path()).push_to(&destination).args([
            "--registry-map",
            &format!("{host}={mirror}"),
            "--skip-default-registry-fallback",
        ]);
        for variable in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GCE_METADATA_HOST",
            "BUILDKITE_AGENT_ACCESS_TOKEN",
            "AZURE_CLIENT_ID",
        ] {
            kiln = kiln.env_remove(variable);
        }
        (kiln, project, destination)
    }
}

/// Fails the test if any of `secrets` (or the Basic header of `user:secret`) was printed.
fn assert_never_printed(printed: &str, user: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !printed.contains(secret),
            "{secret} was printed:\n{printed}"
        );
        let basic = STANDARD.encode(format!("{user}:{secret}"));
        assert!(
            !printed.contains(&basic),
            "Basic {user}:{secret} was printed"
        );
    }
}

/// Runs `kiln` with trace logging for every crate and requires success; then fails the test
/// if any of `secrets` appears in what it printed or in the pushed image's config (history,
/// environment, labels).
fn succeeds_without_leaking(kiln: Kiln, destination: &str, user: &str, secrets: &[&str]) {
    let outcome = kiln
        .args(["--verbosity", "trace"])
        .env("KILN_LOG", "trace")
        .run();
    let printed = outcome.everything_printed();
    assert!(outcome.succeeded(), "{printed}");
    assert!(
        printed.contains("registry request"),
        "trace logging was not on: {printed}"
    );
    assert_never_printed(&printed, user, secrets);
    let config = config_of(destination).to_string();
    assert!(config.contains("FROM_CLOUD"), "{config}");
    assert_never_printed(&config, user, secrets);
}

/// A fake ECR API accepting requests signed with `secret` (and `session`, if any) for
/// eu-west-1, answering with `AWS:<password>`.
fn fake_ecr(
    access_key: &'static str,
    secret: &'static str,
    session: Option<&'static str>,
    password: &'static str,
) -> FakeCloud {
    fake_ecr_api(EcrApi::Private, access_key, secret, session, password)
}

/// Which ECR API a fake plays.
#[derive(Clone, Copy, PartialEq)]
enum EcrApi {
    /// `ecr` in eu-west-1 (the region of [`ECR_HOST`]).
    Private,
    /// `ecr-public`, always in us-east-1.
    Public,
}

fn fake_ecr_api(
    api: EcrApi,
    access_key: &'static str,
    secret: &'static str,
    session: Option<&'static str>,
    password: &'static str,
) -> FakeCloud {
    FakeCloud::start(move |request: &Request| {
        let signed = match sigv4::verify(request, secret) {
            Ok(signed) => signed,
            Err(why) => {
                return Reply::error("403 Forbidden", "InvalidSignatureException")
                    .header("X-Why", &why);
            }
        };
        let session_ok = match session {
            Some(token) => {
                request.header("x-amz-security-token") == Some(token)
                    && signed
                        .signed_headers
                        .iter()
                        .any(|h| h == "x-amz-security-token")
            }
            None => request.header("x-amz-security-token").is_none(),
        };
        let (region, service, target) = match api {
            EcrApi::Private => ("eu-west-1", "ecr", ECR_TARGET),
            EcrApi::Public => (
                "us-east-1",
                "ecr-public",
                "SpencerFrontendService.GetAuthorizationToken",
            ),
        };
        if signed.access_key != access_key
            || signed.region != region
            || signed.service != service
            || !session_ok
            || request.method != "POST"
            || request.header("x-amz-target") != Some(target)
            || !signed.signed_headers.iter().any(|h| h == "x-amz-target")
        {
            return Reply::error("400 Bad Request", "UnrecognizedClientException");
        }
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 12 * 3600;
        let data = json!({
            "authorizationToken": STANDARD.encode(format!("AWS:{password}")),
            "expiresAt": expires as f64,
        });
        Reply::json(match api {
            EcrApi::Private => json!({"authorizationData": [data]}),
            EcrApi::Public => json!({"authorizationData": data}),
        })
    })
}

#[test]
fn ecr_images_are_pulled_with_irsa_web_identity_and_a_sigv4_signed_authorization_token() {
    const PASSWORD: &str = "ecr-password-from-irsa-never-print";
    const IRSA_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.irsa-projected-token.signature";
    const ROLE: &str = "arn:aws:iam::123456789012:role/kiln-builder";
    const STS_SECRET: &str = "sts-secret-access-key-never-print";
    const STS_SESSION: &str = "sts-session-token/never+print=";
    let world = World::new("AWS", PASSWORD, REPOSITORY);
    let sts = FakeCloud::start(|request: &Request| {
        let form = request.form();
        let get = |k: &str| form.get(k).map(String::as_str);
        if request.method != "POST"
            || get("Action") != Some("AssumeRoleWithWebIdentity")
            || get("RoleArn") != Some(ROLE)
            || get("WebIdentityToken") != Some(IRSA_TOKEN)
            || get("RoleSessionName").is_none_or(str::is_empty)
        {
            return Reply::error("403 Forbidden", "AccessDenied");
        }
        Reply {
            status: "200 OK",
            headers: vec![("Content-Type".into(), "text/xml".into())],
            body: format!(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                 <AccessKeyId>ASIAIRSAKEY</AccessKeyId><SecretAccessKey>{STS_SECRET}</SecretAccessKey>\
                 <SessionToken>{STS_SESSION}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
                 </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            ),
        }
    });
    let ecr = fake_ecr("ASIAIRSAKEY", STS_SECRET, Some(STS_SESSION), PASSWORD);
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("token");
    std::fs::write(&token_file, format!("{IRSA_TOKEN}\n")).unwrap();

    let (kiln, _project, destination) = world.build_from(ECR_HOST);
    succeeds_without_leaking(
        kiln.env("AWS_ROLE_ARN", ROLE)
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_ENDPOINT_URL_STS", sts.url())
            .env("AWS_ENDPOINT_URL_ECR", ecr.url()),
        &destination,
        "AWS",
        &[PASSWORD, IRSA_TOKEN, STS_SECRET, STS_SESSION],
    );
    // Once per build: one STS call and one ECR call for the manifest, config and layers.
    assert_eq!(sts.requests().len(), 1);
    assert_eq!(ecr.requests().len(), 1);
}

#[test]
fn ecr_credentials_go_to_ecr_hosts_only_follow_credential_helpers_and_failures_name_the_source() {
    const PASSWORD: &str = "ecr-password-from-env-keys";
    const SECRET: &str = "env-secret-access-key-never-print";
    let world = World::new("AWS", PASSWORD, REPOSITORY);
    let ecr = fake_ecr("AKIAENVKEY", SECRET, None, PASSWORD);
    let with_keys = |kiln: Kiln, endpoint: &str| {
        kiln.env("AWS_ACCESS_KEY_ID", "AKIAENVKEY")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ENDPOINT_URL_ECR", endpoint)
    };

    // A look-alike host gets nothing, and the ECR API is never asked.
    let (kiln, _p, _) = world.build_from(&format!("{ECR_HOST}.attacker.net"));
    let stderr = with_keys(kiln, &ecr.url()).run().failure();
    assert!(stderr.contains("401"), "{stderr}");
    assert!(ecr.requests().is_empty());

    // ECR switched off by --credential-helpers: anonymous, with a hint; then on by its
    // Kaniko helper name.
    let (kiln, _p, _) = world.build_from(ECR_HOST);
    let stderr = with_keys(
        kiln.args(["--credential-helpers", "env,gitlab"]),
        &ecr.url(),
    )
    .run()
    .failure();
    assert!(stderr.contains("401"), "{stderr}");
    assert!(ecr.requests().is_empty());
    let (kiln, _p, destination) = world.build_from(ECR_HOST);
    with_keys(kiln.args(["--credential-helpers", "ecr-login"]), &ecr.url())
        .run()
        .success();
    assert!(exists(&destination));
    assert_eq!(ecr.requests().len(), 1);

    // The order is the flag's: stale KANIKO_<HOST> variables for the mirror win when `env`
    // comes first, ECR wins when it does.
    let prefix = format!("KANIKO_{}", world.private.addr().replace(['.', ':'], "_"));
    let stale_env = |kiln: Kiln| {
        kiln.env(format!("{prefix}_USER").as_str(), "AWS")
            .env(format!("{prefix}_PASSWORD").as_str(), "stale-env-password")
    };
    let (kiln, _p, _) = world.build_from(ECR_HOST);
    let stderr = with_keys(
        stale_env(kiln.args(["--credential-helpers", "env,ecr"])),
        &ecr.url(),
    )
    .run()
    .failure();
    assert!(stderr.contains("401"), "{stderr}");
    assert_eq!(
        ecr.requests().len(),
        1,
        "ECR is not asked when env answered"
    );
    let (kiln, _p, _) = world.build_from(ECR_HOST);
    with_keys(
        stale_env(kiln.args(["--credential-helpers", "ecr,env"])),
        &ecr.url(),
    )
    .run()
    .success();
    assert_eq!(ecr.requests().len(), 2);

    let (kiln, _p, _) = world.build_from(ECR_HOST);
    let stderr = kiln
        .args(["--credential-helpers", "env,acr-docker"])
        .run()
        .failure();
    assert!(
        stderr.contains("unknown credential helper \"acr-docker\""),
        "{stderr}"
    );

    // The registry refuses what ECR issued: the error names the source, not the secret.
    let stale = fake_ecr("AKIAENVKEY", SECRET, None, "stale-ecr-password");
    let (kiln, _p, _) = world.build_from(ECR_HOST);
    let stderr = with_keys(kiln, &stale.url()).run().failure();
    assert!(
        stderr.contains("401")
            && stderr.contains("Amazon ECR GetAuthorizationToken")
            && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    assert_never_printed(&stderr, "AWS", &["stale-ecr-password", SECRET]);

    // The ECR API refuses the signature (wrong secret): its status and code, no secret.
    let (kiln, _p, _) = world.build_from(ECR_HOST);
    let stderr = kiln
        .env("AWS_ACCESS_KEY_ID", "AKIAENVKEY")
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-never-print")
        .env("AWS_ENDPOINT_URL", ecr.url())
        .run()
        .failure();
    assert!(
        stderr.contains("GetAuthorizationToken")
            && stderr.contains("403")
            && stderr.contains("InvalidSignatureException"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-secret-never-print"), "{stderr}");
}

#[test]
fn a_cached_cloud_credential_the_registry_refuses_is_fetched_again() {
    const PASSWORD: &str = "ecr-password-refetched";
    const SECRET: &str = "refetch-secret-access-key";
    let world = World::new("AWS", PASSWORD, REPOSITORY);
    let ecr = fake_ecr("AKIAENVKEY", SECRET, None, PASSWORD);
    // The first blob request, sent with the credentials cached after the manifest, is refused
    // once, as a registry does when a token was revoked or expired early.
    let proxy = Proxy::start(world.private.addr());
    proxy.fail(
        "GET",
        "/blobs/",
        1,
        Action::Respond(
            401,
            vec![(
                "WWW-Authenticate".to_owned(),
                "Basic realm=\"Registry Realm\"".to_owned(),
            )],
            String::new(),
        ),
    );
    let (kiln, _p, destination) = world.build_through(ECR_HOST, proxy.addr());
    succeeds_without_leaking(
        kiln.env("AWS_ACCESS_KEY_ID", "AKIAENVKEY")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ENDPOINT_URL_ECR", ecr.url()),
        &destination,
        "AWS",
        &[PASSWORD, SECRET],
    );
    assert_eq!(
        ecr.requests().len(),
        2,
        "one token for the build, one more after the refusal"
    );
}

#[test]
fn ecr_on_ec2_uses_the_instance_profile_through_an_imdsv2_session() {
    const PASSWORD: &str = "ecr-password-for-instance-profile";
    const SECRET: &str = "instance-profile-secret-never-print";
    const SESSION: &str = "instance-profile-session-never-print";
    const IMDS_TOKEN: &str = "imds-session-token-never-print";
    let world = World::new("AWS", PASSWORD, REPOSITORY);
    let imds = FakeCloud::start(|request: &Request| {
        let with_token = request.header("x-aws-ec2-metadata-token") == Some(IMDS_TOKEN);
        match (request.method.as_str(), request.target.as_str()) {
            ("PUT", "/latest/api/token")
                if request
                    .header("x-aws-ec2-metadata-token-ttl-seconds")
                    .is_some() =>
            {
                Reply {
                    status: "200 OK",
                    headers: Vec::new(),
                    body: IMDS_TOKEN.to_owned(),
                }
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") if with_token => Reply {
                status: "200 OK",
                headers: Vec::new(),
                body: "kiln-runner-role".to_owned(),
            },
            ("GET", "/latest/meta-data/iam/security-credentials/kiln-runner-role")
                if with_token =>
            {
                Reply::json(json!({
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "ASIAINSTANCE",
                    "SecretAccessKey": SECRET,
                    "Token": SESSION,
                    "Expiration": "2099-01-01T00:00:00Z",
                }))
            }
            _ => Reply::error("401 Unauthorized", "no session token"),
        }
    });
    let ecr = fake_ecr("ASIAINSTANCE", SECRET, Some(SESSION), PASSWORD);
    let (kiln, _p, destination) = world.build_from(ECR_HOST);
    succeeds_without_leaking(
        kiln.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())
            .env("AWS_ENDPOINT_URL_ECR", ecr.url()),
        &destination,
        "AWS",
        &[PASSWORD, SECRET, SESSION, IMDS_TOKEN],
    );
    assert_eq!(imds.requests().len(), 3, "session, role name, credentials");
    assert_eq!(ecr.requests().len(), 1);
}

#[test]
fn public_ecr_is_signed_for_ecr_public_with_container_credentials() {
    const PASSWORD: &str = "public-ecr-password-never-print";
    const CONTAINER_SECRET: &str = "container-secret-never-print";
    const CONTAINER_AUTH: &str = "pod-identity-authorization-never-print";
    let world = World::new("AWS", PASSWORD, REPOSITORY);
    // EKS Pod Identity / ECS: credentials from the container endpoint, with its token.
    let container = FakeCloud::start(|request: &Request| {
        if request.target == "/v1/credentials"
            && request.header("authorization") == Some(CONTAINER_AUTH)
        {
            Reply::json(json!({
                "AccessKeyId": "ASIACONTAINER",
                "SecretAccessKey": CONTAINER_SECRET,
                "Token": "container-session",
                "Expiration": "2099-01-01T00:00:00Z",
            }))
        } else {
            Reply::error("401 Unauthorized", "bad token")
        }
    });
    let ecr = fake_ecr_api(
        EcrApi::Public,
        "ASIACONTAINER",
        CONTAINER_SECRET,
        Some("container-session"),
        PASSWORD,
    );
    let (kiln, _p, destination) = world.build_from("public.ecr.aws");
    succeeds_without_leaking(
        kiln.env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v1/credentials", container.url()),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_AUTH)
        .env("AWS_ENDPOINT_URL_ECR_PUBLIC", ecr.url()),
        &destination,
        "AWS",
        &[
            PASSWORD,
            CONTAINER_SECRET,
            CONTAINER_AUTH,
            "container-session",
        ],
    );
    assert_eq!(container.requests().len(), 1);
    assert_eq!(ecr.requests().len(), 1);
}

const GOOGLE_HOST: &str = "europe-docker.pkg.dev";
const GOOGLE_REPOSITORY: &str = "proj/images/busybox";
const GOOGLE_TOKEN: &str = "ya29.e2e-google-access-token-never-print";

/// Verifies an RS256 JWT signed by `key` and returns its claims.
fn verify_jwt(jwt: &str, key: &rcgen::KeyPair) -> Option<serde_json::Value> {
    let (signing_input, signature) = jwt.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        key.public_key_raw(),
    )
    .verify(signing_input.as_bytes(), &signature)
    .ok()?;
    let (_, claims) = signing_input.split_once('.')?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
}

#[test]
fn google_service_account_keys_authenticate_a_mapped_artifact_registry_end_to_end() {
    let world = World::new("oauth2accesstoken", GOOGLE_TOKEN, GOOGLE_REPOSITORY);
    let key = std::sync::Arc::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap());
    let checking = key.clone();
    let oauth = FakeCloud::start(move |request: &Request| {
        let form = request.form();
        let claims = form
            .get("assertion")
            .and_then(|jwt| verify_jwt(jwt, &checking));
        match claims {
            Some(claims)
                if form.get("grant_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                    && claims["iss"] == "builder@proj.iam.gserviceaccount.com"
                    && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform" =>
            {
                Reply::json(json!({"access_token": GOOGLE_TOKEN, "expires_in": 3599}))
            }
            _ => Reply::error("400 Bad Request", "invalid_grant"),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sa.json");
    std::fs::write(
        &key_file,
        json!({
            "type": "service_account",
            "client_email": "builder@proj.iam.gserviceaccount.com",
            "private_key_id": "k1",
            "private_key": key.serialize_pem(),
            "token_uri": format!("{}/token", oauth.url()),
        })
        .to_string(),
    )
    .unwrap();

    // A look-alike of the Google host gets no token.
    let (kiln, _p, _) = world.build_from(&format!("{GOOGLE_HOST}.attacker.net"));
    let stderr = kiln
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key_file)
        .run()
        .failure();
    assert!(stderr.contains("401"), "{stderr}");
    assert!(oauth.requests().is_empty());

    let (kiln, _p, destination) = world.build_from(GOOGLE_HOST);
    succeeds_without_leaking(
        kiln.env("GOOGLE_APPLICATION_CREDENTIALS", &key_file),
        &destination,
        "oauth2accesstoken",
        &[GOOGLE_TOKEN],
    );
    assert_eq!(oauth.requests().len(), 1, "one token per build");
}

/// A fake OAuth token endpoint answering [`GOOGLE_TOKEN`] to requests `accept` approves.
fn google_token_endpoint(accept: impl Fn(&Request) -> bool + Send + Sync + 'static) -> FakeCloud {
    FakeCloud::start(move |request: &Request| {
        if accept(request) {
            Reply::json(json!({"access_token": GOOGLE_TOKEN, "expires_in": 3599}))
        } else {
            Reply::error("400 Bad Request", "invalid_grant")
        }
    })
}

#[test]
fn google_authorized_user_files_exchange_their_refresh_token() {
    let world = World::new("oauth2accesstoken", GOOGLE_TOKEN, GOOGLE_REPOSITORY);
    let oauth = google_token_endpoint(|request| {
        let form = request.form();
        form.get("grant_type").map(String::as_str) == Some("refresh_token")
            && form.get("refresh_token").map(String::as_str) == Some("1//user-refresh-token")
            && form.get("client_id").map(String::as_str) == Some("client.apps")
            && form.get("client_secret").map(String::as_str) == Some("client-secret")
    });
    // gcloud's well-known file under CLOUDSDK_CONFIG, no GOOGLE_APPLICATION_CREDENTIALS.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("application_default_credentials.json"),
        json!({
            "type": "authorized_user",
            "client_id": "client.apps",
            "client_secret": "client-secret",
            "refresh_token": "1//user-refresh-token",
            "token_uri": format!("{}/token", oauth.url()),
        })
        .to_string(),
    )
    .unwrap();
    let (kiln, _p, destination) = world.build_from(GOOGLE_HOST);
    succeeds_without_leaking(
        kiln.env("CLOUDSDK_CONFIG", dir.path()),
        &destination,
        "oauth2accesstoken",
        &[GOOGLE_TOKEN, "1//user-refresh-token", "client-secret"],
    );
    assert_eq!(oauth.requests().len(), 1);
}

#[test]
fn google_external_account_files_exchange_a_file_sourced_subject_token_at_sts_and_impersonate() {
    const SUBJECT: &str = "eyJ.github-oidc-subject-token.sig";
    const AUDIENCE: &str =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci/providers/gh";
    let world = World::new("oauth2accesstoken", GOOGLE_TOKEN, GOOGLE_REPOSITORY);
    let google = FakeCloud::start(|request: &Request| {
        if request.target == "/v1/token" {
            let form = request.form();
            let get = |k: &str| form.get(k).map(String::as_str);
            if get("grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange")
                && get("subject_token") == Some(SUBJECT)
                && get("audience") == Some(AUDIENCE)
                && get("subject_token_type") == Some("urn:ietf:params:oauth:token-type:jwt")
                && get("requested_token_type")
                    == Some("urn:ietf:params:oauth:token-type:access_token")
            {
                return Reply::json(json!({"access_token": "federated-token", "expires_in": 3600}));
            }
        } else if request
            .target
            .ends_with("builder@proj.iam.gserviceaccount.com:generateAccessToken")
            && request.header("authorization") == Some("Bearer federated-token")
        {
            return Reply::json(
                json!({"accessToken": GOOGLE_TOKEN, "expireTime": "2099-01-01T00:00:00Z"}),
            );
        }
        Reply::error("401 Unauthorized", "invalid_token")
    });
    let dir = tempfile::tempdir().unwrap();
    let subject_file = dir.path().join("oidc-token");
    std::fs::write(&subject_file, SUBJECT).unwrap();
    let config = dir.path().join("wif.json");
    std::fs::write(
        &config,
        json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", google.url()),
            "service_account_impersonation_url": format!(
                "{}/v1/projects/-/serviceAccounts/builder@proj.iam.gserviceaccount.com:generateAccessToken",
                google.url()
            ),
            "credential_source": {"file": subject_file, "format": {"type": "text"}},
        })
        .to_string(),
    )
    .unwrap();
    let (kiln, _p, destination) = world.build_from(GOOGLE_HOST);
    succeeds_without_leaking(
        kiln.env("GOOGLE_APPLICATION_CREDENTIALS", &config),
        &destination,
        "oauth2accesstoken",
        &[GOOGLE_TOKEN, SUBJECT, "federated-token"],
    );
    assert_eq!(
        google.requests().len(),
        2,
        "one exchange, one impersonation"
    );
}

#[test]
fn google_metadata_server_tokens_are_used_without_a_credentials_file() {
    let world = World::new("oauth2accesstoken", GOOGLE_TOKEN, GOOGLE_REPOSITORY);
    let metadata = FakeCloud::start(|request: &Request| {
        if request.method == "GET"
            && request.target == "/computeMetadata/v1/instance/service-accounts/default/token"
            && request.header("metadata-flavor") == Some("Google")
        {
            Reply::json(
                json!({"access_token": GOOGLE_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
            )
            .header("Metadata-Flavor", "Google")
        } else {
            Reply::error("403 Forbidden", "missing Metadata-Flavor")
                .header("Metadata-Flavor", "Google")
        }
    });
    let (kiln, _p, destination) = world.build_from(GOOGLE_HOST);
    succeeds_without_leaking(
        kiln.env("GCE_METADATA_HOST", metadata.addr()),
        &destination,
        "oauth2accesstoken",
        &[GOOGLE_TOKEN],
    );
    assert_eq!(metadata.requests().len(), 1);
}

#[test]
fn buildkite_jobs_get_an_oidc_token_from_buildkite_agent_for_the_package_registry() {
    const TOKEN: &str = "eyJ.buildkite-oidc-token.never-print";
    let world = World::new("buildkite", TOKEN, "acme/images/busybox");
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let agent = dir.path().join("buildkite-agent");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\n[ \"$BUILDKITE_AGENT_ACCESS_TOKEN\" = agent-token ] || exit 3\necho {TOKEN}\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // Outside a job (no agent token), the agent is not asked.
    let (kiln, _p, _) = world.build_from("packages.buildkite.com");
    let stderr = kiln.env("PATH", &path).run().failure();
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!calls.exists());

    let (kiln, _p, destination) = world.build_from("packages.buildkite.com");
    succeeds_without_leaking(
        kiln.env("PATH", &path)
            .env("BUILDKITE_AGENT_ACCESS_TOKEN", "agent-token")
            .env("BUILDKITE_JOB_ID", "0190-job"),
        &destination,
        "buildkite",
        &[TOKEN],
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "oidc request-token --audience https://packages.buildkite.com/acme/images --lifetime 300\n",
        "one token per build, for the org's registry"
    );
}

const ACR_HOST: &str = "contoso.azurecr.io";

/// A token-auth registry standing in for [`ACR_HOST`] holding `team/busybox`, whose token
/// server exchanges `entra_token` for `refresh` at `/oauth2/exchange`.
fn acr_registry(refresh: &str, entra_token: &str) -> (TokenServer, Registry) {
    let tokens = TokenServer::start("admin", "admin-password", refresh);
    tokens.accept_acr_exchange(ACR_HOST, entra_token);
    let private = Registry::start_with_token_auth(&tokens);
    copy_to_registry(
        &busybox_layout(private.scratch()),
        "latest",
        &private.image("team/busybox:latest"),
        false,
        Some("admin:admin-password"),
    );
    (tokens, private)
}

#[test]
fn acr_managed_identity_tokens_from_instance_metadata_are_exchanged() {
    const MI_TOKEN: &str = "managed-identity-token-never-print";
    const REFRESH: &str = "acr-refresh-for-managed-identity";
    let (tokens, private) = acr_registry(REFRESH, MI_TOKEN);
    let imds = FakeCloud::start(|request: &Request| {
        let target = &request.target;
        if request.method == "GET"
            && target.starts_with("/metadata/identity/oauth2/token?")
            && target.contains("api-version=2018-02-01")
            && target.contains("resource=https%3A%2F%2Fcontainerregistry.azure.net")
            && target.contains("client_id=user-assigned-1")
            && request.header("metadata") == Some("true")
        {
            // The metadata service sends expires_in as a string.
            Reply::json(
                json!({"access_token": MI_TOKEN, "expires_in": "86399", "token_type": "Bearer"}),
            )
        } else {
            Reply::error("400 Bad Request", "invalid_request")
        }
    });
    let target = Registry::start();
    let destination = target.image("cloud/app:1");
    let project =
        Project::new().dockerfile(&format!("FROM {ACR_HOST}/team/busybox\nENV FROM_CLOUD=1\n"));
    succeeds_without_leaking(
        Kiln::build(project.path())
            .push_to(&destination)
            .args(["--registry-map", &format!("{ACR_HOST}={}", private.addr())])
            .env("AZURE_CLIENT_ID", "user-assigned-1")
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.url())
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_CLIENT_SECRET")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE"),
        &destination,
        "x",
        &[MI_TOKEN, REFRESH],
    );
    assert_eq!(imds.requests().len(), 1);
    assert_eq!(tokens.acr_exchanges(), 1);
}

#[test]
fn acr_workload_identity_tokens_are_exchanged_for_a_refresh_token_next_to_the_realm() {
    const FEDERATED: &str = "eyJ.aks-workload-identity-token.sig";
    const AAD_TOKEN: &str = "aad-access-token-never-print";
    const REFRESH: &str = "acr-refresh-token-never-print";
    let (tokens, private) = acr_registry(REFRESH, AAD_TOKEN);
    let entra = FakeCloud::start(|request: &Request| {
        let form = request.form();
        let get = |k: &str| form.get(k).map(String::as_str);
        if request.target == "/tenant-1/oauth2/v2.0/token"
            && get("grant_type") == Some("client_credentials")
            && get("client_id") == Some("client-1")
            && get("scope") == Some("https://containerregistry.azure.net/.default")
            && get("client_assertion_type")
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && get("client_assertion") == Some(FEDERATED)
        {
            Reply::json(
                json!({"access_token": AAD_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
            )
        } else {
            Reply::error("401 Unauthorized", "invalid_client")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let federated = dir.path().join("azure-identity-token");
    std::fs::write(&federated, FEDERATED).unwrap();
    let target = Registry::start();
    let destination = target.image("cloud/app:1");
    let project = Project::new().dockerfile(&format!("FROM {ACR_HOST}/team/busybox\nENV ACR=1\n"));
    let azure = |kiln: Kiln| {
        kiln.args(["--registry-map", &format!("{ACR_HOST}={}", private.addr())])
            .env("AZURE_CLIENT_ID", "client-1")
            .env("AZURE_TENANT_ID", "tenant-1")
            .env("AZURE_FEDERATED_TOKEN_FILE", &federated)
            .env("AZURE_AUTHORITY_HOST", entra.url())
            .env_remove("AZURE_CLIENT_SECRET")
            .env_remove("AZURE_POD_IDENTITY_AUTHORITY_HOST")
    };

    // Switched off, the anonymous token grants nothing.
    let stderr = azure(Kiln::build(project.path()).push_to(&destination))
        .args([
            "--credential-helpers",
            "env,google,ecr",
            "--skip-default-registry-fallback",
        ])
        .run()
        .failure();
    assert!(
        stderr.contains("401") || stderr.contains("UNAUTHORIZED"),
        "{stderr}"
    );
    assert!(entra.requests().is_empty());

    let issued_before = tokens.issued().len();
    let mut secrets = vec![
        FEDERATED.to_owned(),
        AAD_TOKEN.to_owned(),
        REFRESH.to_owned(),
    ];
    // The registry tokens issued for this build must not show either.
    let kiln = azure(Kiln::build(project.path()).push_to(&destination))
        .args(["--credential-helpers", "acr-env"]);
    let outcome = kiln
        .args(["--verbosity", "trace"])
        .env("KILN_LOG", "trace")
        .run();
    let printed = outcome.everything_printed();
    assert!(outcome.succeeded(), "{printed}");
    secrets.extend(tokens.issued().into_iter().skip(issued_before));
    let config = config_of(&destination).to_string();
    for secret in &secrets {
        assert!(!printed.contains(secret.as_str()), "{secret} was printed");
        assert!(
            !config.contains(secret.as_str()),
            "{secret} is in the image"
        );
    }
    assert_eq!(entra.requests().len(), 1);
    assert_eq!(tokens.acr_exchanges(), 1);
    assert!(tokens.grants().iter().any(|g| g == "refresh_token"));
}
