//! Every error a router wrapped in `json_errors` answers is JSON, served over a real socket: unknown
//! routes, wrong methods (with `Allow`), extractor rejections, empty error bodies; JSON errors are kept.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use cogvisor_server::http_errors::json_errors;
use serde_json::{json, Value};

/// Serves `router` wrapped in [`json_errors`] on a free port; answers each request's status,
/// content type, `Allow` header and body.
async fn serve_json_errors(
    router: Router,
) -> impl Fn(
    reqwest::Method,
    &'static str,
) -> futures::future::BoxFuture<'static, (StatusCode, Option<String>, Option<String>, Value)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, json_errors(router)).await });
    let client = reqwest::Client::new();
    move |method, path| {
        let request = client.request(method, format!("http://{addr}{path}"));
        Box::pin(async move {
            let r = request.send().await.expect("request");
            let header = |name| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (content_type, allow) = (header(header::CONTENT_TYPE), header(header::ALLOW));
            let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
            let body = r.json::<Value>().await.expect("a JSON body");
            (status, content_type, allow, body)
        })
    }
}

#[tokio::test]
async fn every_router_error_answers_json() {
    let router = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<String>| async move { id }),
        )
        .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
        .route(
            "/json",
            get(|| async { (StatusCode::CONFLICT, Json(json!({"error": "mine"}))) }),
        );
    let call = serve_json_errors(router).await;
    let json = Some("application/json".to_string());

    let (status, ct, _, body) = call(reqwest::Method::GET, "/nope/x").await;
    assert_eq!((status, ct.clone()), (StatusCode::NOT_FOUND, json.clone()));
    assert_eq!(body, json!({"error": "no route GET /nope/x"}));

    let (status, ct, allow, body) = call(reqwest::Method::DELETE, "/items/1").await;
    assert_eq!((status, ct), (StatusCode::METHOD_NOT_ALLOWED, json.clone()));
    assert_eq!(allow.as_deref(), Some("GET,HEAD"));
    assert_eq!(
        body,
        json!({"error": "method DELETE not allowed on /items/1; allowed: GET, HEAD"})
    );

    // An extractor's plain-text rejection keeps its status and text.
    let (status, ct, _, body) = call(reqwest::Method::GET, "/items/%FF").await;
    assert_eq!((status, ct), (StatusCode::BAD_REQUEST, json.clone()));
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("UTF-8")),
        "{body}"
    );

    // An empty error body gets the status's reason.
    let (status, _, _, body) = call(reqwest::Method::GET, "/teapot").await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(body, json!({"error": "I'm a teapot (GET /teapot)"}));

    // A JSON error is left alone.
    let (status, _, _, body) = call(reqwest::Method::GET, "/json").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"error": "mine"}));
}
