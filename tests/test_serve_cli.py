"""`mgen serve`'s safety defaults and `mgen generate --server`, which must write the bytes a local run writes."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.cli_run import one_line_error, run_main
from tests.serve_run import Server, build_models, free_port

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("serve-cli-cache"), "tiny-random")


@pytest.fixture(scope="module")
def server(tmp_path_factory, cache):
    running = Server(tmp_path_factory.mktemp("serve-cli") / "data", cache, "--token", TOKEN).start()
    yield running
    running.stop()


def test_a_non_loopback_address_needs_a_token(capsys, monkeypatch):
    monkeypatch.delenv("MGEN_TOKEN", raising=False)
    result = run_main(capsys, "serve", "--host", "0.0.0.0", "--model-key", "tiny-random")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "0.0.0.0 is reachable from other machines" in line and "--token" in line and "--insecure-no-auth" in line


def test_the_token_guards_the_api_and_the_page_logs_in_once(server):
    with server.client() as http:
        refused = http.get("/v1/generations")
        assert refused.status_code == 401 and set(refused.json()) == {"error", "fix"}
        assert http.post("/v1/generations", json={"prompt": "x"}).status_code == 401
        assert http.get("/v1/generations", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/generations", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert http.get("/").status_code == 200  # the page itself, which shows the login
        assert http.post("/v1/login", json={"token": "wrong"}).status_code == 401
        login = http.post("/v1/login", json={"token": TOKEN})
        assert login.status_code == 204 and TOKEN not in login.headers["set-cookie"]
        assert "httponly" in login.headers["set-cookie"].lower()
        assert http.get("/v1/generations").status_code == 200  # the cookie now stands for the token


def test_generate_with_server_writes_the_bytes_a_local_run_writes(server, cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MGEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("MGEN_TOKEN", TOKEN)
    args = ["generate", "--model-key", "tiny-random", "--seed", "5", "--duration", "1.5", "--num-threads", "1", "jazz trio"]
    local = run_main(capsys, *args, "--out", str(tmp_path / "local.wav"))
    assert local.returncode == 0, local.stderr
    remote = run_main(capsys, *args, "--server", server.url, "--out", str(tmp_path / "remote.wav"))
    assert remote.returncode == 0, remote.stderr
    assert "wrote" in remote.stdout and "remote.wav" in remote.stdout
    assert (tmp_path / "remote.wav").read_bytes() == (tmp_path / "local.wav").read_bytes()
    side = json.loads((tmp_path / "remote.json").read_text())
    assert side["audio_file"] == "remote.wav" and side["seed"] == 5 and side["prompt"] == "jazz trio"
    assert side["server_job"]
    # MGEN_SERVER does the same; an existing take is refused before anything is sent
    monkeypatch.setenv("MGEN_SERVER", server.url)
    again = run_main(capsys, *args, "--out", str(tmp_path / "remote.wav"))
    assert "already exists" in one_line_error(again)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert len(http.get("/v1/generations").json()["generations"]) == 1


def test_generate_with_server_says_what_went_wrong_in_one_line(server, cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MGEN_CACHE_DIR", str(cache))
    monkeypatch.delenv("MGEN_TOKEN", raising=False)
    nobody = run_main(capsys, "generate", "--server", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path / "a.wav"), "x")
    assert "no mgen server answers at" in one_line_error(nobody)
    no_token = run_main(capsys, "generate", "--server", server.url, "--out", str(tmp_path / "a.wav"), "x")
    assert "this server needs a token" in one_line_error(no_token)
    monkeypatch.setenv("MGEN_TOKEN", TOKEN)
    too_long = run_main(capsys, "generate", "--server", server.url, "--duration", "400", "--out", str(tmp_path / "a.wav"), "x")
    assert "the server says: duration 400 s is longer than this server makes" in one_line_error(too_long)
    assert not list(tmp_path.iterdir())
