//! TLS against real `redis-server`s started with a TLS port and certificates made for them:
//! `rediss://` talks TLS or not at all, checks the server against the system roots or a CA
//! file, and presents a client certificate when the server asks for one.

use std::time::Duration;

use redlock::{Redlock, Retry};
use redlock_single::{Lock, MasterErrorKind};
use redlock_testkit::{Proxy, RedisServer, ServerOptions, TlsMode};
use redlock_tests::{masters_with, server_with};

fn tls_server(mode: TlsMode) -> RedisServer {
    server_with(ServerOptions {
        tls: Some(mode),
        ..Default::default()
    })
}

fn builder(url: String) -> redlock_single::LockBuilder {
    Lock::builder()
        .url(url)
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(5))
        .retry(redlock_single::Retry::none())
}

#[tokio::test]
async fn rediss_with_the_servers_ca_locks() {
    let server = tls_server(TlsMode::Server);
    let files = server.tls_files().expect("tls").clone();
    let lock = builder(server.tls_url().expect("tls url"))
        .tls_ca_file(&files.ca_cert)
        .connect()
        .await
        .expect("connect over TLS");
    let guard = lock.try_acquire("t").await.expect("acquire").expect("free");
    assert!(redlock_tests::exists(&server, "redlock:{t}"));
    guard.release().await.expect("release");
}

#[tokio::test]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let server = tls_server(TlsMode::Server);
    let files = server.tls_files().expect("tls").clone();
    // The system roots do not know the test CA; nor does another CA.
    for builder in [
        builder(server.tls_url().expect("tls url")),
        builder(server.tls_url().expect("tls url")).tls_ca_file(&files.other_ca_cert),
    ] {
        let err = builder.connect().await.expect_err("untrusted certificate");
        assert!(
            matches!(
                err.master_kind(),
                Some(MasterErrorKind::Tls { .. } | MasterErrorKind::Unreachable { .. })
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&server.addr().replace(
                &server.port().to_string(),
                &server.tls_port().expect("tls").to_string()
            )),
            "{err}"
        );
    }
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let server = tls_server(TlsMode::Mutual);
    let files = server.tls_files().expect("tls").clone();
    let url = server.tls_url().expect("tls url");
    // Without a client certificate the server hangs up during the handshake.
    let refused = builder(url.clone())
        .tls_ca_file(&files.ca_cert)
        .connect()
        .await;
    assert!(refused.is_err(), "connected without a client certificate");
    let lock = builder(url)
        .tls_ca_file(&files.ca_cert)
        .tls_client_auth(&files.client_cert, &files.client_key)
        .connect()
        .await
        .expect("connect with a client certificate");
    let guard = lock.try_acquire("m").await.expect("acquire").expect("free");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn a_quorum_of_tls_masters_locks() {
    let group = masters_with(
        3,
        ServerOptions {
            tls: Some(TlsMode::Server),
            ..Default::default()
        },
    );
    // Each test server has a CA of its own: one CA file holding all three trusts them all.
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("cas.pem");
    let pems: String = group
        .iter()
        .map(|s| std::fs::read_to_string(&s.tls_files().expect("tls").ca_cert).expect("ca"))
        .collect();
    std::fs::write(&bundle, pems).expect("bundle");
    let locks = Redlock::builder()
        .nodes(group.iter().map(|s| s.tls_url().expect("tls url")))
        .tls_ca_file(&bundle)
        .timeout(Duration::from_millis(500))
        .retry(Retry::none())
        .connect()
        .await
        .expect("connect over TLS");
    let guard = locks
        .try_acquire("q")
        .await
        .expect("acquire")
        .expect("free");
    // Held on a quorum (the third acquire may still be on its way).
    let holding = group
        .iter()
        .filter(|s| redlock_tests::exists(s, "redlock:{q}"))
        .count();
    assert!(holding >= 2, "held on {holding} of 3");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn rediss_never_sends_the_password_in_plain_text() {
    // A plain server behind a proxy that records what the client sends: a rediss:// URL to it
    // must fail, and the password must not be among the bytes sent.
    let server = redlock_tests::server();
    let proxy = Proxy::start(server.port()).expect("proxy");
    let out = builder(format!(
        "rediss://:hunter2secret@127.0.0.1:{}",
        proxy.port()
    ))
    .connect_timeout(Duration::from_secs(1))
    .connect()
    .await;
    assert!(out.is_err(), "TLS to a plain port cannot work: {out:?}");
    let sent = proxy.sent_to_server();
    assert!(
        !sent
            .windows(b"hunter2secret".len())
            .any(|w| w == b"hunter2secret"),
        "the password went out in plain text"
    );
}
