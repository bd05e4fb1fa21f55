//! Configs the scaffold unit tests render: one per auth method, in the
//! shape `init` produces after its host-layout fill-ins.

use crate::config::{Config, NoEnv, Overrides, load_str};

const COMMON: &str = r#"configVersion: v1alpha1
server: {socketGroup: openbao-kms-socket}
openbao:
  address: https://bao.example.internal:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: bao.example.internal
  instanceId: bao-prod-a
transit:
  mountPath: transit
  keyName: k8s-a
  keyIdScope: {providerName: p, clusterId: c, transitMountId: m, keyLineageId: "0123"}
"#;

const JWT: &str = r#"auth:
  jwt:
    mountPath: auth/k8s-jwt
    role: kms
    jwtFile: /var/lib/openbao-kms/identity.jwt
    expectedIssuer: https://issuer.example.internal
    expectedAudience: [bao-kms-provider]
    expectedSubject: system:openbao-kms:a
"#;

const CERT: &str = r#"auth:
  method: cert
  cert:
    mountPath: auth/k8s-cert
    name: kms-nodes
    source: pkcs11
    pkcs11:
      certificateFile: /etc/openbao-kms/client/client-chain.pem
      modulePath: /usr/lib/softhsm/libsofthsm2.so
      tokenLabel: openbao-kms
      keyLabel: openbao-kms-client
      pinFile: /etc/openbao-kms/pkcs11/pin
      maxSessions: 4
"#;

fn load(auth: &str) -> Config {
    match load_str(&format!("{COMMON}{auth}"), &Overrides::default(), &NoEnv) {
        Ok(config) => config,
        Err(e) => panic!("fixture does not load: {e}"),
    }
}

pub fn jwt() -> Config {
    load(JWT)
}

pub fn cert() -> Config {
    load(CERT)
}
