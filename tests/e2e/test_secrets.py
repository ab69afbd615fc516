"""The server's secrets stay out of the model's reach: the worker is spawned without them."""

from __future__ import annotations

import json

from helpers import wait_for

SECRETS = {"COGVISOR_ADMIN_TOKEN": "adm1n-s3cret", "WEBHOOK_AUTH_TOKEN": "w3bh00k-s3cret"}


def test_model_code_never_sees_the_admin_or_webhook_token(serve):
    server = serve("env_probe", env={**SECRETS, "COGVISOR_TEST_VISIBLE": "yes"})
    names = ",".join([*SECRETS, "COGVISOR_TEST_VISIBLE"])
    status, body = server.predict({"names": names})
    assert status == 200, body
    output = body["output"]
    assert output["model"] == {"COGVISOR_ADMIN_TOKEN": None, "WEBHOOK_AUTH_TOKEN": None, "COGVISOR_TEST_VISIBLE": "yes"}
    assert json.loads(output["child"]) == output["model"]
    for secret in SECRETS.values():
        assert secret not in json.dumps(body)


def test_the_server_still_uses_the_admin_token(serve):
    server = serve("env_probe", env=SECRETS)
    r = server.request(
        "POST",
        "/recycle",
        body=json.dumps({"reason": "check"}).encode(),
        headers={"Authorization": f"Bearer {SECRETS['COGVISOR_ADMIN_TOKEN']}", "Content-Type": "application/json"},
    )
    assert r.status == 202, r.body

    def generation_two():
        h = server.health()
        return h if h["status"] == "READY" and h["worker"]["generation"] == 2 else None

    wait_for(generation_two, timeout=60, what="generation 2 READY")
