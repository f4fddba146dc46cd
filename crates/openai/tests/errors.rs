//! The one mapping from an error's kind to the wire, and the one served-model-name rule.

use vidlm_openai::{served_model_names, ApiError, ErrorKind};

#[test]
fn every_kind_reaches_the_wire_with_its_status() {
    let cases = [
        (ErrorKind::BadRequest, 400, "invalid_request_error", "invalid_request"),
        (ErrorKind::Forbidden, 403, "permission_error", "permission_denied"),
        (ErrorKind::NotFound, 404, "invalid_request_error", "not_found"),
        (ErrorKind::LimitExceeded, 413, "invalid_request_error", "limit_exceeded"),
        (ErrorKind::UnsupportedMedia, 415, "invalid_request_error", "unsupported_media"),
        (ErrorKind::Unsupported, 422, "invalid_request_error", "unsupported"),
        (ErrorKind::InvalidModel, 500, "server_error", "invalid_model"),
        (ErrorKind::Internal, 500, "server_error", "internal_error"),
        (ErrorKind::Unavailable, 503, "server_error", "server_unavailable"),
    ];
    for (kind, status, ty, code) in cases {
        let e = ApiError::from_kind(kind, "m", None, None);
        assert_eq!((e.status, e.kind.as_str(), e.code.as_deref()), (status, ty, Some(code)));
        assert_eq!(e.status, kind.http_status());
        assert_eq!(kind.is_client_error(), status < 500, "{kind:?}");
    }
    let e = ApiError::from_kind(ErrorKind::LimitExceeded, "m", Some("messages".into()), Some("x"));
    assert_eq!((e.param.as_deref(), e.code.as_deref()), (Some("messages"), Some("x")));
    // The server's own refusals go through the same mapping.
    assert_eq!((ApiError::body_too_large(1).status, ApiError::overloaded(1).status), (413, 503));
    assert_eq!(ApiError::internal("x").kind, "server_error");
}

#[test]
fn one_served_model_name_rule() {
    let dir = std::env::temp_dir().join(format!("vidlm-openai-names-{}", std::process::id()));
    let model = dir.join("my-model");
    std::fs::create_dir_all(&model).unwrap();
    let arg = model.to_str().unwrap();
    // A directory: its name is listed, the argument is accepted too.
    assert_eq!(served_model_names(arg, None), ["my-model", arg]);
    // Through a relative spelling with `..`: the same listed name.
    let rel = format!("{}/../my-model", model.display());
    assert_eq!(served_model_names(&rel, None)[0], "my-model");
    // `--served-model-name` wins.
    assert_eq!(served_model_names(arg, Some("demo")), ["demo", arg]);
    // A hub id (not a directory) is its own name.
    assert_eq!(served_model_names("org/name", None), ["org/name"]);
    let _ = std::fs::remove_dir_all(&dir);
}
