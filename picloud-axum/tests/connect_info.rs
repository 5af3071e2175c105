//! `conn::serve_with` gives handlers the peer's address as
//! `ConnectInfo<SocketAddr>`, as axum's `into_make_service_with_connect_info`
//! does, and stops when its shutdown future completes.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use picloud_axum::conn::{ServeOptions, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    addr.to_string()
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Router::new().route("/peer", get(peer));
    let server = tokio::spawn(serve_with(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        ServeOptions::default(),
    ));

    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.read_to_string(&mut response),
    )
    .await
    .expect("answered in time")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(&me.to_string()), "{response}");

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("stopped in time")
        .unwrap()
        .unwrap();
}
